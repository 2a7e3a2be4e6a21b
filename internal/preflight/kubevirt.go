package preflight

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/version"
	kubevirtv1 "kubevirt.io/api/core/v1"
)

// KubeVirt facts this file relies on, all read from kubevirt.io/api v1.8.4 core/v1/types.go
// and kubevirt/kubevirt v1.8 unless said otherwise:
//   - KubeVirtStatus.Phase is Deploying, Deployed, Deleting or Deleted; virt-operator sets
//     Deployed once every component runs.
//   - spec.configuration.network.permitBridgeInterfaceOnPodNetwork (the JSON name of
//     NetworkConfiguration is "network") defaults to true
//     (pkg/virt-config/virt-config.go DefaultPermitBridgeInterfaceOnPodNetwork); when false
//     the VMI admission refuses bridge binding on the pod network, which every lab VM uses
//     (internal/render/vm.go).
//   - spec.configuration.developerConfiguration.cpuAllocationRatio defaults to 10: the
//     launcher pod requests vCPUs/ratio of a host CPU (pkg/virt-controller/services,
//     renderresources.go).
//   - containerDisk, emptyDisk, cloudInitNoCloud, accessCredentials propagated by the
//     qemu guest agent, and bridge binding need no feature gate in v1.8: none is listed in
//     pkg/virt-config/featuregate/active.go, and the gates that once governed binding
//     (NetworkBindingPlugins, DynamicPodInterfaceNaming) are GA (inactive.go).

// labforgeKubeVirt is the KubeVirt minor labforge's API types (kubevirt.io/api) come from.
var labforgeKubeVirt = version.MajorMinor(1, 8)

// pickKubeVirt returns the KubeVirt object that counts: the Deployed one, else the first.
// virt-operator acts on a single KubeVirt object per cluster.
func pickKubeVirt(objs []kubevirtv1.KubeVirt) *kubevirtv1.KubeVirt {
	for i := range objs {
		if objs[i].Status.Phase == kubevirtv1.KubeVirtPhaseDeployed {
			return &objs[i]
		}
	}
	if len(objs) == 0 {
		return nil
	}
	return &objs[0]
}

func kvName(kv *kubevirtv1.KubeVirt) string { return kv.Namespace + "/" + kv.Name }

// checkKubeVirt says whether KubeVirt is installed and Deployed, which version runs, and
// what its configuration means for labs. Without a KubeVirt object only the first line
// is reported: the others would have nothing to say.
func checkKubeVirt(f KubeVirtFacts) []Result {
	const check = "KubeVirt"
	install := "install KubeVirt v1.8 (virt-operator and its KubeVirt object: https://kubevirt.io/user-guide/cluster_admin/installation/)."
	switch {
	case f.Err != nil:
		return []Result{{Fail, check, fmt.Sprintf("could not read KubeVirt objects: %v.", f.Err),
			"run preflight with a kubeconfig that may list kubevirts.kubevirt.io in all namespaces."}}
	case !f.CRD:
		return []Result{{Fail, check, "the kubevirt.io/v1 KubeVirt CRD (kubevirts.kubevirt.io) is not installed.", install}}
	case len(f.Objects) == 0:
		return []Result{{Fail, check, "the KubeVirt CRD is installed but there is no KubeVirt object.",
			"create the KubeVirt object of the release (kubevirt-cr.yaml) so that virt-operator deploys KubeVirt."}}
	}
	kv := pickKubeVirt(f.Objects)
	var out []Result
	if kv.Status.Phase != kubevirtv1.KubeVirtPhaseDeployed {
		phase := string(kv.Status.Phase)
		if phase == "" {
			phase = "no phase yet"
		}
		out = append(out, Result{Fail, check, fmt.Sprintf("KubeVirt %s is not Deployed (status.phase: %s).", kvName(kv), phase),
			fmt.Sprintf("wait for virt-operator to finish, and read `kubectl -n %s get kubevirt %s -o yaml` (status.conditions) and virt-operator's logs if it does not.", kv.Namespace, kv.Name)})
	} else {
		out = append(out, Result{OK, check, fmt.Sprintf("KubeVirt %s is Deployed.", kvName(kv)), ""})
	}
	if len(f.Objects) > 1 {
		out = append(out, Result{Warn, check, fmt.Sprintf("%d KubeVirt objects exist; virt-operator acts on one, and preflight read %s.", len(f.Objects), kvName(kv)),
			"delete the KubeVirt objects virt-operator does not act on."})
	}
	out = append(out, checkKubeVirtVersion(kv), checkBridgeBinding(kv), checkCPUAllocationRatio(kv), checkFeatureGates(kv))
	return out
}

// kubeVirtVersion is the version KubeVirt runs: what virt-operator observed deployed, else
// the operator's own, else the target.
func kubeVirtVersion(kv *kubevirtv1.KubeVirt) string {
	for _, v := range []string{kv.Status.ObservedKubeVirtVersion, kv.Status.OperatorVersion, kv.Status.TargetKubeVirtVersion} {
		if v != "" {
			return v
		}
	}
	return ""
}

