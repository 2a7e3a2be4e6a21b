package render

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

// TestExposedService: the host Service exposing a lab Service carries labforge's name,
// labels and port names, and of the student's Service only its node ports and protocols,
// whatever the student wrote.
func TestExposedService(t *testing.T) {
	l := testLab(1)
	owner := []metav1.OwnerReference{l.OwnerReference()}
	labels := map[string]string{
		labforgev1alpha1.LabelManagedBy:   labforgev1alpha1.ManagedByValue,
		labforgev1alpha1.LabelEnvironment: "pool-a-x7k2p",
		labforgev1alpha1.LabelTemplate:    "broken-dns",
		labforgev1alpha1.LabelPool:        "pool-a",
		LabelExposed:                      "true",
	}
	selector := map[string]string{
		labforgev1alpha1.LabelManagedBy:   labforgev1alpha1.ManagedByValue,
		labforgev1alpha1.LabelEnvironment: "pool-a-x7k2p",
	}
	long := strings.Repeat("a", 253)
	tests := map[string]struct {
		src  LabService
		want *corev1.Service
	}{
		"one TCP port": {
			src: LabService{Namespace: "default", Name: "web", Ports: []LabServicePort{{Protocol: corev1.ProtocolTCP, NodePort: 30080}}},
			want: &corev1.Service{
				TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
				ObjectMeta: metav1.ObjectMeta{
					Name: ExposedServiceName("default", "web"), Namespace: "lab-pool-a-x7k2p",
					Labels: labels, Annotations: map[string]string{AnnotationLabService: "default/web"},
					OwnerReferences: owner,
				},
				Spec: corev1.ServiceSpec{
					Type:     corev1.ServiceTypeNodePort,
					Selector: selector,
					Ports: []corev1.ServicePort{
						{Name: "p0", Protocol: corev1.ProtocolTCP, Port: 30080, TargetPort: intstr.FromInt32(30080)},
					},
					ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
				},
			},
		},
		"two ports, a long name: labforge's names only": {
			src: LabService{Namespace: "kube-system", Name: long, Ports: []LabServicePort{
				{Protocol: corev1.ProtocolTCP, NodePort: 31000}, {Protocol: corev1.ProtocolUDP, NodePort: 31001},
			}},
			want: &corev1.Service{
				TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
				ObjectMeta: metav1.ObjectMeta{
					Name: ExposedServiceName("kube-system", long), Namespace: "lab-pool-a-x7k2p",
					Labels: labels, Annotations: map[string]string{AnnotationLabService: "kube-system/" + long},
					OwnerReferences: owner,
				},
				Spec: corev1.ServiceSpec{
					Type:     corev1.ServiceTypeNodePort,
					Selector: selector,
					Ports: []corev1.ServicePort{
						{Name: "p0", Protocol: corev1.ProtocolTCP, Port: 31000, TargetPort: intstr.FromInt32(31000)},
						{Name: "p1", Protocol: corev1.ProtocolUDP, Port: 31001, TargetPort: intstr.FromInt32(31001)},
					},
					ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
				},
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := ExposedService(l, tc.src)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ExposedService (-want +got):\n%s", diff)
			}
			if errs := validation.IsDNS1035Label(got.Name); len(errs) > 0 {
				t.Errorf("name %q is no Service name: %v", got.Name, errs)
			}
			// Nothing shared with the lab's other objects.
			got.Labels["x"] = "y"
			if _, shared := l.Labels()["x"]; shared {
				t.Errorf("labels shared with the lab")
			}
		})
	}
}

// TestExposedServiceName: deterministic, bounded, and different for names that differ
// only where a separator could hide it.
func TestExposedServiceName(t *testing.T) {
	a, b := ExposedServiceName("a", "b-c"), ExposedServiceName("a-b", "c")
	if a == b {
		t.Errorf("a/b-c and a-b/c share the name %s", a)
	}
	if a != ExposedServiceName("a", "b-c") {
		t.Errorf("not deterministic")
	}
	if len(a) != len("exposed-")+16 {
		t.Errorf("name %q: want the prefix and 16 hex digits", a)
	}
}

