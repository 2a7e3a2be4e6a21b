package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Condition types of a LabEnvironment, in the order a lab reaches them.
const (
	// ConditionVMsScheduled is True when every VM of the lab has a running launcher.
	ConditionVMsScheduled = "VMsScheduled"
	// ConditionVMsRunning is True when every VM of the lab is Running.
	ConditionVMsRunning = "VMsRunning"
	// ConditionAPIReachable is True when the operator reached the lab's API server and
	// verified it against the lab's CA.
	ConditionAPIReachable = "APIReachable"
	// ConditionBootstrapComplete is True when the lab reported that kubeadm, the CNI and the
	// scenario finished; False with the lab's own message when the bootstrap failed.
	ConditionBootstrapComplete = "BootstrapComplete"
	// ConditionVMsRestarted is True once a VM of a lab that was Ready runs another
	// instance than the one it was Ready with (evicted, its host node lost, deleted): its
	// disks are new, so that node set itself up again from scratch and what was done on
	// it is gone. It names the nodes, and never goes back to False; absent until then. A
	// claim holding such a lab carries the same condition.
	ConditionVMsRestarted = "VMsRestarted"
	// ReasonVMRestarted is the reason of VMsRestarted=True.
	ReasonVMRestarted = "VMRestarted"
)

// InstanceReference names one VM instance (KubeVirt VirtualMachineInstance) of a lab.
type InstanceReference struct {
	// Name of the VM and its instance, e.g. control-plane or worker-1.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +required
	Name string `json:"name"`

	// UID of the instance: a VM that was restarted has an instance of the same name with
	// another UID.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=36
	// +required
	UID types.UID `json:"uid"`
}

// ClaimReference identifies the LabClaim a lab is bound to.
type ClaimReference struct {
	// Namespace of the claim.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +required
	Namespace string `json:"namespace"`

	// Name of the claim.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +required
	Name string `json:"name"`

	// UID of the claim, so that a new claim of the same name is never mistaken for it.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=36
	// +required
	UID types.UID `json:"uid"`
}

// ClaimTerms are what a bound claim's lifetime and access were fixed to when it was bound:
// the template's lifetime as it was then, and the login of the lab's nodes. They are
// written in the same write that binds the lab and never change afterwards, so editing or
// deleting the template never shortens, lengthens or locks out a running claim (decision
// 57). They live on the lab, which only the operator writes, not on the claim, whose spec
// and metadata are the student's and whose status must be rebuildable.
type ClaimTerms struct {
	// BoundTime is when the lab was bound to the claim: the claim's duration counts from
	// here.
	// +required
	BoundTime metav1.Time `json:"boundTime"`

	// Lifetime is the template's lifetime at the bind: the claim's duration when it asks
	// for none, and the most it may ask for, extensions included.
	// +required
	Lifetime Lifetime `json:"lifetime"`

	// SSHUser is the login on the lab's nodes, the one its VMs were made with.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z_][a-z0-9_-]*$') && self != 'root'",message="sshUser must be a lowercase POSIX user name other than root"
	// +required
	SSHUser string `json:"sshUser"`
}

