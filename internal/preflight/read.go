package preflight

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

// Options are what the admin tells preflight beyond the kubeconfig.
type Options struct {
	// NodePortRange, such as "30000-32767", is taken as the host's NodePort range instead
	// of learning it from the API server.
	NodePortRange string
	// Lab is the lab network to compare with the host's; zero means the defaults.
	Lab LabNetwork
	// ProbeNamespace is where the NodePort range is learned, when no kube-apiserver Pod
	// says it, from the refusal of a NodePort Service create; "default" when empty.
	ProbeNamespace string
}

// kvmResource is what virt-handler's device plugin advertises on a node with /dev/kvm
// (kubevirt/kubevirt pkg/virt-handler/device-manager), and what a launcher pod requests.
const kvmResource corev1.ResourceName = "devices.kubevirt.io/kvm"

// Run reads the host through cfg and runs every check.
func Run(ctx context.Context, cfg *rest.Config, opts Options) (Report, error) {
	f, err := Read(ctx, cfg, opts)
	if err != nil {
		return nil, err
	}
	return Check(f), nil
}

// Read gathers the Facts. It fails only when it cannot talk to the API server at all;
// anything it cannot read is recorded in the Facts for the checks to report.
func Read(ctx context.Context, cfg *rest.Config, opts Options) (Facts, error) {
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(kubevirtv1.AddToScheme(scheme))
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return Facts{}, fmt.Errorf("connecting to the API server: %w", err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return Facts{}, fmt.Errorf("connecting to the API server: %w", err)
	}
	if _, err := disc.ServerVersion(); err != nil {
		return Facts{}, fmt.Errorf("reaching the API server: %w", err)
	}
	f := Facts{Lab: opts.Lab}
	if !f.Lab.PodCIDR.IsValid() {
		f.Lab = DefaultLabNetwork()
	}
	f.KubeVirt = readKubeVirt(ctx, disc, c)
	f.Host = readHostRanges(ctx, c)
	if opts.NodePortRange != "" {
		f.NodePorts = parseNodePortFlag(opts.NodePortRange)
	} else {
		ns := opts.ProbeNamespace
		if ns == "" {
			ns = "default"
		}
		f.NodePorts = learnNodePortRange(ctx, c, ns)
	}
	f.CNI = readCNI(ctx, c)
	f.DNS = readDNS(ctx, c)
	return f, nil
}

func readKubeVirt(ctx context.Context, disc discovery.DiscoveryInterface, c client.Client) KubeVirtFacts {
	list, err := disc.ServerResourcesForGroupVersion(kubevirtv1.SchemeGroupVersion.String())
	switch {
	case apierrors.IsNotFound(err):
		return KubeVirtFacts{}
	case err != nil:
		return KubeVirtFacts{Err: fmt.Errorf("discovery of kubevirt.io/v1: %w", err)}
	}
	if !slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == "kubevirts" }) {
		return KubeVirtFacts{}
	}
	var kvs kubevirtv1.KubeVirtList
	if err := c.List(ctx, &kvs); err != nil {
		return KubeVirtFacts{CRD: true, Err: err}
	}
	slices.SortFunc(kvs.Items, func(a, b kubevirtv1.KubeVirt) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	return KubeVirtFacts{CRD: true, Objects: kvs.Items}
}

// readHostRanges reads the host's pod ranges and node addresses (Nodes), its service
// ranges (ServiceCIDR objects) and the kubernetes Service's ClusterIP. It is the one place
// preflight discovers host ranges, so that it can give way to the operator's own host
// discovery (internal/hostcluster) once both exist on one branch.
func readHostRanges(ctx context.Context, c client.Client) HostRanges {
	var h HostRanges
	var nodes corev1.NodeList
	if err := c.List(ctx, &nodes); err != nil {
		h.NodesErr = err
	}
	for _, n := range nodes.Items {
		node := Node{Name: n.Name}
		cidrs := n.Spec.PodCIDRs
		if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
			cidrs = []string{n.Spec.PodCIDR}
		}
		for _, s := range cidrs {
			if p, err := netip.ParsePrefix(s); err == nil {
				node.PodCIDRs = append(node.PodCIDRs, p.Masked())
			}
		}
		for _, a := range n.Status.Addresses {
			addr, err := netip.ParseAddr(a.Address)
			if err != nil {
				continue
			}
			switch a.Type {
			case corev1.NodeInternalIP:
				node.InternalIPs = append(node.InternalIPs, addr)
			case corev1.NodeExternalIP:
				node.ExternalIPs = append(node.ExternalIPs, addr)
			}
		}
		if q, ok := n.Status.Allocatable[kvmResource]; ok && q.Sign() > 0 {
			node.KVM = true
		}
		h.Nodes = append(h.Nodes, node)
	}
	slices.SortFunc(h.Nodes, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })

	var cidrs networkingv1.ServiceCIDRList
	if err := c.List(ctx, &cidrs); err != nil {
		h.ServiceCIDRsErr = err
	}
	slices.SortFunc(cidrs.Items, func(a, b networkingv1.ServiceCIDR) int { return strings.Compare(a.Name, b.Name) })
	for _, sc := range cidrs.Items {
		for _, s := range sc.Spec.CIDRs {
			if p, err := netip.ParsePrefix(s); err == nil {
				h.ServiceCIDRs = append(h.ServiceCIDRs, p.Masked())
				h.ServiceCIDRNames = append(h.ServiceCIDRNames, sc.Name)
			}
		}
	}

	var svc corev1.Service
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "kubernetes"}, &svc); err == nil {
		if a, err := netip.ParseAddr(svc.Spec.ClusterIP); err == nil {
			h.KubernetesServiceIP = a
		}
	}
	return h
}