func TestValidLabServicePort(t *testing.T) {
	tests := map[string]struct {
		port LabServicePort
		want string
	}{
		"TCP in range":      {LabServicePort{corev1.ProtocolTCP, 30000}, ""},
		"SCTP at the top":   {LabServicePort{corev1.ProtocolSCTP, 32767}, ""},
		"the VM's SSH port": {LabServicePort{corev1.ProtocolTCP, 22}, "node port 22 is outside the lab's NodePort range 30000-32767"},
		"the kubelet":       {LabServicePort{corev1.ProtocolTCP, 10250}, "node port 10250 is outside the lab's NodePort range 30000-32767"},
		"above the range":   {LabServicePort{corev1.ProtocolUDP, 32768}, "node port 32768 is outside the lab's NodePort range 30000-32767"},
		"no node port":      {LabServicePort{corev1.ProtocolTCP, 0}, "node port 0 is outside the lab's NodePort range 30000-32767"},
		"unknown protocol":  {LabServicePort{"ICMP", 30001}, `protocol "ICMP" is not TCP, UDP or SCTP`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := ValidLabServicePort(tc.port); got != tc.want {
				t.Errorf("ValidLabServicePort(%+v) = %q, want %q", tc.port, got, tc.want)
			}
		})
	}
}

// TestExposurePolicy: exactly the exposed lab node ports, on the lab's VMs, from outside
// the host's pod, service and node ranges; no policy when nothing is exposed or no address
// family is left.
func TestExposurePolicy(t *testing.T) {
	hostExcept := []string{"10.244.0.0/16", "10.96.0.0/12", "192.168.10.0/24"}
	from := []networkingv1.NetworkPolicyPeer{
		{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: hostExcept}},
		{IPBlock: &networkingv1.IPBlock{CIDR: "::/0"}},
	}
	port := func(p corev1.Protocol, n int32) networkingv1.NetworkPolicyPort {
		return networkingv1.NetworkPolicyPort{Protocol: ptr.To(p), Port: ptr.To(intstr.FromInt32(n))}
	}
	withNodes := func(l *Lab) { l.Host.NodeCIDRs = []netip.Prefix{netip.MustParsePrefix("192.168.10.0/24")} }
	tests := map[string]struct {
		lab   Lab
		ports []LabServicePort
		want  []networkingv1.NetworkPolicyIngressRule
		none  bool
	}{
		"nothing exposed: no policy": {lab: testLab(0, withNodes), none: true},
		"ports sorted, duplicates once": {
			lab: testLab(0, withNodes),
			ports: []LabServicePort{
				{corev1.ProtocolUDP, 31001}, {corev1.ProtocolTCP, 30080}, {corev1.ProtocolTCP, 31001}, {corev1.ProtocolTCP, 30080},
			},
			want: []networkingv1.NetworkPolicyIngressRule{{From: from, Ports: []networkingv1.NetworkPolicyPort{
				port(corev1.ProtocolTCP, 30080), port(corev1.ProtocolTCP, 31001), port(corev1.ProtocolUDP, 31001),
			}}},
		},
		"every family blocked: no policy, never a rule without peers": {
			lab: testLab(0, func(l *Lab) {
				l.Host.PodCIDRs = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
			}),
			ports: []LabServicePort{{corev1.ProtocolTCP, 30080}},
			none:  true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := ExposurePolicy(tc.lab, tc.ports)
			if tc.none {
				if got != nil {
					t.Fatalf("ExposurePolicy = %+v, want none", got.Spec)
				}
				return
			}
			if got.Name != PolicyExposedServices || got.Namespace != "lab-pool-a-x7k2p" {
				t.Errorf("policy %s/%s", got.Namespace, got.Name)
			}
			wantSelector := metav1.LabelSelector{MatchLabels: map[string]string{
				labforgev1alpha1.LabelManagedBy: labforgev1alpha1.ManagedByValue, labforgev1alpha1.LabelEnvironment: "pool-a-x7k2p",
			}}
			if diff := cmp.Diff(wantSelector, got.Spec.PodSelector); diff != "" {
				t.Errorf("pod selector (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, got.Spec.PolicyTypes); diff != "" {
				t.Errorf("policy types (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want, got.Spec.Ingress); diff != "" {
				t.Errorf("ingress (-want +got):\n%s", diff)
			}
			if len(got.Spec.Egress) != 0 {
				t.Errorf("egress %+v, want none", got.Spec.Egress)
			}
		})
	}
}
