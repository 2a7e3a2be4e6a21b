package preflight_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/labforge/labforge/internal/preflight"
	"github.com/labforge/labforge/test/integration"
)

// Lines whose wording several shapes share.
const (
	noKubeVirtObject = "FAIL KubeVirt: the KubeVirt CRD is installed but there is no KubeVirt object. Do: create the KubeVirt object of the release (kubevirt-cr.yaml) so that virt-operator deploys KubeVirt."
	serviceRanges    = "OK   Host service ranges: 10.96.0.0/16 from ServiceCIDR kubernetes."
	nodePorts        = "OK   NodePort range: 30100-30999 (from the API server's refusal of a NodePort Service on port 1): 900 ports, 2 per claimed lab (SSH and API), so at most 450 claimed labs besides the host's own NodePorts."
	tunnelUnknown    = "OK   Lab tunnel port: labs tunnel on UDP 8475, clear of the usual host VXLAN ports 4789 and 8472 (the host CNI's own port is unknown)."
	deployed         = "OK   KubeVirt: KubeVirt kubevirt/kubevirt is Deployed."
	version184       = "OK   KubeVirt version: KubeVirt v1.8.4, the v1.8 API labforge is built against."
	bridgeUnset      = "OK   Bridge binding: spec.configuration.network.permitBridgeInterfaceOnPodNetwork is unset; KubeVirt's default (true) lets lab VMs use bridge binding on the pod network."
	ratioDefault     = "OK   CPU allocation ratio: cpuAllocationRatio is 10, unset (KubeVirt's default): each lab vCPU requests 100m of a host CPU, so a 3-vCPU lab requests 300m; the lab quota's requests.cpu counts whole vCPUs, which leaves the launcher's support containers room."
	gatesNone        = "OK   Feature gates: labs use containerDisk, emptyDisk, cloudInitNoCloud, accessCredentials through the guest agent and bridge binding, none of which needs a feature gate in KubeVirt v1.8 (none enabled)."
)

// run runs preflight as the administrator, with the defaults `labforge preflight` has.
func run(ctx context.Context) []string {
	GinkgoHelper()
	report, err := preflight.Run(ctx, cp.RESTConfig(), preflight.Options{})
	Expect(err).NotTo(HaveOccurred())
	var lines []string
	for _, r := range report {
		lines = append(lines, r.String())
	}
	return lines
}

// linesOf returns the lines of one check.
func linesOf(lines []string, check string) []string {
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l[5:], check+": ") {
			out = append(out, l)
		}
	}
	return out
}

func node(name string, podCIDRs []string, kvm bool, addrs ...corev1.NodeAddress) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if len(podCIDRs) > 0 {
		n.Spec.PodCIDR, n.Spec.PodCIDRs = podCIDRs[0], podCIDRs
	}
	n.Status.Addresses = addrs
	n.Status.Allocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8")}
	if kvm {
		n.Status.Allocatable["devices.kubevirt.io/kvm"] = resource.MustParse("1k")
	}
	return n
}

// createNode creates n and then writes its status, which a create does not keep.
func createNode(ctx context.Context, n *corev1.Node) {
	GinkgoHelper()
	status := n.Status
	Expect(k8s.Create(ctx, n)).To(Succeed())
	n.Status = status
	Expect(k8s.Status().Update(ctx, n)).To(Succeed())
}

func internal(ip string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip}
}

func external(ip string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: ip}
}

func setCiliumConfig(ctx context.Context, data map[string]string) {
	GinkgoHelper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "cilium-config"}}
	err := k8s.Get(ctx, client.ObjectKeyFromObject(cm), cm)
	cm.Data = data
	if apierrors.IsNotFound(err) {
		Expect(k8s.Create(ctx, cm)).To(Succeed())
		return
	}
	Expect(err).NotTo(HaveOccurred())
	Expect(k8s.Update(ctx, cm)).To(Succeed())
}

// setKubeletConfig writes kubeadm's shared kubelet configuration with clusterDNS.
func setKubeletConfig(ctx context.Context, clusterDNS string) {
	GinkgoHelper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kubelet-config"}}
	err := k8s.Get(ctx, client.ObjectKeyFromObject(cm), cm)
	cm.Data = map[string]string{"kubelet": "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nclusterDomain: cluster.local\nclusterDNS:\n- " + clusterDNS + "\n"}
	if apierrors.IsNotFound(err) {
		Expect(k8s.Create(ctx, cm)).To(Succeed())
		return
	}
	Expect(err).NotTo(HaveOccurred())
	Expect(k8s.Update(ctx, cm)).To(Succeed())
}