// nodePortRangeMessage is how kube-apiserver's NodePort allocator names its range when it
// refuses a port outside it (k8s.io/kubernetes v1.36 pkg/registry/core/service/portallocator
// ErrNotInRange: "provided port is not in the valid range. The range of valid ports is
// 30000-32767").
var nodePortRangeMessage = regexp.MustCompile(`range of valid ports is (\d+)-(\d+)`)

// defaultNodePortRange is kube-apiserver's --service-node-port-range when unset.
const defaultNodePortRange = "30000-32767"

// learnNodePortRange finds the host's NodePort range, which no API exposes. Where
// kube-apiserver runs as a static Pod (kubeadm), its command line says. Elsewhere the API
// server is asked to create a NodePort Service on port 1 and its refusal names the range.
// A server-side dry-run would store nothing, but it cannot be used: a dry-run allocation
// skips the range check (portallocator's PortAllocationOperation.Allocate). The refused
// create stores no Service; the ClusterIP it reserves meanwhile is released when the
// NodePort allocation fails.
func learnNodePortRange(ctx context.Context, c client.Client, namespace string) NodePortFacts {
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.InNamespace("kube-system"), client.MatchingLabels{"component": "kube-apiserver"}); err == nil && len(pods.Items) > 0 {
		slices.SortFunc(pods.Items, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
		pod := pods.Items[0]
		for _, ctr := range pod.Spec.Containers {
			if r, ok := nodePortRangeFlag(append(append([]string{}, ctr.Command...), ctr.Args...)); ok {
				np := parseNodePortFlag(r)
				np.Source = "kube-apiserver's --service-node-port-range in Pod kube-system/" + pod.Name
				if np.Err != nil {
					np.Err = fmt.Errorf("Pod kube-system/%s: --service-node-port-range %q is not FIRST-LAST", pod.Name, r)
				}
				return np
			}
		}
		np := parseNodePortFlag(defaultNodePortRange)
		np.Source = "kube-apiserver's default: Pod kube-system/" + pod.Name + " sets no --service-node-port-range"
		return np
	}

	svc := &corev1.Service{}
	svc.Namespace = namespace
	svc.GenerateName = "labforge-preflight-"
	svc.Spec.Type = corev1.ServiceTypeNodePort
	svc.Spec.Ports = []corev1.ServicePort{{Name: "probe", Port: 22, NodePort: 1, Protocol: corev1.ProtocolTCP}}
	err := c.Create(ctx, svc)
	if err == nil {
		_ = c.Delete(ctx, svc)
		return NodePortFacts{Err: errors.New("a NodePort Service on port 1 was accepted, so the range could not be read from a refusal")}
	}
	m := nodePortRangeMessage.FindStringSubmatch(err.Error())
	if m == nil {
		return NodePortFacts{Err: fmt.Errorf("a NodePort Service create in namespace %s: %w", namespace, err)}
	}
	first, _ := strconv.Atoi(m[1])
	last, _ := strconv.Atoi(m[2])
	return NodePortFacts{First: first, Last: last, Source: "from the API server's refusal of a NodePort Service on port 1"}
}

// nodePortRangeFlag returns the value of --service-node-port-range in a command line.
func nodePortRangeFlag(args []string) (string, bool) {
	const flag = "--service-node-port-range"
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v, true
		}
		if a == flag && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

func parseNodePortFlag(s string) NodePortFacts {
	lo, hi, ok := strings.Cut(strings.TrimSpace(s), "-")
	first, err1 := strconv.Atoi(lo)
	last, err2 := strconv.Atoi(hi)
	if !ok || err1 != nil || err2 != nil || first < 1 || last > 65535 || first > last {
		return NodePortFacts{Err: fmt.Errorf("--node-port-range %q is not FIRST-LAST", s)}
	}
	return NodePortFacts{First: first, Last: last, Source: "from --node-port-range"}
}

