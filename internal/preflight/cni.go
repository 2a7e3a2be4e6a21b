package preflight

import (
	"fmt"
	"strings"
)

// Where each CNI is recognised, and the ConfigMap holding its configuration. Cilium's
// Helm chart writes kube-system/cilium-config; Calico's manifest install writes
// kube-system/calico-config (the Tigera operator writes none there); Flannel's manifest
// writes kube-flannel-cfg in kube-flannel (kube-system in older manifests).
const (
	ciliumConfig  = "cilium-config"
	calicoConfig  = "calico-config"
	flannelConfig = "kube-flannel-cfg"
)

func checkCNI(cni CNIFacts, lab LabNetwork) []Result {
	if cni.Name == "" {
		return []Result{
			{Warn, "CNI", "none of Cilium, Calico or Flannel was recognised in kube-system or kube-flannel.",
				"check by hand that the host's CNI gives launcher pods routable addresses and honours NetworkPolicy; docs/host-prerequisites.md lists the known caveats."},
			checkBandwidth(cni, lab),
		}
	}
	out := []Result{{OK, "CNI", fmt.Sprintf("%s (%s).", cni.Name, cni.Evidence), ""}}
	if cni.Name == "Cilium" {
		out = append(out, checkCiliumSocketLB(cni))
	}
	return append(out, checkBandwidth(cni, lab))
}

// checkCiliumSocketLB: Cilium's socket load balancer translates Service addresses at
// connect() in the pod's network namespace, which a VM's guest never enters: with it on
// in pods, lab VMs cannot reach Services (DNS included). Cilium's kube-proxy-free guide
// says so for KubeVirt and Kata (cilium/cilium commit 4fb5a1bb, "docs: Mention about
// KubeVirt in KPR docs"; socketLB.hostNamespaceOnly=true is cilium-config's
// bpf-lb-sock-hostns-only). Kube-proxy replacement turns the socket LB on unless
// bpf-lb-sock says otherwise.
func checkCiliumSocketLB(cni CNIFacts) Result {
	const check = "Cilium socket LB"
	if cni.Config == nil {
		return Result{Warn, check, "Cilium runs but kube-system/cilium-config was not found, so its kube-proxy replacement settings are unknown.",
			"if Cilium replaces kube-proxy, make sure it runs with socketLB.hostNamespaceOnly=true."}
	}
	kpr := strings.TrimSpace(cni.Config["kube-proxy-replacement"])
	sock := strings.TrimSpace(cni.Config["bpf-lb-sock"])
	active := sock == "true" ||
		(sock != "false" && (kpr == "true" || kpr == "strict" || kpr == "probe")) ||
		cni.Config["enable-host-reachable-services"] == "true"
	hostnsOnly := cni.Config["bpf-lb-sock-hostns-only"] == "true"
	switch {
	case !active:
		return Result{OK, check, fmt.Sprintf("the socket load balancer is off (kube-proxy-replacement %q, bpf-lb-sock %q): Services reach lab VMs through the datapath.", kpr, sock), ""}
	case hostnsOnly:
		return Result{OK, check, "kube-proxy replacement with bpf-lb-sock-hostns-only: \"true\" (socketLB.hostNamespaceOnly): lab VMs reach Services.", ""}
	}
	return Result{Fail, check, fmt.Sprintf("Cilium's socket load balancer runs in pod namespaces (kube-proxy-replacement %q, bpf-lb-sock-hostns-only %q): traffic from a VM's guest never passes it, so lab VMs cannot reach Services, DNS included.", kpr, cni.Config["bpf-lb-sock-hostns-only"]),
		"set socketLB.hostNamespaceOnly=true in Cilium's Helm values (bpf-lb-sock-hostns-only: \"true\" in cilium-config) and restart the Cilium agents."}
}

// checkBandwidth: a template's bandwidth limits are the kubernetes.io/ingress-bandwidth
// and egress-bandwidth annotations on the launcher pod, which only the bandwidth CNI
// plugin (chained after the CNI) or Cilium's Bandwidth Manager act on.
func checkBandwidth(cni CNIFacts, lab LabNetwork) Result {
	const check = "Bandwidth limits"
	if lab.Bandwidth != nil && !*lab.Bandwidth {
		return Result{OK, check, lab.Source + " sets no bandwidth limits.", ""}
	}
	who := "labs whose template sets network.bandwidth"
	if lab.Bandwidth != nil {
		who = "the labs of " + lab.Source
	}
	unlimited := fmt.Sprintf("%s get no limit, since the launcher pod's bandwidth annotations are ignored", who)
	switch cni.Name {
	case "Cilium":
		if cni.Config["enable-bandwidth-manager"] == "true" {
			return Result{OK, check, "Cilium's Bandwidth Manager is on (enable-bandwidth-manager: \"true\"); older Cilium releases enforce only kubernetes.io/egress-bandwidth.", ""}
		}
		return Result{Warn, check, fmt.Sprintf("Cilium's Bandwidth Manager is off (enable-bandwidth-manager %q): %s.", cni.Config["enable-bandwidth-manager"], unlimited),
			"set bandwidthManager.enabled=true in Cilium's Helm values."}
	case "Calico":
		if strings.Contains(cni.Config["cni_network_config"], `"bandwidth"`) {
			return Result{OK, check, "Calico's CNI configuration (calico-config cni_network_config) chains the bandwidth plugin.", ""}
		}
		return Result{Warn, check, fmt.Sprintf("no bandwidth plugin found in Calico's CNI configuration (%s): %s.", configOrNone(cni), unlimited),
			"chain the bandwidth plugin in Calico's CNI configuration ({\"type\": \"bandwidth\", \"capabilities\": {\"bandwidth\": true}})."}
	case "Flannel":
		if strings.Contains(cni.Config["cni-conf.json"], `"bandwidth"`) {
			return Result{OK, check, "Flannel's CNI configuration (kube-flannel-cfg cni-conf.json) chains the bandwidth plugin.", ""}
		}
		return Result{Warn, check, fmt.Sprintf("no bandwidth plugin found in Flannel's CNI configuration (%s): %s.", configOrNone(cni), unlimited),
			"add {\"type\": \"bandwidth\", \"capabilities\": {\"bandwidth\": true}} to the plugins of cni-conf.json in kube-flannel-cfg."}
	}
	return Result{Warn, check, "the CNI is unknown, so whether it honours the bandwidth annotations is unknown: " + unlimited + " unless it does.",
		"chain the bandwidth CNI plugin, or use Cilium's Bandwidth Manager."}
}

func configOrNone(cni CNIFacts) string {
	if cni.Config == nil {
		return "no " + cni.ConfigName + " ConfigMap"
	}
	return cni.ConfigName
}
