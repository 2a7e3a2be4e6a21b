package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PoolUpdateStrategyType says how a pool treats warm labs built from an older template.
// +kubebuilder:validation:Enum=RollingUpdate;OnDelete
type PoolUpdateStrategyType string

const (
	// RollingUpdate replaces warm, unclaimed labs built from an older template generation:
	// a replacement boots first (within maxBooting), then the stale lab is deleted.
	RollingUpdate PoolUpdateStrategyType = "RollingUpdate"
	// OnDelete leaves stale warm labs as they are; they are handed out until gone, and only
	// new labs use the new template.
	OnDelete PoolUpdateStrategyType = "OnDelete"
)

// PoolUpdateStrategy says how stale warm labs are replaced.
type PoolUpdateStrategy struct {
	// Type is RollingUpdate (the default) or OnDelete.
	// +kubebuilder:default=RollingUpdate
	// +optional
	Type PoolUpdateStrategyType `json:"type,omitempty"`
}

// LabPoolSpec says how many labs of one template to keep warm, and who may claim them.
// +kubebuilder:validation:XValidation:rule="self.replicas <= self.maxLabs",message="replicas must not exceed spec.maxLabs, the pool's hard cap on labs",fieldPath=".replicas",reason=FieldValueInvalid
type LabPoolSpec struct {
	// TemplateRef names the LabTemplate the pool's labs are built from. It may be changed;
	// warm labs are then replaced per updateStrategy and claimed labs are left alone.
	// +required
	TemplateRef LocalObjectReference `json:"templateRef"`

	// Replicas is how many Ready, unclaimed labs the pool keeps (labs still booting count
	// toward it). Defaults to 1.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	// +optional
	Replicas int32 `json:"replicas"`

	// MaxBooting caps how many of the pool's labs boot at once, so that a scale-up or a
	// burst of claims does not starve the host. Defaults to 5.
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	MaxBooting int32 `json:"maxBooting,omitempty"`

	// MaxLabs is a hard cap on the pool's labs of every state (booting, warm and claimed).
	// Claims beyond it wait. Defaults to 100.
	// +kubebuilder:default=100
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10000
	// +optional
	MaxLabs int32 `json:"maxLabs"`

	// ClaimNamespaceSelector selects the namespaces whose LabClaims may use this pool. Unset
	// admits no namespace; an empty selector ({}) admits every namespace.
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn'] ? (has(e.values) && size(e.values) > 0) : (e.operator in ['Exists', 'DoesNotExist'] && (!has(e.values) || size(e.values) == 0)))",message="claimNamespaceSelector.matchExpressions: the operator must be In or NotIn with values, or Exists or DoesNotExist without values"
	// +optional
	ClaimNamespaceSelector *metav1.LabelSelector `json:"claimNamespaceSelector,omitempty"`

	// UpdateStrategy says how warm labs built from an older template are replaced.
	// +kubebuilder:default={type: RollingUpdate}
	// +optional
	UpdateStrategy PoolUpdateStrategy `json:"updateStrategy,omitzero"`
}

// LabPoolStatus counts the pool's labs by state.
type LabPoolStatus struct {
	// Replicas is the number of unclaimed labs (booting or Ready), as the scale
	// subresource reports it.
	// +kubebuilder:default=0
	// +optional
	Replicas int32 `json:"replicas"`

	// ReadyReplicas is the number of Ready, unclaimed labs: what claims can take right now.
	// +kubebuilder:default=0
	// +optional
	ReadyReplicas int32 `json:"readyReplicas"`

	// BootingReplicas is the number of unclaimed labs not Ready yet.
	// +kubebuilder:default=0
	// +optional
	BootingReplicas int32 `json:"bootingReplicas"`

	// BoundReplicas is the number of labs held by a claim.
	// +kubebuilder:default=0
	// +optional
	BoundReplicas int32 `json:"boundReplicas"`

	// FailedReplicas is the number of labs that failed to boot and wait to be removed.
	// +kubebuilder:default=0
	// +optional
	FailedReplicas int32 `json:"failedReplicas"`

	// WaitingClaims is the number of claims on this pool waiting for a lab to boot: not
	// bound, not refused, from a namespace claimNamespaceSelector admits, and more of them
	// than the pool has Ready labs. A claim a Ready lab is free for is not counted: it is
	// bound at once.
	// +kubebuilder:default=0
	// +optional
	WaitingClaims int32 `json:"waitingClaims"`

	// Selector is the label selector of the pool's labs, for the scale subresource.
	// +optional
	Selector string `json:"selector,omitempty"`

	// Conditions: Ready (enough warm labs), Stalled (refilling stopped after repeated boot
	// failures).
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

// LabPool keeps labs of one template booted and unclaimed, so that a claim is served in
// milliseconds instead of minutes. Written by GitOps; `kubectl scale labpool` works.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.replicas,statuspath=.status.replicas,selectorpath=.status.selector
// +kubebuilder:resource:scope=Cluster,shortName=lp;labpool,categories=labforge
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 48 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name must be a DNS label of at most 48 characters (lab names add a suffix)"
// +kubebuilder:printcolumn:name="Template",type=string,JSONPath=`.spec.templateRef.name`
// +kubebuilder:printcolumn:name="Desired",type=integer,JSONPath=`.spec.replicas`
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=`.status.readyReplicas`
// +kubebuilder:printcolumn:name="Booting",type=integer,JSONPath=`.status.bootingReplicas`
// +kubebuilder:printcolumn:name="Claimed",type=integer,JSONPath=`.status.boundReplicas`
// +kubebuilder:printcolumn:name="Waiting",type=integer,JSONPath=`.status.waitingClaims`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type LabPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the desired pool.
	// +required
	Spec LabPoolSpec `json:"spec"`

	// Status counts the pool's labs.
	// +kubebuilder:default={}
	// +optional
	Status LabPoolStatus `json:"status,omitzero"`
}

// LabPoolList is a list of LabPools.
// +kubebuilder:object:root=true
type LabPoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []LabPool `json:"items"`
}

func init() {
	SchemeBuilder.Register(&LabPool{}, &LabPoolList{})
}
