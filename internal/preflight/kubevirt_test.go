package preflight

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
)

func kubeVirt(phase kubevirtv1.KubeVirtPhase, observed string, mutate ...func(*kubevirtv1.KubeVirt)) kubevirtv1.KubeVirt {
	kv := kubevirtv1.KubeVirt{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kubevirt", Name: "kubevirt"},
		Status:     kubevirtv1.KubeVirtStatus{Phase: phase, ObservedKubeVirtVersion: observed},
	}
	for _, m := range mutate {
		m(&kv)
	}
	return kv
}

func withRatio(r int) func(*kubevirtv1.KubeVirt) {
	return func(kv *kubevirtv1.KubeVirt) {
		kv.Spec.Configuration.DeveloperConfiguration = &kubevirtv1.DeveloperConfiguration{CPUAllocationRatio: r}
	}
}

func withBridge(permit *bool) func(*kubevirtv1.KubeVirt) {
	return func(kv *kubevirtv1.KubeVirt) {
		kv.Spec.Configuration.NetworkConfiguration = &kubevirtv1.NetworkConfiguration{PermitBridgeInterfaceOnPodNetwork: permit}
	}
}

var (
	okDeployed     = Result{OK, "KubeVirt", "KubeVirt kubevirt/kubevirt is Deployed.", ""}
	okVersion      = Result{OK, "KubeVirt version", "KubeVirt v1.8.4, the v1.8 API labforge is built against.", ""}
	okBridgeUnset  = Result{OK, "Bridge binding", "spec.configuration.network.permitBridgeInterfaceOnPodNetwork is unset; KubeVirt's default (true) lets lab VMs use bridge binding on the pod network.", ""}
	okRatioDefault = Result{OK, "CPU allocation ratio", "cpuAllocationRatio is 10, unset (KubeVirt's default): each lab vCPU requests 100m of a host CPU, so a 3-vCPU lab requests 300m; the lab quota's requests.cpu counts whole vCPUs, which leaves the launcher's support containers room.", ""}
	okGatesNone    = Result{OK, "Feature gates", "labs use containerDisk, emptyDisk, cloudInitNoCloud, accessCredentials through the guest agent and bridge binding, none of which needs a feature gate in KubeVirt v1.8 (none enabled).", ""}
)

