package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types and reasons of a LabClaim.
const (
	// ConditionBound is True once a lab is bound to the claim.
	ConditionBound = "Bound"
	// ConditionExpired is True once the claim's duration ran out and its lab was deleted.
	ConditionExpired = "Expired"
	// ConditionExtensionRefused is True while spec.duration, raised after the bind, asks
	// for more than the lifetime.maximum the claim was bound with (status.lifetime): the
	// claim keeps its earlier expiry.
	// It goes away when spec.duration is within the maximum again.
	ConditionExtensionRefused = "ExtensionRefused"

	// ConditionSolved is True when every check of the claim's template passes in its lab,
	// False (naming the failing checks) when one fails, and Unknown while the checks
	// cannot be evaluated. A claim whose template has no checks has no Solved condition.
	// `kubectl wait --for=condition=Solved labclaim/NAME` waits for a student's fix.
	ConditionSolved = "Solved"

	// ReasonWaitingForLab: no Ready lab was free; the claim waits in line.
	ReasonWaitingForLab = "WaitingForLab"
)

// LaunchType says how a claim's lab was provided.
// +kubebuilder:validation:Enum=Warm;Cold
type LaunchType string

const (
	// LaunchWarm: the claim took a lab that was already Ready in its pool.
	LaunchWarm LaunchType = "Warm"
	// LaunchCold: the claim waited for a lab to boot.
	LaunchCold LaunchType = "Cold"
)

// MaxClaimDuration is the longest duration any claim may ask for; a template's
// lifetime.maximum narrows it further.
const MaxClaimDuration = "720h"

// SSHAccess says how the student logs in to the lab's nodes.
// +kubebuilder:validation:XValidation:rule="(has(self.authorizedKeys) && size(self.authorizedKeys) > 0) || (has(self.generateKeyPair) && self.generateKeyPair)",message="ssh needs authorizedKeys, generateKeyPair: true, or both"
type SSHAccess struct {
	// AuthorizedKeys are the student's SSH public keys, one OpenSSH authorized_keys line
	// each, without options (e.g. "ssh-ed25519 AAAAC3Nza... alice@laptop").
	// +kubebuilder:validation:MaxItems=10
	// +kubebuilder:validation:items:MaxLength=4096
	// +kubebuilder:validation:items:XValidation:rule="self.matches('^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|sk-ssh-ed25519@openssh.com|sk-ecdsa-sha2-nistp256@openssh.com) AAAA[A-Za-z0-9+/]+={0,3}( [ -~]{0,256})?$')",message="each authorizedKeys entry must be one SSH public key line: type, base64 key and an optional comment, without options"
	// +listType=atomic
	// +optional
	AuthorizedKeys []string `json:"authorizedKeys,omitempty"`

	// GenerateKeyPair asks the operator for a fresh ed25519 key pair, written to the Secret
	// <claim>-ssh (type kubernetes.io/ssh-auth) in the claim's namespace.
	// +optional
	GenerateKeyPair bool `json:"generateKeyPair,omitempty"`
}

