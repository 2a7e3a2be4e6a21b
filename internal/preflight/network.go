package preflight

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

func checkPodRanges(h HostRanges, cni CNIFacts) Result {
	const check = "Host pod ranges"
	if h.NodesErr != nil {
		return Result{Fail, check, fmt.Sprintf("could not list Nodes: %v.", h.NodesErr), "run preflight with a kubeconfig that may list nodes."}
	}
	if len(h.Nodes) == 0 {
		return Result{Fail, check, "the host has no Nodes.", "join nodes to the host cluster before installing labforge."}
	}
	var without []string
	for _, n := range h.Nodes {
		if len(n.PodCIDRs) == 0 {
			without = append(without, n.Name)
		}
	}
	pods := h.PodCIDRs()
	pool := ciliumPodPool(cni)
	switch {
	case len(pods) == 0 && pool != "":
		return Result{Warn, check, fmt.Sprintf("no Node has spec.podCIDRs; Cilium allocates pod addresses from %s (%s cluster-pool-ipv4-cidr).", pool, cni.ConfigName),
			fmt.Sprintf("give the operator --host-pod-cidrs=%s.", pool)}
	case len(pods) == 0:
		return Result{Warn, check, "no Node has spec.podCIDRs: the CNI allocates pod addresses itself (Calico IPPools, Cilium cluster-pool, ...), so the host's pod ranges cannot be read from Nodes.",
			"find the ranges in the CNI's configuration and give them to the operator with --host-pod-cidrs."}
	case len(without) > 0:
		return Result{Warn, check, fmt.Sprintf("%s from spec.podCIDRs, but %d of %d Nodes have none (%s).", joinPrefixes(pods), len(without), len(h.Nodes), strings.Join(without, ", ")),
			"check the CNI's own pod ranges and give all of them to the operator with --host-pod-cidrs."}
	}
	return Result{OK, check, fmt.Sprintf("%s from spec.podCIDRs of %d Nodes.", joinPrefixes(pods), len(h.Nodes)), ""}
}

// ciliumPodPool is Cilium's cluster-pool range, when Cilium allocates pod addresses
// itself (ipam: cluster-pool, the Helm chart's default, keeps spec.podCIDRs empty).
func ciliumPodPool(cni CNIFacts) string {
	if cni.Name != "Cilium" {
		return ""
	}
	return strings.TrimSpace(cni.Config["cluster-pool-ipv4-cidr"])
}

func checkServiceRanges(h HostRanges) Result {
	const check = "Host service ranges"
	if len(h.ServiceCIDRs) > 0 {
		return Result{OK, check, fmt.Sprintf("%s from ServiceCIDR %s.", joinPrefixes(h.ServiceCIDRs), strings.Join(h.ServiceCIDRNames, ", ")), ""}
	}
	why := "there are no networking.k8s.io/v1 ServiceCIDR objects"
	if h.ServiceCIDRsErr != nil {
		why = fmt.Sprintf("ServiceCIDR objects could not be read (%v)", h.ServiceCIDRsErr)
	}
	hint := "the kubernetes Service has no ClusterIP either"
	if h.KubernetesServiceIP.IsValid() {
		hint = fmt.Sprintf("the kubernetes Service's ClusterIP %s lies in the service range", h.KubernetesServiceIP)
	}
	return Result{Warn, check, why + "; " + hint + ".",
		"give the operator --host-service-cidrs, kube-apiserver's --service-cluster-ip-range (kubeadm's default is 10.96.0.0/12)."}
}

func checkNodeAddresses(h HostRanges) Result {
	const check = "Node addresses"
	if h.NodesErr != nil || len(h.Nodes) == 0 {
		return Result{Warn, check, "no Nodes to read addresses from.", "run preflight again once the host has nodes."}
	}
	var lines, bare []string
	external := 0
	for _, n := range h.Nodes {
		var parts []string
		if len(n.InternalIPs) > 0 {
			parts = append(parts, "InternalIP "+joinAddrs(n.InternalIPs))
		}
		if len(n.ExternalIPs) > 0 {
			parts = append(parts, "ExternalIP "+joinAddrs(n.ExternalIPs))
			external++
		}
		if len(parts) == 0 {
			bare = append(bare, n.Name)
			parts = append(parts, "no address")
		}
		lines = append(lines, n.Name+" "+strings.Join(parts, ", "))
	}
	found := strings.Join(lines, "; ") + "."
	if len(bare) > 0 {
		return Result{Warn, check, found, fmt.Sprintf("students reach a lab on the address of the node that runs it: give %s an InternalIP or ExternalIP (the kubelet's --node-ip).", strings.Join(bare, ", "))}
	}
	if external == 0 {
		found += " Students must reach these InternalIPs on the NodePorts."
	}
	return Result{OK, check, found, ""}
}