func TestCheckKubeVirt(t *testing.T) {
	tests := map[string]struct {
		facts KubeVirtFacts
		want  []Result
	}{
		"no CRD": {
			facts: KubeVirtFacts{},
			want: []Result{{Fail, "KubeVirt", "the kubevirt.io/v1 KubeVirt CRD (kubevirts.kubevirt.io) is not installed.",
				"install KubeVirt v1.8 (virt-operator and its KubeVirt object: https://kubevirt.io/user-guide/cluster_admin/installation/)."}},
		},
		"CRD without object": {
			facts: KubeVirtFacts{CRD: true},
			want: []Result{{Fail, "KubeVirt", "the KubeVirt CRD is installed but there is no KubeVirt object.",
				"create the KubeVirt object of the release (kubevirt-cr.yaml) so that virt-operator deploys KubeVirt."}},
		},
		"read error": {
			facts: KubeVirtFacts{CRD: true, Err: errors.New("forbidden")},
			want: []Result{{Fail, "KubeVirt", "could not read KubeVirt objects: forbidden.",
				"run preflight with a kubeconfig that may list kubevirts.kubevirt.io in all namespaces."}},
		},
		"installed and Deployed with defaults": {
			facts: KubeVirtFacts{CRD: true, Objects: []kubevirtv1.KubeVirt{kubeVirt(kubevirtv1.KubeVirtPhaseDeployed, "v1.8.4")}},
			want:  []Result{okDeployed, okVersion, okBridgeUnset, okRatioDefault, okGatesNone},
		},
		"still deploying, no version yet": {
			facts: KubeVirtFacts{CRD: true, Objects: []kubevirtv1.KubeVirt{kubeVirt(kubevirtv1.KubeVirtPhaseDeploying, "")}},
			want: []Result{
				{Fail, "KubeVirt", "KubeVirt kubevirt/kubevirt is not Deployed (status.phase: Deploying).",
					"wait for virt-operator to finish, and read `kubectl -n kubevirt get kubevirt kubevirt -o yaml` (status.conditions) and virt-operator's logs if it does not."},
				{Warn, "KubeVirt version", "KubeVirt reports no version yet (status.observedKubeVirtVersion and status.operatorVersion are empty).", "run preflight again once KubeVirt is Deployed."},
				okBridgeUnset, okRatioDefault, okGatesNone,
			},
		},
		"no phase at all": {
			facts: KubeVirtFacts{CRD: true, Objects: []kubevirtv1.KubeVirt{kubeVirt("", "v1.8.4")}},
			want: []Result{
				{Fail, "KubeVirt", "KubeVirt kubevirt/kubevirt is not Deployed (status.phase: no phase yet).",
					"wait for virt-operator to finish, and read `kubectl -n kubevirt get kubevirt kubevirt -o yaml` (status.conditions) and virt-operator's logs if it does not."},
				okVersion, okBridgeUnset, okRatioDefault, okGatesNone,
			},
		},
		"two objects: the Deployed one counts": {
			facts: KubeVirtFacts{CRD: true, Objects: []kubevirtv1.KubeVirt{
				kubeVirt(kubevirtv1.KubeVirtPhaseDeleting, "", func(kv *kubevirtv1.KubeVirt) { kv.Namespace = "a" }),
				kubeVirt(kubevirtv1.KubeVirtPhaseDeployed, "v1.8.4"),
			}},
			want: []Result{okDeployed,
				{Warn, "KubeVirt", "2 KubeVirt objects exist; virt-operator acts on one, and preflight read kubevirt/kubevirt.", "delete the KubeVirt objects virt-operator does not act on."},
				okVersion, okBridgeUnset, okRatioDefault, okGatesNone},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, checkKubeVirt(tc.facts)); diff != "" {
				t.Errorf("checkKubeVirt (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckKubeVirtVersion(t *testing.T) {
	tests := map[string]struct {
		kv         kubevirtv1.KubeVirt
		wantStatus Status
		wantFound  string
	}{
		"v1.8.4 observed":  {kubeVirt(kubevirtv1.KubeVirtPhaseDeployed, "v1.8.4"), OK, "KubeVirt v1.8.4, the v1.8 API labforge is built against."},
		"v1.8.0 no v":      {kubeVirt(kubevirtv1.KubeVirtPhaseDeployed, "1.8.0"), OK, "KubeVirt 1.8.0, the v1.8 API labforge is built against."},
		"older minor":      {kubeVirt(kubevirtv1.KubeVirtPhaseDeployed, "v1.7.2"), Warn, "KubeVirt v1.7.2 is older than v1.8, the API labforge is built and tested against."},
		"newer minor":      {kubeVirt(kubevirtv1.KubeVirtPhaseDeployed, "v1.9.0"), Warn, "KubeVirt v1.9.0 is newer than v1.8, the API labforge is built and tested against; kubevirt.io/v1 stays compatible, but untested."},
		"unparseable":      {kubeVirt(kubevirtv1.KubeVirtPhaseDeployed, "latest"), Warn, `KubeVirt reports version "latest", which is not a version preflight can compare.`},
		"operator version": {kubeVirt(kubevirtv1.KubeVirtPhaseDeploying, "", func(kv *kubevirtv1.KubeVirt) { kv.Status.OperatorVersion = "v1.8.1" }), OK, "KubeVirt v1.8.1, the v1.8 API labforge is built against."},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := checkKubeVirtVersion(&tc.kv)
			if got.Status != tc.wantStatus || got.Found != tc.wantFound {
				t.Errorf("checkKubeVirtVersion = %s %q, want %s %q", got.Status, got.Found, tc.wantStatus, tc.wantFound)
			}
		})
	}
}

func TestCheckBridgeBinding(t *testing.T) {
	tests := map[string]struct {
		kv   kubevirtv1.KubeVirt
		want Result
	}{
		"unset":              {kubeVirt(kubevirtv1.KubeVirtPhaseDeployed, ""), okBridgeUnset},
		"network without it": {kubeVirt(kubevirtv1.KubeVirtPhaseDeployed, "", withBridge(nil)), okBridgeUnset},
		"explicitly true":    {kubeVirt(kubevirtv1.KubeVirtPhaseDeployed, "", withBridge(ptr.To(true))), Result{OK, "Bridge binding", "spec.configuration.network.permitBridgeInterfaceOnPodNetwork is true: lab VMs may use bridge binding on the pod network.", ""}},
		"explicitly false":   {kubeVirt(kubevirtv1.KubeVirtPhaseDeployed, "", withBridge(ptr.To(false))), Result{Fail, "Bridge binding", "spec.configuration.network.permitBridgeInterfaceOnPodNetwork is false: KubeVirt refuses every lab VM, since each gives its VM its own pod address through bridge binding.", `remove the field or set it to true: kubectl -n kubevirt patch kubevirt kubevirt --type merge -p '{"spec":{"configuration":{"network":{"permitBridgeInterfaceOnPodNetwork":true}}}}'.`}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, checkBridgeBinding(&tc.kv)); diff != "" {
				t.Errorf("checkBridgeBinding (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckCPUAllocationRatio(t *testing.T) {
	tests := map[string]struct {
		kv   kubevirtv1.KubeVirt
		want Result
	}{
		"unset":             {kubeVirt(kubevirtv1.KubeVirtPhaseDeployed, ""), okRatioDefault},
		"zero means unset":  {kubeVirt(kubevirtv1.KubeVirtPhaseDeployed, "", withRatio(0)), okRatioDefault},
		"negative is unset": {kubeVirt(kubevirtv1.KubeVirtPhaseDeployed, "", withRatio(-3)), okRatioDefault},
		"set to 4": {kubeVirt(kubevirtv1.KubeVirtPhaseDeployed, "", withRatio(4)), Result{OK, "CPU allocation ratio",
			"cpuAllocationRatio is 4, set: each lab vCPU requests 250m of a host CPU, so a 3-vCPU lab requests 750m; the lab quota's requests.cpu counts whole vCPUs, which leaves the launcher's support containers room.", ""}},
		"set to 1": {kubeVirt(kubevirtv1.KubeVirtPhaseDeployed, "", withRatio(1)), Result{Warn, "CPU allocation ratio",
			"cpuAllocationRatio is 1: each lab vCPU requests a whole host CPU, so a node of N CPU threads holds labs of N vCPUs in all, and the lab quota's requests.cpu must hold the vCPUs plus the launcher's support containers.",
			"keep 1 only if labs must not share CPUs; KubeVirt's default of 10 packs ten times as many labs."}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, checkCPUAllocationRatio(&tc.kv)); diff != "" {
				t.Errorf("checkCPUAllocationRatio (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckFeatureGatesListsEnabledGates(t *testing.T) {
	kv := kubeVirt(kubevirtv1.KubeVirtPhaseDeployed, "", func(kv *kubevirtv1.KubeVirt) {
		kv.Spec.Configuration.DeveloperConfiguration = &kubevirtv1.DeveloperConfiguration{FeatureGates: []string{"Snapshot", "VMExport"}}
	})
	want := "labs use containerDisk, emptyDisk, cloudInitNoCloud, accessCredentials through the guest agent and bridge binding, none of which needs a feature gate in KubeVirt v1.8 (enabled: Snapshot, VMExport)."
	if got := checkFeatureGates(&kv); got.Status != OK || got.Found != want {
		t.Errorf("checkFeatureGates = %s %q, want OK %q", got.Status, got.Found, want)
	}
}

func TestCheckVirtualization(t *testing.T) {
	deployed := KubeVirtFacts{CRD: true, Objects: []kubevirtv1.KubeVirt{kubeVirt(kubevirtv1.KubeVirtPhaseDeployed, "")}}
	emulating := KubeVirtFacts{CRD: true, Objects: []kubevirtv1.KubeVirt{kubeVirt(kubevirtv1.KubeVirtPhaseDeployed, "", func(kv *kubevirtv1.KubeVirt) {
		kv.Spec.Configuration.DeveloperConfiguration = &kubevirtv1.DeveloperConfiguration{UseEmulation: true}
	})}}
	two := HostRanges{Nodes: []Node{{Name: "a", KVM: true}, {Name: "b"}}}
	tests := map[string]struct {
		kv   KubeVirtFacts
		host HostRanges
		want Result
	}{
		"one of two nodes has kvm": {deployed, two, Result{OK, "Virtualization", "1 of 2 Nodes offer devices.kubevirt.io/kvm: a.", ""}},
		"no node has kvm": {deployed, HostRanges{Nodes: []Node{{Name: "a"}}}, Result{Fail, "Virtualization", "none of the 1 Nodes offers devices.kubevirt.io/kvm: no lab VM can be scheduled.",
			"enable hardware virtualization (VT-x/AMD-V, nested virtualization on cloud VMs) on the nodes and check that virt-handler runs on them."}},
		"emulation": {emulating, two, Result{Warn, "Virtualization", "developerConfiguration.useEmulation is true: VMs run in software emulation, many times slower; labs will take minutes more to boot.",
			"use nodes with hardware virtualization and turn useEmulation off."}},
		"no nodes":         {deployed, HostRanges{}, Result{Fail, "Virtualization", "the host has no Nodes to run lab VMs.", "join nodes with hardware virtualization to the host cluster."}},
		"nodes unreadable": {deployed, HostRanges{NodesErr: errors.New("forbidden")}, Result{Warn, "Virtualization", "could not list Nodes: forbidden.", "run preflight with a kubeconfig that may list nodes."}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, checkVirtualization(tc.kv, tc.host)); diff != "" {
				t.Errorf("checkVirtualization (-want +got):\n%s", diff)
			}
		})
	}
}