// LabClaimSpec asks for a lab.
// +kubebuilder:validation:XValidation:rule="has(self.poolRef) != has(self.templateRef)",message="exactly one of poolRef and templateRef must be set"
// +kubebuilder:validation:XValidation:rule="has(self.poolRef) == has(oldSelf.poolRef) && (!has(self.poolRef) || self.poolRef == oldSelf.poolRef)",message="poolRef is immutable"
// +kubebuilder:validation:XValidation:rule="has(self.templateRef) == has(oldSelf.templateRef) && (!has(self.templateRef) || self.templateRef == oldSelf.templateRef)",message="templateRef is immutable"
// +kubebuilder:validation:XValidation:rule="self.ssh == oldSelf.ssh",message="ssh is immutable"
type LabClaimSpec struct {
	// PoolRef names the LabPool to take a warm lab from.
	// +optional
	PoolRef *LocalObjectReference `json:"poolRef,omitempty"`

	// TemplateRef names a LabTemplate to boot a lab from just for this claim (a cold start,
	// minutes rather than milliseconds). Use it where no pool exists.
	// +optional
	TemplateRef *LocalObjectReference `json:"templateRef,omitempty"`

	// SSH says how the student logs in to the lab's nodes.
	// +required
	SSH SSHAccess `json:"ssh"`

	// Duration is how long the claim holds its lab, counted from the bind. Defaults to the
	// template's lifetime.default; more than the template's lifetime.maximum is refused.
	// Both are the template's as it was at the bind (status.lifetime). Raising it extends
	// a running claim (its kubeconfig is re-issued).
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('720h')",message="duration must be between 1m and 720h"
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`
}

// SSHEndpoint is where and how the student logs in.
type SSHEndpoint struct {
	// Host is the public address of the host cluster.
	Host string `json:"host"`
	// Port is the NodePort forwarding to the control plane's SSH port.
	Port int32 `json:"port"`
	// User is the login name on every node.
	User string `json:"user"`
	// Command is the exact ssh command line to run.
	Command string `json:"command"`
}

// ExposedPort is one port of a lab Service the student reaches from outside the host.
type ExposedPort struct {
	// Service is the lab Service, as namespace/name inside the lab.
	// +kubebuilder:validation:MaxLength=317
	Service string `json:"service"`
	// Protocol is the port's protocol: TCP, UDP or SCTP.
	Protocol corev1.Protocol `json:"protocol"`
	// LabNodePort is the Service's node port inside the lab (what kubectl get service
	// shows there).
	LabNodePort int32 `json:"labNodePort"`
	// NodePort is the host cluster's NodePort that forwards to it.
	NodePort int32 `json:"nodePort"`
	// Address is where to connect: host:port (the claim's student address and NodePort).
	// +kubebuilder:validation:MaxLength=300
	Address string `json:"address"`
}

// LabClaimStatus tells the student where their lab is.
type LabClaimStatus struct {
	// Lab is the name of the LabEnvironment bound to this claim.
	// +optional
	Lab string `json:"lab,omitempty"`

	// LaunchType is Warm when the lab was Ready at the bind, Cold when the claim waited for
	// one to boot.
	// +optional
	LaunchType LaunchType `json:"launchType,omitempty"`

	// SSH is where and how to log in to the control plane.
	// +optional
	SSH *SSHEndpoint `json:"ssh,omitempty"`

	// APIServerURL is the lab API server's public URL.
	// +optional
	APIServerURL string `json:"apiServerURL,omitempty"`

	// KubeconfigSecretName is the Secret (key "value") in the claim's namespace holding a
	// cluster-admin kubeconfig for the lab, valid until the claim expires.
	// +optional
	KubeconfigSecretName string `json:"kubeconfigSecretName,omitempty"`

	// SSHKeySecretName is the Secret (type kubernetes.io/ssh-auth) holding the generated
	// SSH key pair, when spec.ssh.generateKeyPair is set.
	// +optional
	SSHKeySecretName string `json:"sshKeySecretName,omitempty"`

	// Description is the template's description, for the student.
	// +optional
	Description string `json:"description,omitempty"`

	// Hints are the template's hints, for the student.
	// +listType=atomic
	// +optional
	Hints []string `json:"hints,omitempty"`

	// QueuePosition is the claim's place in line (1 is next) while it waits for a lab:
	// exact for the ten next in line, an upper bound within a factor of two further back
	// (rewriting every waiting claim whenever the line moves would cost too many writes).
	// +optional
	QueuePosition int32 `json:"queuePosition,omitempty"`

	// BoundTime is when the lab was bound to the claim.
	// +optional
	BoundTime *metav1.Time `json:"boundTime,omitempty"`

	// ReadyTime is when the claim first became Ready.
	// +optional
	ReadyTime *metav1.Time `json:"readyTime,omitempty"`

	// ExpiresAt is when the lab will be deleted.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// Lifetime is the template's lifetime as it was when the claim was bound: the
	// duration the claim got when it asked for none, and the most spec.duration may ask
	// for, extensions included. Editing or deleting the template afterwards changes
	// neither (nor the login in ssh.user).
	// +optional
	Lifetime *Lifetime `json:"lifetime,omitempty"`

	// Exposed lists the lab's own Services the student can reach from outside, one entry
	// per port: while the lab is claimed, each Service of type NodePort or LoadBalancer
	// inside the lab (up to the template's network.maxExposedServices) gets a NodePort of
	// the host cluster that forwards to the lab's nodes on the Service's own node port.
	// The ServicesExposed condition says why a Service is not listed.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Exposed []ExposedPort `json:"exposed,omitempty"`

	// Checks are the results of the template's solution checks in the lab, in the
	// template's order, while the lab is claimed and Ready. Absent when the template has
	// no checks.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Checks []CheckStatus `json:"checks,omitempty"`

	// SolvedTime is when every check first passed.
	// +optional
	SolvedTime *metav1.Time `json:"solvedTime,omitempty"`

	// Conditions: Bound, Ready, Expired, ServicesExposed while the lab has Services to
	// expose, and Solved when the template has checks.
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

// CheckStatus is the result of one solution check in the claim's lab.
type CheckStatus struct {
	// Name is the check's name in the template.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +required
	Name string `json:"name"`

	// Passed is true when the check's expression evaluated to true. A check that could
	// not be evaluated (the lab's API unreachable, the operator's read access revoked, an
	// error in the expression) never passes.
	// +required
	Passed bool `json:"passed"`

	// Message says why: the check's description when it passes, its hint (or
	// description) when it fails, and what stopped it when it cannot be evaluated.
	// +kubebuilder:validation:MaxLength=2048
	// +optional
	Message string `json:"message,omitempty"`

	// LastTransitionTime is when passed last changed.
	// +optional
	LastTransitionTime *metav1.Time `json:"lastTransitionTime,omitempty"`
}

// LabClaim asks for a lab: "give me a lab from this pool (or template)". Written by
// students, bots and CI; `kubectl wait --for=condition=Ready labclaim/NAME` waits for it.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=lc;labclaim,categories=labforge
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 52 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name must be a DNS label of at most 52 characters (Secret names add a suffix)"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Lab",type=string,JSONPath=`.status.lab`
// +kubebuilder:printcolumn:name="Solved",type=string,JSONPath=`.status.conditions[?(@.type=="Solved")].status`,priority=1
// +kubebuilder:printcolumn:name="SSH",type=string,JSONPath=`.status.ssh.command`
// +kubebuilder:printcolumn:name="Launch",type=string,JSONPath=`.status.launchType`,priority=1
// +kubebuilder:printcolumn:name="Expires",type=string,format=date-time,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type LabClaim struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the request.
	// +required
	Spec LabClaimSpec `json:"spec"`

	// Status is where the lab is and how to use it.
	// +kubebuilder:default={}
	// +optional
	Status LabClaimStatus `json:"status,omitzero"`
}

// LabClaimList is a list of LabClaims.
// +kubebuilder:object:root=true
type LabClaimList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []LabClaim `json:"items"`
}

func init() {
	SchemeBuilder.Register(&LabClaim{}, &LabClaimList{})
}
