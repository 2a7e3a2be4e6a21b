package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MaxWorkers is the largest worker count a LabTemplate may ask for. A lab of 1 + 10 nodes
// already costs a host about 12 GiB; anything larger is not a learning lab.
const MaxWorkers = 10

// LabTemplateSpec is one lab design: what every lab built from it looks like.
// +kubebuilder:validation:XValidation:rule="duration(self.lifetime.default) <= duration(self.lifetime.maximum)",message="lifetime.default must not exceed lifetime.maximum"
type LabTemplateSpec struct {
	// Description tells students what the lab is about (plain text or Markdown). It is
	// shown on every claim served from this template.
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	Description string `json:"description,omitempty"`

	// Hints are shown to students, in order, next to the description.
	// +kubebuilder:validation:MaxItems=20
	// +kubebuilder:validation:items:MaxLength=1024
	// +listType=atomic
	// +optional
	Hints []string `json:"hints,omitempty"`

	// KubernetesVersion is the version kubeadm installs in the lab, as "v1.MINOR.PATCH".
	// +kubebuilder:validation:MaxLength=16
	// +kubebuilder:validation:XValidation:rule="self.matches('^v1\\\\.[0-9]{1,2}\\\\.[0-9]{1,3}$')",message="kubernetesVersion must look like v1.36.3"
	// +required
	KubernetesVersion string `json:"kubernetesVersion"`

	// Image is the VM disk every node of the lab boots from.
	// +required
	Image LabImage `json:"image"`

	// ControlPlane sizes the control-plane VM. kubeadm needs at least 2 vCPUs and 1700 MiB
	// there, so the defaults are 2 cores and 2Gi. Each field has its own default: set
	// only what differs.
	// +kubebuilder:default={cores: 2, threads: 1, memory: "2Gi", disk: "20Gi"}
	// +kubebuilder:validation:XValidation:rule="self.cores * self.threads >= 2",message="controlPlane needs at least 2 vCPUs (cores * threads) for kubeadm",fieldPath=".cores",reason=FieldValueInvalid
	// +kubebuilder:validation:XValidation:rule="quantity(string(self.memory)).compareTo(quantity('1700Mi')) >= 0",message="controlPlane.memory must be at least 1700Mi for kubeadm",fieldPath=".memory",reason=FieldValueInvalid
	// +optional
	ControlPlane ControlPlaneSize `json:"controlPlane,omitzero"`

	// Workers sizes the worker VMs and says how many there are (0 is a single-node lab).
	// Each field has its own default (1 worker of 1 core and 1Gi): set only what differs.
	// +kubebuilder:default={count: 1, cores: 1, threads: 1, memory: "1Gi", disk: "20Gi"}
	// +optional
	Workers WorkerSpec `json:"workers,omitzero"`

	// SSHUser is the login students use on every node. It has passwordless sudo (root on the
	// node); logging in as root directly is not offered. Defaults to "ubuntu".
	// +kubebuilder:default=ubuntu
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z_][a-z0-9_-]*$')",message="sshUser must be a lowercase POSIX user name"
	// +kubebuilder:validation:XValidation:rule="self != 'root'",message="sshUser must not be root: students get root through sudo"
	// +optional
	SSHUser string `json:"sshUser,omitempty"`

	// Scenario breaks the lab on purpose: a script the control plane runs as root once the
	// cluster is up, before the lab reports Ready.
	// +optional
	Scenario *Scenario `json:"scenario,omitempty"`

	// Lifetime bounds how long a student may hold a lab of this template.
	// +kubebuilder:default={default: "2h", maximum: "8h"}
	// +optional
	Lifetime Lifetime `json:"lifetime,omitzero"`

	// BootTimeout is how long a lab may take from creation to Ready before it is marked
	// failed. Defaults to 15m.
	// +kubebuilder:default="15m"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('2h')",message="bootTimeout must be between 1m and 2h"
	// +optional
	BootTimeout metav1.Duration `json:"bootTimeout,omitzero"`

	// Network sets the lab's own address ranges and what it may reach.
	// +kubebuilder:default={podCIDR: "10.200.0.0/16", serviceCIDR: "10.201.0.0/16", tunnelPort: 8475}
	// +optional
	Network LabNetwork `json:"network,omitzero"`

	// Claims says which namespaces may claim a lab of this template directly (a LabClaim
	// with spec.templateRef, which boots a lab just for it), and caps those labs as a
	// LabPool caps its own. Unset admits no namespace: such claims are refused until an
	// admin allows them here. Claims through a pool are the pool's to admit and count.
	// +kubebuilder:default={maxBooting: 5, maxLabs: 100}
	// +optional
	Claims TemplateClaims `json:"claims,omitzero"`

	// Checks say what must hold inside the lab for the scenario to count as solved. While
	// a lab is claimed the operator watches the resources they name, through the lab's API
	// with its own read-only credential, and reports each check on the claim
	// (status.checks) and all of them as the claim's Solved condition. A template without
	// checks gives its claims neither.
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=name
	// +optional
	Checks []SolutionCheck `json:"checks,omitempty"`
}