// readCNI recognises Cilium, Calico and Flannel by the DaemonSets and ConfigMaps their
// stock installs create, and keeps the configuration ConfigMap preflight reads keys of.
func readCNI(ctx context.Context, c client.Client) CNIFacts {
	cm := func(ns, name string) map[string]string {
		var m corev1.ConfigMap
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &m); err != nil {
			return nil
		}
		if m.Data == nil {
			return map[string]string{}
		}
		return m.Data
	}
	ds := func(ns, name string) bool {
		var d appsv1.DaemonSet
		return c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &d) == nil
	}
	if conf := cm("kube-system", ciliumConfig); conf != nil {
		return CNIFacts{Name: "Cilium", Evidence: "ConfigMap kube-system/" + ciliumConfig, Config: conf, ConfigName: ciliumConfig}
	}
	if ds("kube-system", "cilium") {
		return CNIFacts{Name: "Cilium", Evidence: "DaemonSet kube-system/cilium", ConfigName: ciliumConfig}
	}
	for _, ns := range []string{"kube-system", "calico-system"} {
		if ds(ns, "calico-node") {
			return CNIFacts{Name: "Calico", Evidence: "DaemonSet " + ns + "/calico-node", Config: cm("kube-system", calicoConfig), ConfigName: calicoConfig}
		}
	}
	if conf := cm("kube-system", calicoConfig); conf != nil {
		return CNIFacts{Name: "Calico", Evidence: "ConfigMap kube-system/" + calicoConfig, Config: conf, ConfigName: calicoConfig}
	}
	for _, ns := range []string{"kube-flannel", "kube-system"} {
		if conf := cm(ns, flannelConfig); conf != nil {
			return CNIFacts{Name: "Flannel", Evidence: "ConfigMap " + ns + "/" + flannelConfig, Config: conf, ConfigName: flannelConfig}
		}
		if ds(ns, "kube-flannel-ds") {
			return CNIFacts{Name: "Flannel", Evidence: "DaemonSet " + ns + "/kube-flannel-ds", ConfigName: flannelConfig}
		}
	}
	return CNIFacts{}
}

// readDNS reads the cluster DNS Service, NodeLocal DNSCache's DaemonSet and, on kubeadm
// hosts, the kubelets' shared configuration (ConfigMap kube-system/kubelet-config, key
// "kubelet": a KubeletConfiguration with clusterDomain and clusterDNS).
func readDNS(ctx context.Context, c client.Client) DNSFacts {
	var d DNSFacts
	var svc corev1.Service
	if err := c.Get(ctx, client.ObjectKey{Namespace: "kube-system", Name: "kube-dns"}, &svc); err == nil {
		if a, err := netip.ParseAddr(svc.Spec.ClusterIP); err == nil {
			d.KubeDNS = a
		}
	}
	var ds appsv1.DaemonSet
	d.NodeLocal = c.Get(ctx, client.ObjectKey{Namespace: "kube-system", Name: "node-local-dns"}, &ds) == nil
	var cm corev1.ConfigMap
	if err := c.Get(ctx, client.ObjectKey{Namespace: "kube-system", Name: "kubelet-config"}, &cm); err == nil {
		var kc struct {
			ClusterDomain string   `json:"clusterDomain"`
			ClusterDNS    []string `json:"clusterDNS"`
		}
		if err := yaml.Unmarshal([]byte(cm.Data["kubelet"]), &kc); err == nil {
			d.KubeletConfig = true
			d.ClusterDomain = kc.ClusterDomain
			for _, s := range kc.ClusterDNS {
				if a, err := netip.ParseAddr(s); err == nil {
					d.ClusterDNS = append(d.ClusterDNS, a)
				}
			}
		}
	}
	return d
}

// LoadTemplateNetwork reads the first LabTemplate in a YAML file (several documents may
// follow each other, as in config/samples) and returns its lab network, with the CRD's
// defaults where the template sets none.
func LoadTemplateNetwork(path string) (LabNetwork, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return LabNetwork{}, err
	}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return LabNetwork{}, fmt.Errorf("%s holds no LabTemplate", path)
		}
		if err != nil {
			return LabNetwork{}, fmt.Errorf("%s: %w", path, err)
		}
		var t labforgev1alpha1.LabTemplate
		if err := yaml.Unmarshal(doc, &t); err != nil || t.Kind != "LabTemplate" {
			continue
		}
		return templateNetwork(t)
	}
}

func templateNetwork(t labforgev1alpha1.LabTemplate) (LabNetwork, error) {
	n := DefaultLabNetwork()
	n.Source = "LabTemplate " + t.Name
	spec := t.Spec.Network
	var err error
	if spec.PodCIDR != "" {
		if n.PodCIDR, err = netip.ParsePrefix(spec.PodCIDR); err != nil {
			return LabNetwork{}, fmt.Errorf("LabTemplate %s: network.podCIDR: %w", t.Name, err)
		}
	}
	if spec.ServiceCIDR != "" {
		if n.ServiceCIDR, err = netip.ParsePrefix(spec.ServiceCIDR); err != nil {
			return LabNetwork{}, fmt.Errorf("LabTemplate %s: network.serviceCIDR: %w", t.Name, err)
		}
	}
	n.PodCIDR, n.ServiceCIDR = n.PodCIDR.Masked(), n.ServiceCIDR.Masked()
	if spec.TunnelPort != 0 {
		n.TunnelPort = int(spec.TunnelPort)
	}
	bw := spec.Bandwidth != nil && (spec.Bandwidth.Ingress != nil || spec.Bandwidth.Egress != nil)
	n.Bandwidth = &bw
	return n, nil
}