func checkNodePorts(np NodePortFacts) Result {
	const check = "NodePort range"
	if np.Err != nil || np.First == 0 {
		why := "unknown"
		if np.Err != nil {
			why = np.Err.Error()
		}
		return Result{Warn, check, fmt.Sprintf("could not learn it: %s.", why),
			"pass --node-port-range (kube-apiserver's --service-node-port-range, 30000-32767 unless set) and open it to students in the host's firewall."}
	}
	size := np.Last - np.First + 1
	return Result{OK, check, fmt.Sprintf("%d-%d (%s): %d ports, 2 per claimed lab (SSH and API), so at most %d claimed labs besides the host's own NodePorts.", np.First, np.Last, np.Source, size, size/2),
		""}
}

// checkLabRanges compares the lab's ranges with every host range it must not overlap:
// a lab routes its own pod and service ranges inside its VMs, so a host pod, Service or
// node address inside them is unreachable from the lab (and the lab's egress policy
// cannot tell them apart).
func checkLabRanges(lab LabNetwork, h HostRanges, cni CNIFacts) []Result {
	type hostRange struct {
		what string
		p    netip.Prefix
	}
	var host []hostRange
	for _, n := range h.Nodes {
		for _, p := range n.PodCIDRs {
			host = append(host, hostRange{"the pod range of Node " + n.Name, p})
		}
		for _, a := range append(append([]netip.Addr{}, n.InternalIPs...), n.ExternalIPs...) {
			host = append(host, hostRange{"the address of Node " + n.Name, netip.PrefixFrom(a, a.BitLen())})
		}
	}
	if pool := ciliumPodPool(cni); pool != "" {
		if p, err := netip.ParsePrefix(pool); err == nil {
			host = append(host, hostRange{"Cilium's cluster pool", p.Masked()})
		}
	}
	for i, p := range h.ServiceCIDRs {
		host = append(host, hostRange{"the service range of ServiceCIDR " + h.ServiceCIDRNames[i], p})
	}
	if len(h.ServiceCIDRs) == 0 && h.KubernetesServiceIP.IsValid() {
		a := h.KubernetesServiceIP
		host = append(host, hostRange{"the kubernetes Service's ClusterIP", netip.PrefixFrom(a, a.BitLen())})
	}

	const check = "Lab ranges"
	var clashes []string
	for _, lr := range []struct {
		what string
		p    netip.Prefix
	}{{"pod range", lab.PodCIDR}, {"service range", lab.ServiceCIDR}} {
		for _, hr := range host {
			if lr.p.Overlaps(hr.p) {
				clashes = append(clashes, fmt.Sprintf("lab %s %s overlaps %s (%s)", lr.what, lr.p, hr.what, hr.p))
			}
		}
	}
	var out []Result
	if len(clashes) > 0 {
		out = append(out, Result{Fail, check, strings.Join(clashes, "; ") + ".",
			"give lab templates a spec.network.podCIDR and serviceCIDR clear of the host's ranges and node addresses."})
	} else {
		found := fmt.Sprintf("%s: lab pods %s and services %s overlap none of the host's known ranges and node addresses.", lab.Source, lab.PodCIDR, lab.ServiceCIDR)
		if len(h.ServiceCIDRs) == 0 || (len(h.PodCIDRs()) == 0 && ciliumPodPool(cni) == "") {
			out = append(out, Result{Warn, check, found + " Some host ranges are unknown (see above).", "check the lab ranges against the ranges you give the operator."})
		} else {
			out = append(out, Result{OK, check, found, ""})
		}
	}
	out = append(out, checkTunnelPort(lab, cni))
	return out
}

