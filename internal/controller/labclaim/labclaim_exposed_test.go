package labclaim

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

// TestSetExposure: status.exposed and ServicesExposed follow what the pass exposed; a pass
// that did not look keeps them, an expired claim drops them, and a lab with nothing to
// expose carries no condition at all.
func TestSetExposure(t *testing.T) {
	web := labforgev1alpha1.ExposedPort{Service: "default/web", Protocol: corev1.ProtocolTCP, LabNodePort: 30080, NodePort: 30001, Address: "192.0.2.1:30001"}
	earlier := labforgev1alpha1.LabClaimStatus{
		Exposed:    []labforgev1alpha1.ExposedPort{web},
		Conditions: []metav1.Condition{{Type: labforgev1alpha1.ConditionServicesExposed, Status: metav1.ConditionTrue, Reason: labforgev1alpha1.ReasonExposed}},
	}
	tests := map[string]struct {
		before      labforgev1alpha1.LabClaimStatus
		exposure    *exposure
		expired     bool
		wantExposed []labforgev1alpha1.ExposedPort
		// wantCondition is "Status/Reason: message", or "" for none.
		wantCondition string
	}{
		"nothing to expose: no condition, no write-worthy change": {
			exposure: &exposure{},
		},
		"the pass did not look: the status keeps what it said": {
			before: earlier, wantExposed: []labforgev1alpha1.ExposedPort{web},
			wantCondition: "True/Exposed: ",
		},
		"all exposed": {
			exposure:      &exposure{ports: []labforgev1alpha1.ExposedPort{web}, exposable: 1, exposed: 1},
			wantExposed:   []labforgev1alpha1.ExposedPort{web},
			wantCondition: "True/Exposed: All 1 NodePort and LoadBalancer Services of the lab are exposed (status.exposed)",
		},
		"one held back by the cap": {
			exposure: &exposure{ports: []labforgev1alpha1.ExposedPort{web}, exposable: 2, exposed: 1,
				reason: labforgev1alpha1.ReasonExposureCapReached, message: "Service default/b is not exposed: cap"},
			wantExposed:   []labforgev1alpha1.ExposedPort{web},
			wantCondition: "False/ExposureCapReached: 1 of 2 NodePort and LoadBalancer Services of the lab are exposed. Service default/b is not exposed: cap",
		},
		"the last Service went: the condition goes": {
			before: earlier, exposure: &exposure{},
		},
		"expired: nothing is exposed any more": {
			before: earlier, expired: true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := &scope{claim: &labforgev1alpha1.LabClaim{Status: *tc.before.DeepCopy()}, exposure: tc.exposure, expired: tc.expired}
			setExposure(s, true)
			if diff := cmp.Diff(tc.wantExposed, s.claim.Status.Exposed); diff != "" {
				t.Errorf("exposed (-want +got):\n%s", diff)
			}
			got := ""
			if c := meta.FindStatusCondition(s.claim.Status.Conditions, labforgev1alpha1.ConditionServicesExposed); c != nil {
				got = string(c.Status) + "/" + c.Reason + ": " + c.Message
			}
			if got != tc.wantCondition {
				t.Errorf("condition = %q, want %q", got, tc.wantCondition)
			}
		})
	}
}

// TestLabServiceEvents: the watch wakes the claim only for Services it may expose, and
// not for an update that changes nothing it exposes or writes (the lab's own status
// updates, a label).
func TestLabServiceEvents(t *testing.T) {
	np := &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Ports: []corev1.ServicePort{{NodePort: 30080}}}}
	relabelled := np.DeepCopy()
	relabelled.Labels = map[string]string{"a": "b"}
	moved := np.DeepCopy()
	moved.Spec.Ports[0].NodePort = 30081
	lb := np.DeepCopy()
	lb.Spec.Type = corev1.ServiceTypeLoadBalancer
	addressed := lb.DeepCopy()
	addressed.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.1"}}
	clusterIP := &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP}}
	if !exposable(np) || !exposable(lb) || exposable(clusterIP) {
		t.Errorf("exposable: NodePort %v, LoadBalancer %v, ClusterIP %v", exposable(np), exposable(lb), exposable(clusterIP))
	}
	for name, tc := range map[string]struct {
		old, cur *corev1.Service
		want     bool
	}{
		"a label":            {np, relabelled, true},
		"a node port":        {np, moved, false},
		"the type":           {np, lb, false},
		"the LB's addresses": {lb, addressed, false},
	} {
		if got := sameExposure(tc.old, tc.cur); got != tc.want {
			t.Errorf("%s: sameExposure = %v, want %v", name, got, tc.want)
		}
	}
}
