package labclaim

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/render"
	"github.com/labforge/labforge/internal/ssa"
)

// A lab handed over by an earlier version has its own lab-access NodePort Service: its
// student's ports stay those, and its lab-api Service is not made a second way in.
func TestExposeLabKeepsALegacyAccessService(t *testing.T) {
	scheme := testScheme(t)
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	env := &labforgev1alpha1.LabEnvironment{ObjectMeta: metav1.ObjectMeta{Name: "pool-1"}}
	legacy := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: lab.Namespace(env.Name), Name: render.LegacyAccessService},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Ports: []corev1.ServicePort{
			{Name: render.PortSSH, Port: lab.SSHPort, NodePort: 30022},
			{Name: render.PortAPI, Port: lab.APIPort, NodePort: 30443},
		}},
	}
	var writes []string
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(legacy).WithInterceptorFuncs(interceptor.Funcs{
		Apply: func(ctx context.Context, c client.WithWatch, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
			writes = append(writes, "apply")
			return c.Apply(ctx, obj, opts...)
		},
	}).Build()
	r := &Reconciler{Client: c, Applier: ssa.NewApplier(c, "labforge-labclaim")}

	svc, err := r.exposeLab(context.Background(), render.Lab{Env: env})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Name != render.LegacyAccessService || svc.Spec.Ports[0].NodePort != 30022 || svc.Spec.Ports[1].NodePort != 30443 {
		t.Errorf("exposeLab returned %s with ports %+v, want the legacy Service's", svc.Name, svc.Spec.Ports)
	}
	if len(writes) != 0 {
		t.Errorf("writes %v, want none", writes)
	}
	err = c.Get(context.Background(), client.ObjectKey{Namespace: lab.Namespace(env.Name), Name: lab.APIService}, &corev1.Service{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("lab-api Service: %v, want it untouched (not found here)", err)
	}
}