// MaxChecks is the most checks a LabTemplate may list (the CRD's bound on spec.checks).
const MaxChecks = 16

// MaxCheckExpressionLength bounds a check's CEL expression, in bytes.
const MaxCheckExpressionLength = 4096

// SolutionCheck is one thing that must hold inside a lab for its scenario to be solved:
// a CEL expression over the lab objects a resource reference selects.
type SolutionCheck struct {
	// Name identifies the check on the claim (status.checks[].name): a DNS label, unique
	// within the template.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +required
	Name string `json:"name"`

	// Description tells the student what the check wants, e.g. "The web Deployment has
	// three ready replicas". It is the message of a passing check.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Description string `json:"description,omitempty"`

	// Hint is shown on the claim while the check fails.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Hint string `json:"hint,omitempty"`

	// Resource selects the lab objects the expression reads.
	// +required
	Resource CheckResource `json:"resource"`

	// Expression is a CEL expression that must evaluate to true. With resource.name set
	// it reads the one object as `object` (null while the object does not exist);
	// otherwise it reads the selected objects as the list `objects`. The Kubernetes CEL
	// libraries (strings, lists, regex, quantity, url, ip, cidr, format, semver) are
	// available. Template validation compiles it and refuses an expression that does not
	// compile, is not a bool, or costs too much; each evaluation is bounded by a cost
	// budget too.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	// +required
	Expression string `json:"expression"`
}

// CheckResource names the lab objects a check reads: a resource by API group, version
// and kind (or plural resource name), in a namespace, by name or label selector.
// +kubebuilder:validation:XValidation:rule="has(self.kind) != has(self.resource)",message="exactly one of kind and resource must be set"
// +kubebuilder:validation:XValidation:rule="!(has(self.name) && has(self.labelSelector))",message="name and labelSelector are exclusive"
type CheckResource struct {
	// Group is the API group, "" (the default) for the core group, e.g. "apps".
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +optional
	Group string `json:"group,omitempty"`

	// Version is the API version, e.g. "v1".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]+$`
	// +required
	Version string `json:"version"`

	// Kind is the object kind, e.g. "Deployment". Its resource is the lowercase plural
	// Kubernetes derives for regular kinds (Deployment: deployments, NetworkPolicy:
	// networkpolicies); name resource instead for a kind whose plural is irregular
	// (Endpoints: endpoints).
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Z][A-Za-z0-9]*$`
	// +optional
	Kind string `json:"kind,omitempty"`

	// Resource is the plural resource name as the API serves it, e.g. "deployments".
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z][a-z0-9]*$`
	// +optional
	Resource string `json:"resource,omitempty"`

	// Namespace is where the objects are; empty for a cluster-scoped resource, or to
	// select across every namespace of the lab.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// Name selects one object, read by the expression as `object`.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$`
	// +optional
	Name string `json:"name,omitempty"`

	// LabelSelector selects objects by label; with neither name nor labelSelector every
	// object of the resource (in namespace, when set) is selected. The expression reads
	// them as `objects`. At most 16 matchLabels and 16 matchExpressions.
	// +kubebuilder:validation:XValidation:rule="(!has(self.matchLabels) || self.matchLabels.size() <= 16) && (!has(self.matchExpressions) || self.matchExpressions.size() <= 16)",message="labelSelector takes at most 16 matchLabels and 16 matchExpressions"
	// +optional
	LabelSelector *metav1.LabelSelector `json:"labelSelector,omitempty"`
}

