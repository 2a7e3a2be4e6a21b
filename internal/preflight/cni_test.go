package preflight

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/utils/ptr"
)

func cilium(conf map[string]string) CNIFacts {
	return CNIFacts{Name: "Cilium", Evidence: "ConfigMap kube-system/cilium-config", ConfigName: "cilium-config", Config: conf}
}

const fixSocketLB = "set socketLB.hostNamespaceOnly=true in Cilium's Helm values (bpf-lb-sock-hostns-only: \"true\" in cilium-config) and restart the Cilium agents."

func TestCheckCiliumSocketLB(t *testing.T) {
	tests := map[string]struct {
		conf map[string]string
		want Result
	}{
		"kube-proxy replacement without hostns-only": {map[string]string{"kube-proxy-replacement": "true"}, Result{Fail, "Cilium socket LB",
			`Cilium's socket load balancer runs in pod namespaces (kube-proxy-replacement "true", bpf-lb-sock-hostns-only ""): traffic from a VM's guest never passes it, so lab VMs cannot reach Services, DNS included.`, fixSocketLB}},
		"kube-proxy replacement, hostns-only false": {map[string]string{"kube-proxy-replacement": "true", "bpf-lb-sock-hostns-only": "false"}, Result{Fail, "Cilium socket LB",
			`Cilium's socket load balancer runs in pod namespaces (kube-proxy-replacement "true", bpf-lb-sock-hostns-only "false"): traffic from a VM's guest never passes it, so lab VMs cannot reach Services, DNS included.`, fixSocketLB}},
		"old strict mode without hostns-only": {map[string]string{"kube-proxy-replacement": "strict"}, Result{Fail, "Cilium socket LB",
			`Cilium's socket load balancer runs in pod namespaces (kube-proxy-replacement "strict", bpf-lb-sock-hostns-only ""): traffic from a VM's guest never passes it, so lab VMs cannot reach Services, DNS included.`, fixSocketLB}},
		"socket LB on without kube-proxy replacement": {map[string]string{"kube-proxy-replacement": "false", "bpf-lb-sock": "true"}, Result{Fail, "Cilium socket LB",
			`Cilium's socket load balancer runs in pod namespaces (kube-proxy-replacement "false", bpf-lb-sock-hostns-only ""): traffic from a VM's guest never passes it, so lab VMs cannot reach Services, DNS included.`, fixSocketLB}},
		"kube-proxy replacement with hostns-only": {map[string]string{"kube-proxy-replacement": "true", "bpf-lb-sock-hostns-only": "true"}, Result{OK, "Cilium socket LB",
			`kube-proxy replacement with bpf-lb-sock-hostns-only: "true" (socketLB.hostNamespaceOnly): lab VMs reach Services.`, ""}},
		"kube-proxy replacement with the socket LB off": {map[string]string{"kube-proxy-replacement": "true", "bpf-lb-sock": "false"}, Result{OK, "Cilium socket LB",
			`the socket load balancer is off (kube-proxy-replacement "true", bpf-lb-sock "false"): Services reach lab VMs through the datapath.`, ""}},
		"no kube-proxy replacement": {map[string]string{}, Result{OK, "Cilium socket LB",
			`the socket load balancer is off (kube-proxy-replacement "", bpf-lb-sock ""): Services reach lab VMs through the datapath.`, ""}},
		"no cilium-config": {nil, Result{Warn, "Cilium socket LB", "Cilium runs but kube-system/cilium-config was not found, so its kube-proxy replacement settings are unknown.",
			"if Cilium replaces kube-proxy, make sure it runs with socketLB.hostNamespaceOnly=true."}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, checkCiliumSocketLB(cilium(tc.conf))); diff != "" {
				t.Errorf("checkCiliumSocketLB (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckBandwidth(t *testing.T) {
	withBW := DefaultLabNetwork()
	withBW.Source, withBW.Bandwidth = "LabTemplate broken-dns", ptr.To(true)
	withoutBW := DefaultLabNetwork()
	withoutBW.Source, withoutBW.Bandwidth = "LabTemplate plain", ptr.To(false)
	tests := map[string]struct {
		cni  CNIFacts
		lab  LabNetwork
		want Result
	}{
		"template without limits": {CNIFacts{}, withoutBW, Result{OK, "Bandwidth limits", "LabTemplate plain sets no bandwidth limits.", ""}},
		"Cilium with the Bandwidth Manager": {cilium(map[string]string{"enable-bandwidth-manager": "true"}), withBW, Result{OK, "Bandwidth limits",
			`Cilium's Bandwidth Manager is on (enable-bandwidth-manager: "true"); older Cilium releases enforce only kubernetes.io/egress-bandwidth.`, ""}},
		"Cilium without it, template with limits": {cilium(map[string]string{}), withBW, Result{Warn, "Bandwidth limits",
			`Cilium's Bandwidth Manager is off (enable-bandwidth-manager ""): the labs of LabTemplate broken-dns get no limit, since the launcher pod's bandwidth annotations are ignored.`,
			"set bandwidthManager.enabled=true in Cilium's Helm values."}},
		"Cilium without it, no template": {cilium(map[string]string{"enable-bandwidth-manager": "false"}), DefaultLabNetwork(), Result{Warn, "Bandwidth limits",
			`Cilium's Bandwidth Manager is off (enable-bandwidth-manager "false"): labs whose template sets network.bandwidth get no limit, since the launcher pod's bandwidth annotations are ignored.`,
			"set bandwidthManager.enabled=true in Cilium's Helm values."}},
		"Calico chaining the plugin": {CNIFacts{Name: "Calico", ConfigName: "calico-config", Config: map[string]string{"cni_network_config": `{"plugins": [{"type": "calico"}, {"type": "bandwidth", "capabilities": {"bandwidth": true}}]}`}}, withBW,
			Result{OK, "Bandwidth limits", "Calico's CNI configuration (calico-config cni_network_config) chains the bandwidth plugin.", ""}},
		"Calico by the operator, no calico-config": {CNIFacts{Name: "Calico", ConfigName: "calico-config"}, withBW, Result{Warn, "Bandwidth limits",
			"no bandwidth plugin found in Calico's CNI configuration (no calico-config ConfigMap): the labs of LabTemplate broken-dns get no limit, since the launcher pod's bandwidth annotations are ignored.",
			`chain the bandwidth plugin in Calico's CNI configuration ({"type": "bandwidth", "capabilities": {"bandwidth": true}}).`}},
		"Flannel without the plugin": {CNIFacts{Name: "Flannel", ConfigName: "kube-flannel-cfg", Config: map[string]string{"cni-conf.json": `{"plugins": [{"type": "flannel"}, {"type": "portmap"}]}`}}, withBW, Result{Warn, "Bandwidth limits",
			"no bandwidth plugin found in Flannel's CNI configuration (kube-flannel-cfg): the labs of LabTemplate broken-dns get no limit, since the launcher pod's bandwidth annotations are ignored.",
			`add {"type": "bandwidth", "capabilities": {"bandwidth": true}} to the plugins of cni-conf.json in kube-flannel-cfg.`}},
		"unknown CNI": {CNIFacts{}, DefaultLabNetwork(), Result{Warn, "Bandwidth limits",
			"the CNI is unknown, so whether it honours the bandwidth annotations is unknown: labs whose template sets network.bandwidth get no limit, since the launcher pod's bandwidth annotations are ignored unless it does.",
			"chain the bandwidth CNI plugin, or use Cilium's Bandwidth Manager."}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, checkBandwidth(tc.cni, tc.lab)); diff != "" {
				t.Errorf("checkBandwidth (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckCNIReportsTheCNIFirst(t *testing.T) {
	got := checkCNI(cilium(map[string]string{"kube-proxy-replacement": "true", "bpf-lb-sock-hostns-only": "true", "enable-bandwidth-manager": "true"}), DefaultLabNetwork())
	var checks []string
	for _, r := range got {
		checks = append(checks, string(r.Status)+" "+r.Check)
	}
	want := []string{"OK CNI", "OK Cilium socket LB", "OK Bandwidth limits"}
	if diff := cmp.Diff(want, checks); diff != "" {
		t.Errorf("checkCNI (-want +got):\n%s", diff)
	}
	if got[0].Found != "Cilium (ConfigMap kube-system/cilium-config)." {
		t.Errorf("CNI line found %q", got[0].Found)
	}
	unknown := checkCNI(CNIFacts{}, DefaultLabNetwork())
	if len(unknown) != 2 || unknown[0].Status != Warn || unknown[0].Check != "CNI" {
		t.Errorf("checkCNI(unknown) = %v", unknown)
	}
}
