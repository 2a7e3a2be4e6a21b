package labclaim

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/labforge/labforge/internal/render"
)

// TestWantExposure: the lab's Services are exposed oldest first up to the template's cap;
// one with no port or a port the host cannot mirror is refused and takes no place under
// the cap, and a LoadBalancer Service is remembered for its address.
func TestWantExposure(t *testing.T) {
	svc := func(name string, typ corev1.ServiceType, ports ...corev1.ServicePort) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Spec: corev1.ServiceSpec{Type: typ, Ports: ports}}
	}
	tcp := func(nodePort int32) corev1.ServicePort {
		return corev1.ServicePort{Protocol: corev1.ProtocolTCP, NodePort: nodePort}
	}
	web := svc("web", corev1.ServiceTypeNodePort, tcp(30080), corev1.ServicePort{Protocol: corev1.ProtocolUDP, NodePort: 30081})
	lb := svc("lb", corev1.ServiceTypeLoadBalancer, tcp(30090))
	bare := svc("bare", corev1.ServiceTypeNodePort)
	outside := svc("outside", corev1.ServiceTypeNodePort, tcp(30100), tcp(40000))
	extra := svc("extra", corev1.ServiceTypeNodePort, tcp(30110))
	name := func(s *corev1.Service) string { return render.ExposedServiceName(s.Namespace, s.Name) }

	tests := map[string]struct {
		svcs  []*corev1.Service
		limit int
		// wantOrder are the lab Services exposed, in order; wantLBs the LoadBalancers among them.
		wantOrder, wantLBs []*corev1.Service
		wantRefused        []string
		wantCapped         []string
	}{
		"nothing": {limit: 2},
		"within the cap": {
			svcs: []*corev1.Service{web, lb}, limit: 2,
			wantOrder: []*corev1.Service{web, lb}, wantLBs: []*corev1.Service{lb},
		},
		"past the cap, the first come stay": {
			svcs: []*corev1.Service{web, lb, extra}, limit: 1,
			wantOrder: []*corev1.Service{web},
			wantCapped: []string{
				"Service default/lb is not exposed: the lab exposes at most 1 Services (its template's network.maxExposedServices)",
				"Service default/extra is not exposed: the lab exposes at most 1 Services (its template's network.maxExposedServices)",
			},
		},
		"refused Services take no place under the cap": {
			svcs: []*corev1.Service{bare, outside, extra}, limit: 1,
			wantOrder: []*corev1.Service{extra},
			wantRefused: []string{
				"Service default/bare is not exposed: it has no ports",
				"Service default/outside is not exposed: node port 40000 is outside the lab's NodePort range 30000-32767",
			},
		},
	}
	for desc, tt := range tests {
		t.Run(desc, func(t *testing.T) {
			got := wantExposure(tt.svcs, tt.limit)
			var order, lbs []string
			for _, s := range tt.wantOrder {
				order = append(order, name(s))
			}
			if diff := cmp.Diff(order, got.order); diff != "" {
				t.Errorf("order (-want +got):\n%s", diff)
			}
			if len(got.services) != len(order) {
				t.Errorf("services %v, want one per name in order", got.services)
			}
			for _, s := range tt.wantLBs {
				lbs = append(lbs, name(s))
				if got.loadBalancers[name(s)] != s {
					t.Errorf("loadBalancers[%s] = %v, want Service %s", name(s), got.loadBalancers[name(s)], s.Name)
				}
			}
			if len(got.loadBalancers) != len(lbs) {
				t.Errorf("loadBalancers has %d, want %d", len(got.loadBalancers), len(lbs))
			}
			if diff := cmp.Diff(tt.wantRefused, got.refused); diff != "" {
				t.Errorf("refused (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantCapped, got.capped); diff != "" {
				t.Errorf("capped (-want +got):\n%s", diff)
			}
		})
	}
	// The ports kept are the lab's, in its order.
	got := wantExposure([]*corev1.Service{web}, 1).services[name(web)]
	want := render.LabService{Namespace: "default", Name: "web", Ports: []render.LabServicePort{
		{Protocol: corev1.ProtocolTCP, NodePort: 30080}, {Protocol: corev1.ProtocolUDP, NodePort: 30081},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("services[web] (-want +got):\n%s", diff)
	}
}
