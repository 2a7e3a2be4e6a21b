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

// PoolWindow is a period, repeating on a calendar, during which the pool is sized for it:
// a class, a workshop, office hours. While a window is open its minLabs and buffer replace
// the pool's own; outside every window the pool's own apply. When windows overlap, the
// larger of each applies.
// +kubebuilder:validation:XValidation:rule="has(self.minLabs) || has(self.buffer)",message="a window sets minLabs, buffer or both"
type PoolWindow struct {
	// Name names the window in the pool's status (status.scaling.window) and events.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +required
	Name string `json:"name"`

	// Start is when the window opens, as a standard five-field cron expression (minute,
	// hour, day of month, month, day of week; "0 9 * * MON-FRI"), read in timeZone: the
	// class's own time. The pool starts booting for it warmUp earlier, so that its labs
	// are Ready when the first student arrives (docs/operations.md, "Sizing a pool for a
	// class"). The operator refuses an expression its parser does not accept: the pool's Ready
	// condition is then False with reason InvalidSchedule and the parser's error, and the
	// pool keeps its own size.
	// +kubebuilder:validation:MinLength=9
	// +kubebuilder:validation:MaxLength=100
	// +kubebuilder:validation:XValidation:rule="!self.contains('TZ=')",message="start must not carry a time zone: set timeZone"
	// +required
	Start string `json:"start"`

	// Duration is how long the window stays open after each start, at least one minute
	// and at most a week ("2h", "90m").
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('168h')",message="duration must be between 1m and 168h"
	// +required
	Duration metav1.Duration `json:"duration"`

	// WarmUp is how long before each start the pool begins booting for the window: the
	// window sizes the pool from start-warmUp to start+duration (status.scaling.warmingUp
	// says when it does so ahead of the start). Unset: the pool's own observed boot time
	// with a margin (status.scaling.warmUp, from status.scaling.bootTime), or 0 while the
	// pool has never seen a lab boot. "0s" opens the window at its start. At most 2h.
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('2h')",message="warmUp must be between 0s and 2h"
	// +optional
	WarmUp *metav1.Duration `json:"warmUp,omitempty"`

	// TimeZone is the IANA time zone start is read in ("Europe/Berlin"): daylight saving
	// moves the window with the wall clock. Defaults to UTC. A zone the operator's time
	// zone database does not know is refused like a bad start.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$`
	// +optional
	TimeZone string `json:"timeZone,omitempty"`

	// MinLabs is how many labs the pool holds while the window is open, claimed or not:
	// the class's size. Claimed labs count toward it, so that the pool does not boot a
	// second class's worth as students claim. Unset keeps spec.minLabs.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10000
	// +optional
	MinLabs *int32 `json:"minLabs,omitempty"`

	// Buffer is how many Ready unclaimed labs the pool keeps beyond its waiting claims
	// while the window is open, as spec.replicas does outside it. Unset keeps
	// spec.replicas; 0 boots nothing beyond minLabs and the waiting claims.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	// +optional
	Buffer *int32 `json:"buffer,omitempty"`
}

