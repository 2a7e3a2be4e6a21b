package v1alpha1

// Reasons of the conditions and events labforge sets, by the kind that sets them. A
// reason two kinds share is defined once, where it first appears. They live in the API
// package, next to the condition types, because they are part of what users read and
// script against (`kubectl wait`, alerts), and so that no controller imports another
// for its words.

// Condition reasons of a LabTemplate.
const (
	ReasonAccepted        = "Accepted"
	ReasonInvalidTemplate = "InvalidTemplate"
)

// Condition reasons of a LabPool.
const (
	ReasonWarm                 = "Warm"
	ReasonFilling              = "Filling"
	ReasonTemplateNotFound     = "TemplateNotFound"
	ReasonRepeatedBootFailures = "RepeatedBootFailures"
	// ReasonInvalidSchedule: a window of the pool's schedule has a start or a time zone
	// the operator cannot read; the pool keeps its own size until it is fixed.
	ReasonInvalidSchedule = "InvalidSchedule"
	// Reasons a lab is deleted, the Reason of a Delete. They are meant for events, logs and
	// metric labels, so they are few and fixed.
	// ReasonFailed: the lab failed to boot.
	ReasonFailed = "Failed"
	// ReasonScaleDown: the pool has more unbound labs than it wants.
	ReasonScaleDown = "ScaleDown"
	// ReasonStale: the lab was built from an older template and the pool's update
	// strategy is RollingUpdate.
	ReasonStale = "Stale"
)

// Condition reasons of a LabEnvironment.
const (
	ReasonNamespaceTerminating = "NamespaceTerminating"
	// ReasonNamespaceLost: the namespace of a lab a claim holds was deleted. The lab is
	// not rebuilt (a student's lab is never replaced behind their back); its claim says
	// LabLost, and the LabEnvironment goes when the claim does.
	ReasonNamespaceLost = "NamespaceLost"
	// ReasonForeignNamespace: a namespace of the lab's name exists that labforge did not
	// make for this lab (it carries no valid proof): it is never adopted, used or deleted.
	// The lab goes on once an admin deletes that namespace.
	ReasonForeignNamespace     = "ForeignNamespace"
	ReasonProvisioning         = "Provisioning"
	ReasonProvisioningFailed   = "ProvisioningFailed"
	ReasonWaitingForScheduling = "WaitingForScheduling"
	ReasonScheduled            = "Scheduled"
	ReasonBooting              = "Booting"
	ReasonRunning              = "Running"
	ReasonVMFailed             = "VMFailed"
	ReasonVMsNotRunning        = "VMsNotRunning"
	ReasonWaitingForVMs        = "WaitingForVMs"
	ReasonUnreachable          = "Unreachable"
	// ReasonProbing: the lab's VMs run and the operator's first probe of its API has not
	// answered yet (the probe runs off the reconcile workers; decision 55).
	ReasonProbing           = "Probing"
	ReasonReached           = "Reached"
	ReasonBootstrapping     = "Bootstrapping"
	ReasonBootstrapComplete = "BootstrapComplete"
	ReasonBootstrapFailed   = "BootstrapFailed"
	ReasonBootTimeout       = "BootTimeout"
	ReasonLabReady          = "LabReady"
	// ReasonDeleting: the lab is being deleted (Ready=False until its namespace is gone).
	ReasonDeleting = "Deleting"
	// ReasonVMPodRefused: the API server refused the virt-launcher pod of one of the
	// lab's VMs (a LimitRange, a ResourceQuota, Pod Security admission), as KubeVirt
	// reports on the VMI (Synchronized=False, FailedCreate). KubeVirt keeps trying with a
	// backoff, and the lab boots once an admin has fixed what refused it; if that takes
	// longer than the template's bootTimeout, the lab times out (decision 51).
	ReasonVMPodRefused = "VMPodRefused"
)