func checkKubeVirtVersion(kv *kubevirtv1.KubeVirt) Result {
	const check = "KubeVirt version"
	raw := kubeVirtVersion(kv)
	if raw == "" {
		return Result{Warn, check, "KubeVirt reports no version yet (status.observedKubeVirtVersion and status.operatorVersion are empty).",
			"run preflight again once KubeVirt is Deployed."}
	}
	v, err := version.ParseGeneric(raw)
	if err != nil {
		return Result{Warn, check, fmt.Sprintf("KubeVirt reports version %q, which is not a version preflight can compare.", raw),
			"make sure the host runs KubeVirt v1.8."}
	}
	mm := version.MajorMinor(v.Major(), v.Minor())
	switch {
	case mm.LessThan(labforgeKubeVirt):
		return Result{Warn, check, fmt.Sprintf("KubeVirt %s is older than v1.8, the API labforge is built and tested against.", raw),
			"upgrade KubeVirt to v1.8."}
	case labforgeKubeVirt.LessThan(mm):
		return Result{Warn, check, fmt.Sprintf("KubeVirt %s is newer than v1.8, the API labforge is built and tested against; kubevirt.io/v1 stays compatible, but untested.", raw),
			"read KubeVirt's release notes for changes to bridge binding, containerDisk and accessCredentials."}
	}
	return Result{OK, check, fmt.Sprintf("KubeVirt %s, the v1.8 API labforge is built against.", raw), ""}
}

func checkBridgeBinding(kv *kubevirtv1.KubeVirt) Result {
	const check = "Bridge binding"
	var permit *bool
	if n := kv.Spec.Configuration.NetworkConfiguration; n != nil {
		permit = n.PermitBridgeInterfaceOnPodNetwork
	}
	switch {
	case permit == nil:
		return Result{OK, check, "spec.configuration.network.permitBridgeInterfaceOnPodNetwork is unset; KubeVirt's default (true) lets lab VMs use bridge binding on the pod network.", ""}
	case *permit:
		return Result{OK, check, "spec.configuration.network.permitBridgeInterfaceOnPodNetwork is true: lab VMs may use bridge binding on the pod network.", ""}
	}
	return Result{Fail, check, "spec.configuration.network.permitBridgeInterfaceOnPodNetwork is false: KubeVirt refuses every lab VM, since each gives its VM its own pod address through bridge binding.",
		fmt.Sprintf(`remove the field or set it to true: kubectl -n %s patch kubevirt %s --type merge -p '{"spec":{"configuration":{"network":{"permitBridgeInterfaceOnPodNetwork":true}}}}'.`, kv.Namespace, kv.Name)}
}

// defaultCPUAllocationRatio is KubeVirt's when developerConfiguration sets none.
const defaultCPUAllocationRatio = 10

func checkCPUAllocationRatio(kv *kubevirtv1.KubeVirt) Result {
	const check = "CPU allocation ratio"
	ratio, how := defaultCPUAllocationRatio, "unset (KubeVirt's default)"
	if d := kv.Spec.Configuration.DeveloperConfiguration; d != nil && d.CPUAllocationRatio > 0 {
		ratio, how = d.CPUAllocationRatio, "set"
	}
	perVCPU := fmt.Sprintf("%dm", 1000/ratio)
	if ratio == 1 {
		return Result{Warn, check, "cpuAllocationRatio is 1: each lab vCPU requests a whole host CPU, so a node of N CPU threads holds labs of N vCPUs in all, and the lab quota's requests.cpu must hold the vCPUs plus the launcher's support containers.",
			"keep 1 only if labs must not share CPUs; KubeVirt's default of 10 packs ten times as many labs."}
	}
	return Result{OK, check, fmt.Sprintf("cpuAllocationRatio is %d, %s: each lab vCPU requests %s of a host CPU, so a 3-vCPU lab requests %dm; the lab quota's requests.cpu counts whole vCPUs, which leaves the launcher's support containers room.", ratio, how, perVCPU, 3000/ratio), ""}
}

func checkFeatureGates(kv *kubevirtv1.KubeVirt) Result {
	var gates []string
	if d := kv.Spec.Configuration.DeveloperConfiguration; d != nil {
		gates = d.FeatureGates
	}
	enabled := "none enabled"
	if len(gates) > 0 {
		enabled = "enabled: " + strings.Join(gates, ", ")
	}
	return Result{OK, "Feature gates", fmt.Sprintf("labs use containerDisk, emptyDisk, cloudInitNoCloud, accessCredentials through the guest agent and bridge binding, none of which needs a feature gate in KubeVirt v1.8 (%s).", enabled), ""}
}

// checkVirtualization says whether VMs can be scheduled at all: a launcher pod requests
// devices.kubevirt.io/kvm unless developerConfiguration.useEmulation is set.
func checkVirtualization(kvf KubeVirtFacts, h HostRanges) Result {
	const check = "Virtualization"
	if h.NodesErr != nil {
		return Result{Warn, check, fmt.Sprintf("could not list Nodes: %v.", h.NodesErr), "run preflight with a kubeconfig that may list nodes."}
	}
	var kvm []string
	for _, n := range h.Nodes {
		if n.KVM {
			kvm = append(kvm, n.Name)
		}
	}
	emulation := false
	if kv := pickKubeVirt(kvf.Objects); kv != nil && kv.Spec.Configuration.DeveloperConfiguration != nil {
		emulation = kv.Spec.Configuration.DeveloperConfiguration.UseEmulation
	}
	switch {
	case len(h.Nodes) == 0:
		return Result{Fail, check, "the host has no Nodes to run lab VMs.", "join nodes with hardware virtualization to the host cluster."}
	case emulation:
		return Result{Warn, check, "developerConfiguration.useEmulation is true: VMs run in software emulation, many times slower; labs will take minutes more to boot.",
			"use nodes with hardware virtualization and turn useEmulation off."}
	case len(kvm) == 0:
		return Result{Fail, check, fmt.Sprintf("none of the %d Nodes offers devices.kubevirt.io/kvm: no lab VM can be scheduled.", len(h.Nodes)),
			"enable hardware virtualization (VT-x/AMD-V, nested virtualization on cloud VMs) on the nodes and check that virt-handler runs on them."}
	}
	return Result{OK, check, fmt.Sprintf("%d of %d Nodes offer devices.kubevirt.io/kvm: %s.", len(kvm), len(h.Nodes), strings.Join(kvm, ", ")), ""}
}