// TemplateClaims admits and caps the labs booted for claims that name a template
// (spec.templateRef), the way a LabPool's claimNamespaceSelector, maxBooting and maxLabs
// do for the pool's.
type TemplateClaims struct {
	// NamespaceSelector selects the namespaces whose LabClaims may name this template.
	// Unset admits no namespace; an empty selector ({}) admits every namespace.
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn'] ? (has(e.values) && size(e.values) > 0) : (e.operator in ['Exists', 'DoesNotExist'] && (!has(e.values) || size(e.values) == 0)))",message="claims.namespaceSelector.matchExpressions: the operator must be In or NotIn with values, or Exists or DoesNotExist without values"
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// MaxBooting caps how many labs booted for claims of this template may be booting
	// (not Ready yet) at once; a claim beyond it waits. Defaults to 5.
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	MaxBooting int32 `json:"maxBooting,omitempty"`

	// MaxLabs caps the labs booted for claims of this template, in every state (booting,
	// Ready, failed, being deleted); a claim beyond it waits until one is gone. Labs of
	// pools do not count. Defaults to 100.
	// +kubebuilder:default=100
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	// +optional
	MaxLabs int32 `json:"maxLabs,omitempty"`
}

// LabImage says which disk the lab's VMs boot from.
type LabImage struct {
	// ContainerDisk is the OCI image of a KubeVirt container disk, e.g.
	// "quay.io/containerdisks/ubuntu:22.04".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-zA-Z0-9][a-zA-Z0-9._/:@-]*$')",message="containerDisk must be an image reference without spaces or shell characters"
	// +required
	ContainerDisk string `json:"containerDisk"`

	// Prebaked says the image already holds containerd, kubeadm, kubelet and kubectl of
	// the template's kubernetesVersion, so the bootstrap skips installing them (much faster
	// boots). A stock Ubuntu 22.04 image works with the default, false.
	// +optional
	Prebaked bool `json:"prebaked,omitempty"`
}

// NodeSize is the virtual hardware of one VM.
type NodeSize struct {
	// Cores is the number of virtual CPU cores.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=16
	// +kubebuilder:default=1
	// +optional
	Cores int32 `json:"cores,omitempty"`

	// Threads is the number of threads per core (vCPUs = cores * threads).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=2
	// +kubebuilder:default=1
	// +optional
	Threads int32 `json:"threads,omitempty"`

	// Memory is the guest memory, e.g. "2Gi". At least 512Mi, at most 64Gi; defaults to
	// 1Gi.
	// +kubebuilder:default="1Gi"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('512Mi')) >= 0 && quantity(string(self)).compareTo(quantity('64Gi')) <= 0",message="memory must be between 512Mi and 64Gi"
	// +optional
	Memory resource.Quantity `json:"memory,omitzero"`

	// Disk is the size of the node's data disk, e.g. "20Gi" (bytes, as a Kubernetes
	// quantity; defaults to 20Gi, at least 5Gi, at most 200Gi). The VM boots from its
	// container disk, which keeps the image's size (about 2.2 GiB for Ubuntu 22.04) and
	// cannot grow; the data disk is an empty disk, formatted at first boot, that holds
	// what a node fills: containerd's images and containers (/var/lib/containerd) and the
	// kubelet's pods and emptyDir volumes (/var/lib/kubelet). It is sparse on the host and
	// lives as long as the VM's instance: a restarted VM starts with an empty one.
	// +kubebuilder:default="20Gi"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('5Gi')) >= 0 && quantity(string(self)).compareTo(quantity('200Gi')) <= 0",message="disk must be between 5Gi and 200Gi"
	// +optional
	Disk resource.Quantity `json:"disk,omitzero"`
}

// ControlPlaneSize is the virtual hardware of the control-plane VM: the fields of NodeSize,
// with the control plane's own defaults (2 cores, 2Gi), so that any subset of them can be
// set. NodeSize(c) converts it.
type ControlPlaneSize struct {
	// Cores is the number of virtual CPU cores; defaults to 2.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=16
	// +kubebuilder:default=2
	// +optional
	Cores int32 `json:"cores,omitempty"`

	// Threads is the number of threads per core (vCPUs = cores * threads).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=2
	// +kubebuilder:default=1
	// +optional
	Threads int32 `json:"threads,omitempty"`

	// Memory is the guest memory, e.g. "4Gi". At least 512Mi (1700Mi for kubeadm on a
	// control plane), at most 64Gi; defaults to 2Gi.
	// +kubebuilder:default="2Gi"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('512Mi')) >= 0 && quantity(string(self)).compareTo(quantity('64Gi')) <= 0",message="memory must be between 512Mi and 64Gi"
	// +optional
	Memory resource.Quantity `json:"memory,omitzero"`

	// Disk is the size of the node's data disk, e.g. "20Gi" (bytes, as a Kubernetes
	// quantity; defaults to 20Gi, at least 5Gi, at most 200Gi). The VM boots from its
	// container disk, which keeps the image's size (about 2.2 GiB for Ubuntu 22.04) and
	// cannot grow; the data disk is an empty disk, formatted at first boot, that holds
	// what a node fills: containerd's images and containers (/var/lib/containerd) and the
	// kubelet's pods and emptyDir volumes (/var/lib/kubelet). It is sparse on the host and
	// lives as long as the VM's instance: a restarted VM starts with an empty one.
	// +kubebuilder:default="20Gi"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('5Gi')) >= 0 && quantity(string(self)).compareTo(quantity('200Gi')) <= 0",message="disk must be between 5Gi and 200Gi"
	// +optional
	Disk resource.Quantity `json:"disk,omitzero"`
}