// LabPoolSpec says how many labs of one template to keep warm, and who may claim them.
// +kubebuilder:validation:XValidation:rule="self.replicas <= self.maxLabs",message="replicas must not exceed spec.maxLabs, the pool's hard cap on labs",fieldPath=".replicas",reason=FieldValueInvalid
// +kubebuilder:validation:XValidation:rule="!has(self.minLabs) || self.minLabs <= self.maxLabs",message="minLabs must not exceed spec.maxLabs, the pool's hard cap on labs",fieldPath=".minLabs",reason=FieldValueInvalid
type LabPoolSpec struct {
	// TemplateRef names the LabTemplate the pool's labs are built from. It may be changed;
	// warm labs are then replaced per updateStrategy and claimed labs are left alone.
	// +required
	TemplateRef LocalObjectReference `json:"templateRef"`

	// Replicas is how many Ready, unclaimed labs the pool keeps beyond the claims waiting
	// for one (labs still booting count toward it): its buffer, in the words of Agones'
	// Buffer policy. Defaults to 1. An open window of spec.schedule may replace it.
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

	// MinLabs is how many labs the pool holds at least, claimed or not: while fewer are
	// claimed, the rest wait unclaimed (on top of what replicas asks, never instead).
	// Unset or 0: no floor, replicas alone sizes the pool. An open window of spec.schedule
	// may replace it.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10000
	// +optional
	MinLabs *int32 `json:"minLabs,omitempty"`

	// Schedule lists the windows during which the pool is sized differently, each opening
	// on a cron expression for a duration (a class at 09:00 every Monday). The operator
	// wakes the pool when a window opens or closes; status.scaling says which rule sizes
	// the pool now and when that changes next.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Schedule []PoolWindow `json:"schedule,omitempty"`

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

	// Scaling says which rule sizes the pool now, what it asks for, and when that changes
	// next.
	// +optional
	Scaling *PoolScalingStatus `json:"scaling,omitempty"`

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

// PoolScalingRule names what sizes a pool now.
// +kubebuilder:validation:Enum=Replicas;MinLabs;Schedule;MaxLabs
type PoolScalingRule string

const (
	// ScalingReplicas: spec.replicas, the buffer beyond waiting claims, sizes the pool.
	ScalingReplicas PoolScalingRule = "Replicas"
	// ScalingMinLabs: spec.minLabs, the floor on labs claimed or not, sizes the pool.
	ScalingMinLabs PoolScalingRule = "MinLabs"
	// ScalingSchedule: an open window of spec.schedule (status.scaling.window) sizes it.
	ScalingSchedule PoolScalingRule = "Schedule"
	// ScalingMaxLabs: the hard cap spec.maxLabs holds the pool below what a rule asks.
	ScalingMaxLabs PoolScalingRule = "MaxLabs"
)

// PoolScalingStatus says which rule sizes a pool now.
type PoolScalingStatus struct {
	// Rule is what sizes the pool now: Replicas, MinLabs, Schedule or MaxLabs.
	// +optional
	Rule PoolScalingRule `json:"rule,omitempty"`

	// Window names the open window of spec.schedule that sizes the pool, when there is
	// one (also when the hard cap holds it below what the window asks).
	// +optional
	Window string `json:"window,omitempty"`

	// Desired is how many unclaimed labs (Ready or booting) the rule asks for now, before
	// the claims waiting for a lab are added: status.waitingClaims come on top, within
	// spec.maxLabs.
	// +optional
	Desired int32 `json:"desired"`

	// WarmingUp says the window named in window has not started yet: the pool is booting
	// its labs ahead of the window's start, by its warmUp.
	// +optional
	WarmingUp bool `json:"warmingUp,omitempty"`

	// NextChange is when the next window of spec.schedule begins warming up, starts or
	// closes, the next time the pool's size or this status may change by the calendar.
	// Unset when the pool has no schedule.
	// +optional
	NextChange *metav1.Time `json:"nextChange,omitempty"`

	// BootTime is the pool's observed boot time, in whole seconds: the longest any of its
	// labs took from creation to Ready, among the labs it holds now (unclaimed, claimed
	// or being deleted) that became Ready. It is kept while the pool holds no such lab, so that a
	// pool emptied between classes still knows it, and moves only when a boot changes it
	// by 10 % or 5 s. Unset until a lab of the pool has become Ready.
	// +optional
	BootTime *metav1.Duration `json:"bootTime,omitempty"`

	// WarmUp is how long before its start a window without spec warmUp begins sizing the
	// pool: bootTime and a margin (a quarter more, at least 30 s more; at most 2h), as
	// labs booting together on a loaded host boot slower than the slowest one seen.
	// Unset while bootTime is: such windows then open at their start.
	// +optional
	WarmUp *metav1.Duration `json:"warmUp,omitempty"`
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
// +kubebuilder:printcolumn:name="Rule",type=string,JSONPath=`.status.scaling.rule`,priority=1
// +kubebuilder:printcolumn:name="Window",type=string,JSONPath=`.status.scaling.window`,priority=1
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