func kubeVirt(ctx context.Context) *kubevirtv1.KubeVirt {
	GinkgoHelper()
	kv := &kubevirtv1.KubeVirt{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "kubevirt", Name: "kubevirt"}, kv)).To(Succeed())
	return kv
}

var _ = Describe("An admin runs labforge preflight before installing labforge", Ordered, func() {
	It("on a host with only the KubeVirt CRD, no nodes and no CNI, learns what is missing", func(ctx context.Context) {
		Expect(run(ctx)).To(Equal([]string{
			noKubeVirtObject,
			"FAIL Virtualization: the host has no Nodes to run lab VMs. Do: join nodes with hardware virtualization to the host cluster.",
			"FAIL Host pod ranges: the host has no Nodes. Do: join nodes to the host cluster before installing labforge.",
			serviceRanges,
			"WARN Node addresses: no Nodes to read addresses from. Do: run preflight again once the host has nodes.",
			nodePorts,
			"WARN Lab ranges: the template defaults: lab pods 10.200.0.0/16 and services 10.201.0.0/16 overlap none of the host's known ranges and node addresses. Some host ranges are unknown (see above). Do: check the lab ranges against the ranges you give the operator.",
			tunnelUnknown,
			"WARN DNS: no Service kube-system/kube-dns; cluster domain unknown (no kubeadm kubelet-config; labforge assumes cluster.local). Do: make sure the host runs cluster DNS that pods on the pod network can reach; lab VMs use it.",
			"WARN CNI: none of Cilium, Calico or Flannel was recognised in kube-system or kube-flannel. Do: check by hand that the host's CNI gives launcher pods routable addresses and honours NetworkPolicy; docs/host-prerequisites.md lists the known caveats.",
			"WARN Bandwidth limits: the CNI is unknown, so whether it honours the bandwidth annotations is unknown: labs whose template sets network.bandwidth get no limit, since the launcher pod's bandwidth annotations are ignored unless it does. Do: chain the bandwidth CNI plugin, or use Cilium's Bandwidth Manager.",
		}))
	})

	It("sees a KubeVirt that virt-operator is still deploying", func(ctx context.Context) {
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kubevirt"}})).To(Succeed())
		kv := &kubevirtv1.KubeVirt{ObjectMeta: metav1.ObjectMeta{Namespace: "kubevirt", Name: "kubevirt"}}
		Expect(k8s.Create(ctx, kv)).To(Succeed())
		kv.Status = kubevirtv1.KubeVirtStatus{Phase: kubevirtv1.KubeVirtPhaseDeploying, TargetKubeVirtVersion: "v1.8.4"}
		Expect(k8s.Status().Update(ctx, kv)).To(Succeed())

		lines := run(ctx)
		Expect(lines[:5]).To(Equal([]string{
			"FAIL KubeVirt: KubeVirt kubevirt/kubevirt is not Deployed (status.phase: Deploying). Do: wait for virt-operator to finish, and read `kubectl -n kubevirt get kubevirt kubevirt -o yaml` (status.conditions) and virt-operator's logs if it does not.",
			version184, bridgeUnset, ratioDefault, gatesNone,
		}))
	})

	It("sees it Deployed, and reads the version virt-operator observed", func(ctx context.Context) {
		kv := kubeVirt(ctx)
		kv.Status.Phase = kubevirtv1.KubeVirtPhaseDeployed
		kv.Status.ObservedKubeVirtVersion = "v1.8.4"
		kv.Status.OperatorVersion = "v1.8.4"
		Expect(k8s.Status().Update(ctx, kv)).To(Succeed())
		Expect(run(ctx)[:5]).To(Equal([]string{deployed, version184, bridgeUnset, ratioDefault, gatesNone}))
	})

	It("fails when bridge binding on the pod network is turned off, and reports the CPU allocation ratio set", func(ctx context.Context) {
		kv := kubeVirt(ctx)
		kv.Spec.Configuration.NetworkConfiguration = &kubevirtv1.NetworkConfiguration{PermitBridgeInterfaceOnPodNetwork: ptr.To(false)}
		kv.Spec.Configuration.DeveloperConfiguration = &kubevirtv1.DeveloperConfiguration{CPUAllocationRatio: 1, FeatureGates: []string{"Snapshot"}}
		Expect(k8s.Update(ctx, kv)).To(Succeed())
		Expect(run(ctx)[:5]).To(Equal([]string{
			deployed, version184,
			`FAIL Bridge binding: spec.configuration.network.permitBridgeInterfaceOnPodNetwork is false: KubeVirt refuses every lab VM, since each gives its VM its own pod address through bridge binding. Do: remove the field or set it to true: kubectl -n kubevirt patch kubevirt kubevirt --type merge -p '{"spec":{"configuration":{"network":{"permitBridgeInterfaceOnPodNetwork":true}}}}'.`,
			"WARN CPU allocation ratio: cpuAllocationRatio is 1: each lab vCPU requests a whole host CPU, so a node of N CPU threads holds labs of N vCPUs in all, and the lab quota's requests.cpu must hold the vCPUs plus the launcher's support containers. Do: keep 1 only if labs must not share CPUs; KubeVirt's default of 10 packs ten times as many labs.",
			"OK   Feature gates: labs use containerDisk, emptyDisk, cloudInitNoCloud, accessCredentials through the guest agent and bridge binding, none of which needs a feature gate in KubeVirt v1.8 (enabled: Snapshot).",
		}))

		kv = kubeVirt(ctx)
		kv.Spec.Configuration = kubevirtv1.KubeVirtConfiguration{}
		Expect(k8s.Update(ctx, kv)).To(Succeed())
		Expect(linesOf(run(ctx), "Bridge binding")).To(Equal([]string{bridgeUnset}))
	})

	It("reads node ranges and addresses, and warns about a node without spec.podCIDRs", func(ctx context.Context) {
		createNode(ctx, node("node-a", []string{"10.244.0.0/24"}, true, internal("192.168.1.10"), external("203.0.113.10")))
		createNode(ctx, node("node-b", nil, false, internal("192.168.1.11")))
		lines := run(ctx)
		Expect(linesOf(lines, "Virtualization")).To(Equal([]string{"OK   Virtualization: 1 of 2 Nodes offer devices.kubevirt.io/kvm: node-a."}))
		Expect(linesOf(lines, "Host pod ranges")).To(Equal([]string{"WARN Host pod ranges: 10.244.0.0/24 from spec.podCIDRs, but 1 of 2 Nodes have none (node-b). Do: check the CNI's own pod ranges and give all of them to the operator with --host-pod-cidrs."}))
		Expect(linesOf(lines, "Node addresses")).To(Equal([]string{"OK   Node addresses: node-a InternalIP 192.168.1.10, ExternalIP 203.0.113.10; node-b InternalIP 192.168.1.11."}))
	})

	It("fails when a node's pod range lies inside the lab's", func(ctx context.Context) {
		n := &corev1.Node{}
		Expect(k8s.Get(ctx, client.ObjectKey{Name: "node-b"}, n)).To(Succeed())
		n.Spec.PodCIDR, n.Spec.PodCIDRs = "10.200.7.0/24", []string{"10.200.7.0/24"}
		Expect(k8s.Update(ctx, n)).To(Succeed())
		lines := run(ctx)
		Expect(linesOf(lines, "Host pod ranges")).To(Equal([]string{"OK   Host pod ranges: 10.244.0.0/24, 10.200.7.0/24 from spec.podCIDRs of 2 Nodes."}))
		Expect(linesOf(lines, "Lab ranges")).To(Equal([]string{"FAIL Lab ranges: lab pod range 10.200.0.0/16 overlaps the pod range of Node node-b (10.200.7.0/24). Do: give lab templates a spec.network.podCIDR and serviceCIDR clear of the host's ranges and node addresses."}))

		Expect(k8s.Delete(ctx, n)).To(Succeed())
		createNode(ctx, node("node-b", []string{"10.244.1.0/24"}, true, internal("192.168.1.11")))
	})

	It("recognises Cilium by cilium-config and checks its socket LB and Bandwidth Manager", func(ctx context.Context) {
		setCiliumConfig(ctx, nil)
		lines := run(ctx)
		Expect(lines[len(lines)-3:]).To(Equal([]string{
			"OK   CNI: Cilium (ConfigMap kube-system/cilium-config).",
			`OK   Cilium socket LB: the socket load balancer is off (kube-proxy-replacement "", bpf-lb-sock ""): Services reach lab VMs through the datapath.`,
			`WARN Bandwidth limits: Cilium's Bandwidth Manager is off (enable-bandwidth-manager ""): labs whose template sets network.bandwidth get no limit, since the launcher pod's bandwidth annotations are ignored. Do: set bandwidthManager.enabled=true in Cilium's Helm values.`,
		}))

		setCiliumConfig(ctx, map[string]string{"kube-proxy-replacement": "true"})
		Expect(linesOf(run(ctx), "Cilium socket LB")).To(Equal([]string{
			`FAIL Cilium socket LB: Cilium's socket load balancer runs in pod namespaces (kube-proxy-replacement "true", bpf-lb-sock-hostns-only ""): traffic from a VM's guest never passes it, so lab VMs cannot reach Services, DNS included. Do: set socketLB.hostNamespaceOnly=true in Cilium's Helm values (bpf-lb-sock-hostns-only: "true" in cilium-config) and restart the Cilium agents.`,
		}))
	})

	healthy := []string{
		deployed, version184, bridgeUnset, ratioDefault, gatesNone,
		"OK   Virtualization: 2 of 2 Nodes offer devices.kubevirt.io/kvm: node-a, node-b.",
		"OK   Host pod ranges: 10.244.0.0/24, 10.244.1.0/24 from spec.podCIDRs of 2 Nodes.",
		serviceRanges,
		"OK   Node addresses: node-a InternalIP 192.168.1.10, ExternalIP 203.0.113.10; node-b InternalIP 192.168.1.11.",
		nodePorts,
		"OK   Lab ranges: the template defaults: lab pods 10.200.0.0/16 and services 10.201.0.0/16 overlap none of the host's known ranges and node addresses.",
		"OK   Lab tunnel port: labs tunnel on UDP 8475; the host CNI's is 8472 (Cilium's VXLAN default).",
		"OK   DNS: cluster DNS Service kube-system/kube-dns at 10.96.0.10; cluster domain cluster.local (kube-system/kubelet-config); kubelets give pods the resolvers 10.96.0.10.",
		"OK   CNI: Cilium (ConfigMap kube-system/cilium-config).",
		`OK   Cilium socket LB: kube-proxy replacement with bpf-lb-sock-hostns-only: "true" (socketLB.hostNamespaceOnly): lab VMs reach Services.`,
		`OK   Bandwidth limits: Cilium's Bandwidth Manager is on (enable-bandwidth-manager: "true"); older Cilium releases enforce only kubernetes.io/egress-bandwidth.`,
	}

	It("passes every check on a host ready for labs", func(ctx context.Context) {
		setCiliumConfig(ctx, map[string]string{"kube-proxy-replacement": "true", "bpf-lb-sock-hostns-only": "true", "enable-bandwidth-manager": "true"})
		Expect(k8s.Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kube-dns"},
			Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10", Selector: map[string]string{"k8s-app": "kube-dns"},
				Ports: []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}},
		})).To(Succeed())
		setKubeletConfig(ctx, "10.96.0.10")
		Expect(run(ctx)).To(Equal(healthy))
	})

	It("prints the same checklist from the labforge command, exiting 0, and exits 1 for a template that clashes", func(ctx context.Context) {
		dir := GinkgoT().TempDir()
		bin, err := integration.BuildLabforge(ctx, dir)
		Expect(err).NotTo(HaveOccurred())

		out, code := runCommand(ctx, bin, "preflight", "--kubeconfig", cp.KubeconfigPath())
		Expect(code).To(Equal(0), out)
		Expect(out).To(Equal(strings.Join(healthy, "\n") + "\n16 OK, 0 WARN, 0 FAIL\n"))

		template := filepath.Join(dir, "clash.yaml")
		Expect(os.WriteFile(template, []byte(`apiVersion: labforge.dev/v1alpha1
kind: LabTemplate
metadata: {name: clash}
spec:
  network: {podCIDR: 10.244.0.0/16, serviceCIDR: 10.96.128.0/20, tunnelPort: 8472}
`), 0o600)).To(Succeed())
		out, code = runCommand(ctx, bin, "preflight", "--kubeconfig", cp.KubeconfigPath(), "--template", template, "--node-port-range", "30000-32767")
		Expect(code).To(Equal(1), out)
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		Expect(linesOf(lines, "NodePort range")).To(Equal([]string{"OK   NodePort range: 30000-32767 (from --node-port-range): 2768 ports, 2 per claimed lab (SSH and API), so at most 1384 claimed labs besides the host's own NodePorts."}))
		Expect(linesOf(lines, "Lab ranges")).To(Equal([]string{"FAIL Lab ranges: lab pod range 10.244.0.0/16 overlaps the pod range of Node node-a (10.244.0.0/24); lab pod range 10.244.0.0/16 overlaps the pod range of Node node-b (10.244.1.0/24); lab service range 10.96.128.0/20 overlaps the service range of ServiceCIDR kubernetes (10.96.0.0/16). Do: give lab templates a spec.network.podCIDR and serviceCIDR clear of the host's ranges and node addresses."}))
		Expect(linesOf(lines, "Lab tunnel port")).To(Equal([]string{"FAIL Lab tunnel port: labs tunnel on UDP 8472, the host CNI's tunnel port (Cilium's VXLAN default): lab traffic would be taken for the host's. Do: give lab templates another spec.network.tunnelPort."}))
		Expect(linesOf(lines, "Bandwidth limits")).To(Equal([]string{"OK   Bandwidth limits: LabTemplate clash sets no bandwidth limits."}))
		Expect(lines[len(lines)-1]).To(Equal("14 OK, 0 WARN, 2 FAIL"))
	}, NodeTimeout(10*time.Minute))

	It("reads the NodePort range from a kubeadm kube-apiserver Pod's command line where there is one", func(ctx context.Context) {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kube-apiserver-node-a", Labels: map[string]string{"component": "kube-apiserver", "tier": "control-plane"}},
			Spec: corev1.PodSpec{
				AutomountServiceAccountToken: ptr.To(false),
				Containers: []corev1.Container{{
					Name: "kube-apiserver", Image: "registry.k8s.io/kube-apiserver:v1.36.3",
					Command: []string{"kube-apiserver", "--service-cluster-ip-range=10.96.0.0/16", "--service-node-port-range=31000-31999"},
				}},
			},
		}
		Eventually(func() error { return k8s.Create(ctx, pod) }).WithTimeout(30 * time.Second).Should(Succeed())
		Expect(linesOf(run(ctx), "NodePort range")).To(Equal([]string{"OK   NodePort range: 31000-31999 (kube-apiserver's --service-node-port-range in Pod kube-system/kube-apiserver-node-a): 1000 ports, 2 per claimed lab (SSH and API), so at most 500 claimed labs besides the host's own NodePorts."}))

		pod.Spec.Containers[0].Command = []string{"kube-apiserver"}
		Expect(k8s.Delete(ctx, pod, client.GracePeriodSeconds(0))).To(Succeed())
		Eventually(func() error {
			pod.ResourceVersion = ""
			return k8s.Create(ctx, pod)
		}).WithTimeout(30 * time.Second).Should(Succeed())
		Expect(linesOf(run(ctx), "NodePort range")).To(Equal([]string{"OK   NodePort range: 30000-32767 (kube-apiserver's default: Pod kube-system/kube-apiserver-node-a sets no --service-node-port-range): 2768 ports, 2 per claimed lab (SSH and API), so at most 1384 claimed labs besides the host's own NodePorts."}))
		Expect(k8s.Delete(ctx, pod, client.GracePeriodSeconds(0))).To(Succeed())

		var services corev1.ServiceList
		Expect(k8s.List(ctx, &services, client.InNamespace("default"))).To(Succeed())
		var names []string
		for _, svc := range services.Items {
			names = append(names, svc.Name)
		}
		Expect(names).To(Equal([]string{"kubernetes"}), "the refused NodePort Services left nothing behind")
	})

	It("checks the lab ranges against every ServiceCIDR, not only the first", func(ctx context.Context) {
		extra := &networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "extra"}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"10.201.128.0/20"}}}
		Expect(k8s.Create(ctx, extra)).To(Succeed())
		lines := run(ctx)
		Expect(linesOf(lines, "Host service ranges")).To(Equal([]string{"OK   Host service ranges: 10.201.128.0/20, 10.96.0.0/16 from ServiceCIDR extra, kubernetes."}))
		Expect(linesOf(lines, "Lab ranges")).To(Equal([]string{"FAIL Lab ranges: lab service range 10.201.0.0/16 overlaps the service range of ServiceCIDR extra (10.201.128.0/20). Do: give lab templates a spec.network.podCIDR and serviceCIDR clear of the host's ranges and node addresses."}))
	})

	It("warns when kubelets hand pods NodeLocal DNSCache's link-local address", func(ctx context.Context) {
		labels := map[string]string{"k8s-app": "node-local-dns"}
		Expect(k8s.Create(ctx, &appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "node-local-dns"},
			Spec: appsv1.DaemonSetSpec{
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "node-cache", Image: "registry.k8s.io/dns/k8s-dns-node-cache:1.26.0"}}},
				},
			},
		})).To(Succeed())
		setKubeletConfig(ctx, "169.254.20.10")
		Expect(linesOf(run(ctx), "DNS")).To(Equal([]string{"WARN DNS: cluster DNS Service kube-system/kube-dns at 10.96.0.10; cluster domain cluster.local (kube-system/kubelet-config); kubelets give pods the resolvers 169.254.20.10; NodeLocal DNSCache runs (DaemonSet kube-system/node-local-dns). Lab VMs are given link-local resolvers, which lab egress does not allow: labs get no DNS. Do: run the operator with --host-dns-addresses=<those addresses> (docs/host-prerequisites.md, DNS), or point the kubelets' clusterDNS at kube-dns."}))
	})

	It("says what it could not read when the kubeconfig's user may read nothing", func(ctx context.Context) {
		cfg, err := cp.UserConfig("nobody")
		Expect(err).NotTo(HaveOccurred())
		report, err := preflight.Run(ctx, cfg, preflight.Options{})
		Expect(err).NotTo(HaveOccurred())
		got := map[string]string{}
		for _, r := range report {
			if _, seen := got[r.Check]; !seen {
				got[r.Check] = r.String()
			}
		}
		Expect(got["KubeVirt"]).To(Equal(`FAIL KubeVirt: could not read KubeVirt objects: kubevirts.kubevirt.io is forbidden: User "nobody" cannot list resource "kubevirts" in API group "kubevirt.io" at the cluster scope. Do: run preflight with a kubeconfig that may list kubevirts.kubevirt.io in all namespaces.`))
		Expect(got["Host pod ranges"]).To(Equal(`FAIL Host pod ranges: could not list Nodes: nodes is forbidden: User "nobody" cannot list resource "nodes" in API group "" at the cluster scope. Do: run preflight with a kubeconfig that may list nodes.`))
		Expect(got["NodePort range"]).To(HavePrefix(`WARN NodePort range: could not learn it: a NodePort Service create in namespace default: services is forbidden: User "nobody" cannot create resource "services"`))
		Expect(got["CNI"]).To(HavePrefix("WARN CNI: none of Cilium, Calico or Flannel was recognised"))
	})

	It("fails first thing on a host without KubeVirt at all", func(ctx context.Context) {
		crd := &apiextensionsv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: "kubevirts.kubevirt.io"}}
		Expect(client.IgnoreNotFound(k8s.Delete(ctx, crd))).To(Succeed())
		dc, err := discovery.NewDiscoveryClientForConfig(cp.RESTConfig())
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() bool {
			list, err := dc.ServerResourcesForGroupVersion("kubevirt.io/v1")
			if err != nil {
				return false
			}
			for _, r := range list.APIResources {
				if r.Name == "kubevirts" {
					return false
				}
			}
			return true
		}).WithTimeout(30 * time.Second).Should(BeTrue())

		lines := run(ctx)
		Expect(lines[0]).To(Equal("FAIL KubeVirt: the kubevirt.io/v1 KubeVirt CRD (kubevirts.kubevirt.io) is not installed. Do: install KubeVirt v1.8 (virt-operator and its KubeVirt object: https://kubevirt.io/user-guide/cluster_admin/installation/)."))
		Expect(lines[1]).To(Equal("OK   Virtualization: 2 of 2 Nodes offer devices.kubevirt.io/kvm: node-a, node-b."))
	})
})

// runCommand runs bin with args and returns its standard output and exit code.
func runCommand(ctx context.Context, bin string, args ...string) (string, int) {
	GinkgoHelper()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, GinkgoWriter
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return stdout.String(), exit.ExitCode()
	}
	Expect(err).NotTo(HaveOccurred())
	return stdout.String(), 0
}