// Reasons of LabClaim.
const (
	// Reasons a Ready lab's claim is not Ready yet because of the student's SSH keys.
	// ReasonWaitingForKeys: a VM's guest agent has not reported a synchronisation of
	// its access credentials yet (KubeVirt's AccessCredentialsSynchronized condition).
	ReasonWaitingForKeys = "WaitingForKeys"
	// ReasonKeysNotSynchronized: KubeVirt reports that it could not put the access
	// credentials into a VM (AccessCredentialsSynchronized=False), with its message.
	ReasonKeysNotSynchronized = "KeysNotSynchronized"
	// Condition reasons of a LabClaim.
	ReasonPoolNotFound        = "PoolNotFound"
	ReasonNamespaceNotAllowed = "NamespaceNotAllowed"
	ReasonDurationTooLong     = "DurationTooLong"
	ReasonInvalidSSHKey       = "InvalidSSHKey"
	ReasonSecretConflict      = "SecretConflict"
	ReasonLabLost             = "LabLost"
	ReasonLabFailed           = "LabFailed"
	ReasonLabBooting          = "LabBooting"
	ReasonBound               = "Bound"
	ReasonNotBound            = "NotBound"
	ReasonExpired             = "Expired"
	ReasonHandoverFailed      = "HandoverFailed"
	// ReasonNodePortsExhausted: the lab is bound and Ready, but the host cluster's NodePort
	// range has no room for its SSH and API ports; the claim waits for ports to be freed.
	ReasonNodePortsExhausted = "NodePortsExhausted"
	// ReasonNodeAddressUnknown: the node running the lab's control plane has no address
	// of the type students are given (or the VMI runs on no node yet); the claim waits.
	ReasonNodeAddressUnknown = "NodeAddressUnknown"
)

// The condition type and reasons of a claim's exposed Services (its lab's own Services of
// type NodePort or LoadBalancer mirrored to host NodePorts, status.exposed). The condition
// is there only while the lab has such Services: a claim whose student exposes nothing
// never carries it.
const (
	// ConditionServicesExposed is True when every NodePort and LoadBalancer Service of the
	// lab is exposed, False with one of the reasons below when one is not.
	ConditionServicesExposed = "ServicesExposed"
	// ReasonExposed: every such Service of the lab has its host NodePort.
	ReasonExposed = "Exposed"
	// ReasonExposureCapReached: the lab has more such Services than its template's
	// network.maxExposedServices; the oldest are exposed, the others wait for one to go.
	ReasonExposureCapReached = "ExposureCapReached"
	// ReasonNodePortQuotaExceeded: the lab namespace's services.nodeports quota refused a
	// host Service (a Service with too many ports); it waits for the lab to change.
	ReasonNodePortQuotaExceeded = "NodePortQuotaExceeded"
	// ReasonExposureRefused: a lab Service asks for what is never exposed (a node port
	// outside the lab's NodePort range, a protocol other than TCP, UDP and SCTP).
	ReasonExposureRefused = "ExposureRefused"
	// Events of exposure: a lab Service got its host NodePort, or lost it.
	ReasonServiceExposed   = "ServiceExposed"
	ReasonServiceWithdrawn = "ServiceWithdrawn"
)

// Reasons of a LabClaim's Solved condition and of its solution events.
const (
	// ReasonAllChecksPassed: every check of the template passes in the lab (Solved=True).
	ReasonAllChecksPassed = "AllChecksPassed"
	// ReasonChecksFailed: at least one check evaluated to false (Solved=False).
	ReasonChecksFailed = "ChecksFailed"
	// ReasonChecksNotEvaluated: at least one check could not be evaluated and none
	// failed (Solved=Unknown): the lab's API is unreachable or refuses the operator, or
	// an expression failed at run time.
	ReasonChecksNotEvaluated = "ChecksNotEvaluated"
	// ReasonWaitingForChecks: the lab is not Ready yet, or the operator has not read the
	// lab's objects yet (Solved=Unknown).
	ReasonWaitingForChecks = "WaitingForChecks"
	// ReasonSolved is the reason of the event recorded when a claim first turns Solved.
	ReasonSolved = "Solved"
)

// Reasons of the orphan sweep's events.
const (
	// ReasonDeletedOrphan is the reason of the event recorded for each orphan deleted.
	ReasonDeletedOrphan = "DeletedOrphan"
)

// Finalizers labforge puts on its own kinds: each holds an object until its controller
// has removed what the object stands for.
const (
	// LabClaimFinalizer is the finalizer earlier labforge versions put on LabClaims; it is removed
	// when found. A claim carries none: see deleteOrphanedLabs.
	LabClaimFinalizer = "labforge.dev/claim"
	// LabEnvironmentFinalizer holds a LabEnvironment until its namespace, and everything in it, is gone.
	LabEnvironmentFinalizer = "labforge.dev/environment"
	// LabPoolFinalizer holds a LabPool until its unclaimed labs are deleted. Claimed labs stay with
	// their claims.
	LabPoolFinalizer = "labforge.dev/pool"
)
