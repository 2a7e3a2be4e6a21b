package render

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"sort"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

// The NodePort range of every lab's own API server: kubeadm's default, which labforge's
// kubeadm configuration keeps. A lab Service whose node port lies outside it was made by
// an API server the student reconfigured; it is never exposed, so that a student's object
// can never point a host NodePort at a port of the VM other than a lab NodePort (its SSH
// daemon, its kubelet).
const (
	LabNodePortMin = 30000
	LabNodePortMax = 32767
)

// Labels and annotations of a host Service that exposes a lab Service.
const (
	// LabelExposed marks the host Services that expose a lab's own Services; its value is
	// always "true" (never anything a student wrote).
	LabelExposed = labforgev1alpha1.LabelPrefix + "exposed"
	// AnnotationLabService names the lab Service (namespace/name inside the lab) a host
	// Service exposes, for the admin reading `kubectl get service -o yaml`. It is the
	// student's text: shown, never interpreted, and never a label.
	AnnotationLabService = labforgev1alpha1.LabelPrefix + "lab-service"
)

// PolicyExposedServices names the NetworkPolicy that opens the exposed lab Services'
// ports; it exists only while at least one is exposed.
const PolicyExposedServices = "allow-exposed-services"

// LabServicePort is one port of a lab Service to expose, as the operator read it from the
// lab's API: the lab's node port and its protocol, nothing else of the student's.
type LabServicePort struct {
	Protocol corev1.Protocol
	NodePort int32
}

// LabService is a lab Service to expose: its namespace and name inside the lab (used only
// to derive the host Service's name and in an annotation) and its ports.
type LabService struct {
	Namespace, Name string
	Ports           []LabServicePort
}

// Key is how the lab Service is named in a claim's status: namespace/name.
func (s LabService) Key() string { return s.Namespace + "/" + s.Name }

// ExposedServiceName is the host Service exposing the lab Service namespace/name: a fixed
// prefix and a hash, so that no name a student picks (up to 253 characters, any DNS
// subdomain) makes a name too long, collides with the lab's own objects, or is chosen by
// the student.
func ExposedServiceName(namespace, name string) string {
	sum := sha256.Sum256([]byte(namespace + "/" + name))
	return "exposed-" + hex.EncodeToString(sum[:])[:16]
}

// exposedPortName names the i-th port of a host Service. The student's port names are
// never used: they are the student's words.
func exposedPortName(i int) string { return fmt.Sprintf("p%d", i) }

// ValidLabServicePort says why a port of a lab Service is never exposed, or "" when it may
// be: its protocol must be TCP, UDP or SCTP and its node port within the lab's NodePort
// range.
func ValidLabServicePort(p LabServicePort) string {
	switch p.Protocol {
	case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
	default:
		return fmt.Sprintf("protocol %q is not TCP, UDP or SCTP", p.Protocol)
	}
	if p.NodePort < LabNodePortMin || p.NodePort > LabNodePortMax {
		return fmt.Sprintf("node port %d is outside the lab's NodePort range %d-%d", p.NodePort, LabNodePortMin, LabNodePortMax)
	}
	return ""
}

// vmSelector selects every VM (launcher pod) of the lab: a lab NodePort answers on every
// node of the lab, and the lab's own kube-proxy forwards to wherever the student's pods run.
func vmSelector(l Lab) map[string]string {
	return map[string]string{
		labforgev1alpha1.LabelManagedBy:   labforgev1alpha1.ManagedByValue,
		labforgev1alpha1.LabelEnvironment: l.Env.Name,
	}
}

// ExposedService returns the host NodePort Service that exposes one lab Service: in the
// lab's namespace, owned by the LabEnvironment (garbage collection removes it with the
// lab), selecting the lab's VMs, one port per port of the lab Service, each forwarding to
// the VMs on the lab's node port. The host allocates the NodePorts.
//
// cloud-provider-kubevirt does the same for Cluster API tenants
// (pkg/provider/loadbalancer.go: a Service selecting the tenant's VMIs, targetPort the
// tenant Service's nodePort), but copies the tenant Service's annotations, port names,
// externalIPs and loadBalancerIP onto the infrastructure cluster's Service. A lab's
// student is hostile, so nothing of theirs is copied but the node ports, each checked
// (ValidLabServicePort) by the caller; the name, labels and port names are labforge's own.
//
// externalTrafficPolicy is Local, as for the lab's SSH and API (ExposedAPIService): the
// student's source address reaches the VM unchanged, which the lab's policies need.
func ExposedService(l Lab, src LabService) *corev1.Service {
	ports := make([]corev1.ServicePort, 0, len(src.Ports))
	for i, p := range src.Ports {
		ports = append(ports, corev1.ServicePort{
			Name:       exposedPortName(i),
			Protocol:   p.Protocol,
			Port:       p.NodePort,
			TargetPort: intstr.FromInt32(p.NodePort),
		})
	}
	meta := l.objectMeta(ExposedServiceName(src.Namespace, src.Name), map[string]string{LabelExposed: "true"})
	meta.Annotations = map[string]string{AnnotationLabService: src.Key()}
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: meta,
		Spec: corev1.ServiceSpec{
			Type:                  corev1.ServiceTypeNodePort,
			Selector:              vmSelector(l),
			Ports:                 ports,
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
		},
	}
}

// ExposurePolicy returns the NetworkPolicy that lets the exposed lab Services be reached:
// the lab's VMs, on exactly the given ports (the lab node ports the host NodePorts forward
// to; a NetworkPolicy sees a packet after the NodePort's translation, at the VM's port),
// from outside the host cluster's pod, service and node ranges, as the lab's SSH and API
// allowance (control-plane-access's student rule). It stays a policy of its own, apart
// from the lab's two (decision 93): the claim controller writes and deletes it, while
// the lab is handed over only. It is nil when there is nothing to open, or when both
// address families are blocked (a rule with no peers would admit everyone).
func ExposurePolicy(l Lab, ports []LabServicePort) *networkingv1.NetworkPolicy {
	if len(ports) == 0 {
		return nil
	}
	blocked := append(append([]netip.Prefix{}, l.Host.Ranges()...), l.Host.NodeCIDRs...)
	from := everywhereExcept(blocked)
	if len(from) == 0 {
		return nil
	}
	sorted := append([]LabServicePort(nil), ports...)
	sort.Slice(sorted, func(i, j int) bool {
		if sorted[i].NodePort != sorted[j].NodePort {
			return sorted[i].NodePort < sorted[j].NodePort
		}
		return sorted[i].Protocol < sorted[j].Protocol
	})
	var npPorts []networkingv1.NetworkPolicyPort
	for i, p := range sorted {
		if i > 0 && p == sorted[i-1] {
			continue
		}
		npPorts = append(npPorts, networkingv1.NetworkPolicyPort{Protocol: ptr.To(p.Protocol), Port: ptr.To(intstr.FromInt32(p.NodePort))})
	}
	return l.policy(PolicyExposedServices, networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: vmSelector(l)},
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: from, Ports: npPorts}},
	})
}