// WorkerSpec is the worker nodes of a lab.
type WorkerSpec struct {
	// Count is the number of worker VMs, 0 to 10; defaults to 1.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10
	// +kubebuilder:default=1
	// +optional
	Count int32 `json:"count"`

	NodeSize `json:",inline"`
}

// Scenario is what the lab's control plane runs to set up the exercise.
type Scenario struct {
	// Script is a shell script (it should start with a #! line; bash is used otherwise)
	// run as root on the control plane with KUBECONFIG=/etc/kubernetes/admin.conf once the
	// cluster is up. A non-zero exit fails the lab's bootstrap with the script's output.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=65536
	// +required
	Script string `json:"script"`
}

// Lifetime bounds a claim's duration.
type Lifetime struct {
	// Default is the duration of a claim that does not ask for one. Defaults to 2h.
	// +kubebuilder:default="2h"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="lifetime.default must be at least 1m"
	// +optional
	Default metav1.Duration `json:"default,omitzero"`

	// Maximum is the longest duration a claim may ask for, extensions included. Defaults to 8h.
	// +kubebuilder:default="8h"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('720h')",message="lifetime.maximum must be between 1m and 720h"
	// +optional
	Maximum metav1.Duration `json:"maximum,omitzero"`
}

// LabNetwork holds the lab cluster's own ranges and its egress and bandwidth policy.
// +kubebuilder:validation:XValidation:rule="!has(self.podCIDR) || !has(self.serviceCIDR) || !isCIDR(self.podCIDR) || !isCIDR(self.serviceCIDR) || (!cidr(self.podCIDR).containsCIDR(cidr(self.serviceCIDR).masked()) && !cidr(self.serviceCIDR).containsCIDR(cidr(self.podCIDR).masked()))",message="podCIDR and serviceCIDR must not overlap"
type LabNetwork struct {
	// PodCIDR is the lab cluster's pod range. It must not overlap the host cluster's pod or
	// service ranges (the operator checks that at provisioning). Defaults to 10.200.0.0/16.
	// +kubebuilder:default="10.200.0.0/16"
	// +kubebuilder:validation:MaxLength=43
	// +kubebuilder:validation:XValidation:rule="isCIDR(self) && cidr(self).ip().family() == 4 && cidr(self).prefixLength() >= 8 && cidr(self).prefixLength() <= 24",message="podCIDR must be an IPv4 CIDR with a prefix length between 8 and 24"
	// +optional
	PodCIDR string `json:"podCIDR,omitempty"`

	// ServiceCIDR is the lab cluster's service range. Defaults to 10.201.0.0/16.
	// +kubebuilder:default="10.201.0.0/16"
	// +kubebuilder:validation:MaxLength=43
	// +kubebuilder:validation:XValidation:rule="isCIDR(self) && cidr(self).ip().family() == 4 && cidr(self).prefixLength() >= 12 && cidr(self).prefixLength() <= 24",message="serviceCIDR must be an IPv4 CIDR with a prefix length between 12 and 24"
	// +optional
	ServiceCIDR string `json:"serviceCIDR,omitempty"`

	// TunnelPort is the UDP port of the lab CNI's VXLAN tunnel. It differs from the usual
	// 4789 and 8472 so that lab traffic is never mistaken for the host CNI's. Defaults to 8475.
	// +kubebuilder:default=8475
	// +kubebuilder:validation:Minimum=1024
	// +kubebuilder:validation:Maximum=65535
	// +kubebuilder:validation:XValidation:rule="self != 4789 && self != 8472",message="tunnelPort must not be 4789 or 8472, the host CNI's usual VXLAN ports"
	// +optional
	TunnelPort int32 `json:"tunnelPort,omitempty"`

	// InternetEgress says whether the lab's VMs may open connections beyond the lab:
	// Allow (the default) lets them reach every address but the host cluster's ranges,
	// link-local addresses and egressExceptCIDRs; Deny lets them reach only each other and
	// DNS. An offline lab needs an image that holds everything its bootstrap would
	// download (image.prebaked, with the kubeadm and flannel images pulled). Recorded when a
	// lab is built: changing it affects new labs only.
	// +kubebuilder:validation:Enum=Allow;Deny
	// +kubebuilder:default=Allow
	// +optional
	InternetEgress InternetEgress `json:"internetEgress,omitempty"`

	// EgressExceptCIDRs are ranges the lab may not reach, on top of the host cluster's own
	// ranges and link-local addresses, which are always blocked. A /0 (0.0.0.0/0 or ::/0)
	// takes away that whole address family: ["::/0"] is an IPv4-only lab. Has no effect
	// when internetEgress is Deny.
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=43
	// +kubebuilder:validation:items:XValidation:rule="isCIDR(self)",message="egressExceptCIDRs entries must be CIDRs such as 192.0.2.0/24"
	// +listType=set
	// +optional
	EgressExceptCIDRs []string `json:"egressExceptCIDRs,omitempty"`

	// Bandwidth limits each VM's traffic. Unset means no limit.
	// +optional
	Bandwidth *Bandwidth `json:"bandwidth,omitempty"`

	// MaxExposedServices is how many of the lab's own Services of type NodePort or
	// LoadBalancer the operator mirrors to host NodePorts while the lab is claimed, so
	// that the student can reach what they deployed (status.exposed of their claim). Each
	// port of an exposed Service takes one NodePort of the host. 0, the default, exposes
	// nothing and starts no watch of the lab. The lab's services.nodeports quota grows
	// with it. Recorded when a lab is built: changing it affects new labs only.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=20
	// +optional
	MaxExposedServices int32 `json:"maxExposedServices,omitempty"`
}