// hostTunnelPort is the UDP port the host CNI's VXLAN uses, when its configuration says:
// Flannel's net-conf.json Backend.Port (8472 when unset on Linux) and Cilium's tunnel-port
// (8472 for VXLAN unless set). Zero with a source means the host runs no VXLAN tunnel;
// zero without one, that its port is unknown.
func hostTunnelPort(cni CNIFacts) (int, string) {
	switch cni.Name {
	case "Cilium":
		// Native routing runs no tunnel: routing-mode (Cilium 1.14+) or the older tunnel key.
		if cni.Config["routing-mode"] == "native" || cni.Config["tunnel"] == "disabled" {
			return 0, cni.ConfigName + " says native routing"
		}
		if p := strings.TrimSpace(cni.Config["tunnel-port"]); p != "" && p != "0" {
			if port, err := strconv.Atoi(p); err == nil {
				return port, cni.ConfigName + " tunnel-port"
			}
		}
		if cni.Config["tunnel-protocol"] == "geneve" {
			return 6081, "Cilium's Geneve default"
		}
		return 8472, "Cilium's VXLAN default"
	case "Flannel":
		var conf struct {
			Backend struct {
				Type string `json:"Type"`
				Port int    `json:"Port"`
			} `json:"Backend"`
		}
		if err := json.Unmarshal([]byte(cni.Config["net-conf.json"]), &conf); err == nil {
			if t := conf.Backend.Type; t != "" && !strings.EqualFold(t, "vxlan") {
				return 0, cni.ConfigName + " net-conf.json Backend.Type " + t
			}
			if conf.Backend.Port > 0 {
				return conf.Backend.Port, cni.ConfigName + " net-conf.json Backend.Port"
			}
		}
		return 8472, "Flannel's VXLAN default"
	case "Calico":
		return 4789, "Calico's VXLAN default"
	}
	return 0, ""
}

func checkTunnelPort(lab LabNetwork, cni CNIFacts) Result {
	const check = "Lab tunnel port"
	port, source := hostTunnelPort(cni)
	switch {
	case port == 0 && source != "":
		return Result{OK, check, fmt.Sprintf("labs tunnel on UDP %d; the host CNI runs no VXLAN tunnel (%s).", lab.TunnelPort, source), ""}
	case port == 0:
		return Result{OK, check, fmt.Sprintf("labs tunnel on UDP %d, clear of the usual host VXLAN ports 4789 and 8472 (the host CNI's own port is unknown).", lab.TunnelPort), ""}
	case port == lab.TunnelPort:
		return Result{Fail, check, fmt.Sprintf("labs tunnel on UDP %d, the host CNI's tunnel port (%s): lab traffic would be taken for the host's.", lab.TunnelPort, source),
			"give lab templates another spec.network.tunnelPort."}
	}
	return Result{OK, check, fmt.Sprintf("labs tunnel on UDP %d; the host CNI's is %d (%s).", lab.TunnelPort, port, source), ""}
}

// checkDNS: lab VMs get their resolvers from the launcher pod, which gets the kubelet's
// clusterDNS; a link-local resolver (NodeLocal DNSCache's 169.254.20.10) is outside what
// lab egress allows, and names in the lab are qualified with the host's cluster domain.
func checkDNS(d DNSFacts) Result {
	const check = "DNS"
	var found []string
	if d.KubeDNS.IsValid() {
		found = append(found, fmt.Sprintf("cluster DNS Service kube-system/kube-dns at %s", d.KubeDNS))
	} else {
		found = append(found, "no Service kube-system/kube-dns")
	}
	domain := "cluster domain unknown (no kubeadm kubelet-config; labforge assumes cluster.local)"
	if d.KubeletConfig && d.ClusterDomain != "" {
		domain = "cluster domain " + d.ClusterDomain + " (kube-system/kubelet-config)"
	}
	found = append(found, domain)
	var linkLocal []string
	for _, a := range d.ClusterDNS {
		if a.IsLinkLocalUnicast() {
			linkLocal = append(linkLocal, a.String())
		}
	}
	if d.KubeletConfig && len(d.ClusterDNS) > 0 {
		found = append(found, "kubelets give pods the resolvers "+joinAddrs(d.ClusterDNS))
	}
	if d.NodeLocal {
		found = append(found, "NodeLocal DNSCache runs (DaemonSet kube-system/node-local-dns)")
	}
	text := strings.Join(found, "; ") + "."
	switch {
	case len(linkLocal) > 0:
		return Result{Warn, check, text + " Lab VMs are given link-local resolvers, which lab egress does not allow: labs get no DNS.",
			"run the operator with --host-dns-addresses=<those addresses> (docs/host-prerequisites.md, DNS), or point the kubelets' clusterDNS at kube-dns."}
	case d.NodeLocal && !d.KubeletConfig:
		return Result{Warn, check, text + " Whether kubelets hand pods its link-local address is unknown.",
			"check the kubelets' clusterDNS: a link-local address (169.254.20.10) gives labs no DNS unless the operator gets it in --host-dns-addresses."}
	case !d.KubeDNS.IsValid():
		return Result{Warn, check, text, "make sure the host runs cluster DNS that pods on the pod network can reach; lab VMs use it."}
	}
	return Result{OK, check, text, ""}
}