// LabEnvironmentSpec is one lab instance.
// +kubebuilder:validation:XValidation:rule="self.templateRef == oldSelf.templateRef",message="templateRef is immutable"
// +kubebuilder:validation:XValidation:rule="has(self.poolRef) == has(oldSelf.poolRef) && (!has(self.poolRef) || self.poolRef == oldSelf.poolRef)",message="poolRef is immutable"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.claimRef) || (has(self.claimRef) && self.claimRef == oldSelf.claimRef)",message="claimRef cannot be changed or removed once set: a lab is never handed to a second claim"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.terms) || (has(self.terms) && self.terms == oldSelf.terms)",message="terms cannot be changed or removed once set: a running claim keeps what it was bound with"
// +kubebuilder:validation:XValidation:rule="!has(self.terms) || has(self.claimRef)",message="terms are set with claimRef, by the bind"
type LabEnvironmentSpec struct {
	// TemplateRef names the LabTemplate the lab is built from. Immutable.
	// +required
	TemplateRef LocalObjectReference `json:"templateRef"`

	// PoolRef names the LabPool that created the lab; unset for a lab booted for one claim
	// or by an admin. Immutable.
	// +optional
	PoolRef *LocalObjectReference `json:"poolRef,omitempty"`

	// ClaimRef is the claim the lab is bound to. It is set once, by the bind, and never
	// changed: a lab is never handed to a second student.
	// +optional
	ClaimRef *ClaimReference `json:"claimRef,omitempty"`

	// Terms are the bound claim's lifetime and login, recorded by the operator in the
	// write that binds the lab and never changed: the claim reads them from here, never
	// from the live template. Set once; a lab bound by a labforge version before them gets
	// them on its claim's first pass.
	// +optional
	Terms *ClaimTerms `json:"terms,omitempty"`
}

// LabEnvironmentStatus is what the operator observed of a lab.
type LabEnvironmentStatus struct {
	// Namespace is the lab's namespace on the host cluster, lab-<name>.
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// NamespaceUID is the UID of the namespace the lab was built in. A namespace of the
	// lab's name with another UID was deleted and created again: the lab is a new one
	// that must prove itself Ready again. (A UID, not a timestamp: the operator's and the
	// API server's clocks need not agree.)
	// +optional
	NamespaceUID types.UID `json:"namespaceUID,omitempty"`

	// TemplateGeneration is the generation of the LabTemplate the lab was built from.
	// +optional
	TemplateGeneration int64 `json:"templateGeneration,omitempty"`

	// ReadyTime is when the lab first became Ready.
	// +optional
	ReadyTime *metav1.Time `json:"readyTime,omitempty"`

	// ReadyInstances are the VM instances the lab first became Ready with, recorded in
	// the same write as ReadyTime. A VM whose instance is not the one recorded was
	// restarted and built its node again from nothing (condition VMsRestarted).
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=11
	// +optional
	ReadyInstances []InstanceReference `json:"readyInstances,omitempty"`

	// Conditions: VMsScheduled, VMsRunning, APIReachable, BootstrapComplete, Ready, and
	// VMsRestarted once a VM of the Ready lab was restarted.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ObservedGeneration is the generation last acted on; -1 until then.
	// +kubebuilder:default=-1
	// +optional
	ObservedGeneration int64 `json:"observedGeneration"`
}

// LabEnvironment is one lab instance: it owns the namespace lab-<name> and everything in
// it. It is to a LabClaim what a PersistentVolume is to a PersistentVolumeClaim. Created by
// the operator (or by an admin for a one-off).
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=le;labenv,categories=labforge
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 59 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name must be a DNS label of at most 59 characters (the lab namespace is lab-<name>)"
// +kubebuilder:printcolumn:name="Template",type=string,JSONPath=`.spec.templateRef.name`
// +kubebuilder:printcolumn:name="Pool",type=string,JSONPath=`.spec.poolRef.name`
// +kubebuilder:printcolumn:name="Claim",type=string,JSONPath=`.spec.claimRef.name`
// +kubebuilder:printcolumn:name="Claim-Namespace",type=string,JSONPath=`.spec.claimRef.namespace`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type LabEnvironment struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the lab instance.
	// +required
	Spec LabEnvironmentSpec `json:"spec"`

	// Status is what the operator observed.
	// +kubebuilder:default={}
	// +optional
	Status LabEnvironmentStatus `json:"status,omitzero"`
}

// LabEnvironmentList is a list of LabEnvironments.
// +kubebuilder:object:root=true
type LabEnvironmentList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []LabEnvironment `json:"items"`
}

func init() {
	SchemeBuilder.Register(&LabEnvironment{}, &LabEnvironmentList{})
}