// InternetEgress is whether a lab may reach addresses beyond itself: Allow or Deny.
type InternetEgress string

// The values of LabNetwork.InternetEgress.
const (
	// InternetEgressAllow lets a lab reach every address but the host cluster's ranges,
	// link-local addresses and the template's exceptions.
	InternetEgressAllow InternetEgress = "Allow"
	// InternetEgressDeny lets a lab reach only its own VMs and DNS.
	InternetEgressDeny InternetEgress = "Deny"
)

// Bandwidth limits a VM's network traffic, in bits per second ("10M" is 10 Mbit/s). The
// limits become the kubernetes.io/ingress-bandwidth and egress-bandwidth annotations on
// the VM's launcher pod, which bandwidth-aware CNIs enforce.
// +kubebuilder:validation:XValidation:rule="has(self.ingress) || has(self.egress)",message="bandwidth needs ingress, egress or both"
type Bandwidth struct {
	// Ingress is the limit on traffic into each VM, 1M to 100G.
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('1M')) >= 0 && quantity(string(self)).compareTo(quantity('100G')) <= 0",message="ingress bandwidth must be between 1M and 100G"
	// +optional
	Ingress *resource.Quantity `json:"ingress,omitempty"`

	// Egress is the limit on traffic out of each VM, 1M to 100G.
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('1M')) >= 0 && quantity(string(self)).compareTo(quantity('100G')) <= 0",message="egress bandwidth must be between 1M and 100G"
	// +optional
	Egress *resource.Quantity `json:"egress,omitempty"`
}

// LabTemplateStatus is what the operator observed about a template.
type LabTemplateStatus struct {
	// Conditions: Ready is True when the template was checked and labs can be built from it.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ObservedGeneration is the generation last checked; -1 until the first check.
	// +kubebuilder:default=-1
	// +optional
	ObservedGeneration int64 `json:"observedGeneration"`
}

// LabTemplate is one lab design, written by platform admins: the Kubernetes version and VM
// image, node sizes and count, the scenario that breaks the lab, what students are told,
// lifetime bounds and network policy. Labs copy what they need at creation, so editing a
// template never touches a running lab.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=lt;labtemplate,categories=labforge
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name must be a DNS label (at most 63 lowercase letters, digits and '-')"
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.spec.kubernetesVersion`
// +kubebuilder:printcolumn:name="Workers",type=integer,JSONPath=`.spec.workers.count`
// +kubebuilder:printcolumn:name="Image",type=string,JSONPath=`.spec.image.containerDisk`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type LabTemplate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the lab design.
	// +required
	Spec LabTemplateSpec `json:"spec"`

	// Status is what the operator observed.
	// +kubebuilder:default={}
	// +optional
	Status LabTemplateStatus `json:"status,omitzero"`
}

// LabTemplateList is a list of LabTemplates.
// +kubebuilder:object:root=true
type LabTemplateList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []LabTemplate `json:"items"`
}

func init() {
	SchemeBuilder.Register(&LabTemplate{}, &LabTemplateList{})
}
