package manager

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/labforge/labforge/internal/lab"
)

func TestDropUserData(t *testing.T) {
	tests := map[string]struct {
		labels   map[string]string
		wantData bool
	}{
		"a cloud-init Secret keeps its metadata only": {labels: map[string]string{lab.LabelUserData: "worker-1"}, wantData: false},
		"the PKI Secret keeps its data":               {labels: nil, wantData: true},
		"a claim's kubeconfig Secret keeps its data":  {labels: map[string]string{"labforge.dev/claim": "c"}, wantData: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			in := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: "s", Labels: tc.labels,
					ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "labforge"}}},
				Data: map[string][]byte{"k": []byte("v")},
			}
			out, err := dropUserData(in)
			if err != nil {
				t.Fatal(err)
			}
			s := out.(*corev1.Secret)
			if s.ManagedFields != nil {
				t.Error("managedFields kept in the cache")
			}
			if got := s.Data != nil; got != tc.wantData {
				t.Errorf("data kept = %v, want %v", got, tc.wantData)
			}
			if s.Name != "s" || len(s.Labels) != len(tc.labels) {
				t.Errorf("metadata changed: %+v", s.ObjectMeta)
			}
		})
	}
}

func TestVMIStatusOnly(t *testing.T) {
	in := &kubevirtv1.VirtualMachineInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "control-plane", Labels: map[string]string{"a": "b"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "virt-controller"}}},
		Spec: kubevirtv1.VirtualMachineInstanceSpec{Hostname: "control-plane",
			Networks: []kubevirtv1.Network{{Name: "default", NetworkSource: kubevirtv1.NetworkSource{Pod: &kubevirtv1.PodNetwork{}}}}},
		Status: kubevirtv1.VirtualMachineInstanceStatus{Phase: kubevirtv1.Running},
	}
	out, err := vmiStatusOnly(in)
	if err != nil {
		t.Fatal(err)
	}
	vmi := out.(*kubevirtv1.VirtualMachineInstance)
	if vmi.ManagedFields != nil || vmi.Spec.Hostname != "" || vmi.Spec.Networks != nil {
		t.Errorf("managedFields or spec kept in the cache: %+v %+v", vmi.ManagedFields, vmi.Spec)
	}
	if vmi.Name != "control-plane" || vmi.Labels["a"] != "b" || vmi.Status.Phase != kubevirtv1.Running {
		t.Errorf("metadata or status lost: %+v %+v", vmi.ObjectMeta, vmi.Status)
	}
	// Anything else passes through untouched.
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Data: map[string]string{"k": "v"}}
	if out, _ := vmiStatusOnly(cm); out.(*corev1.ConfigMap).Data["k"] != "v" {
		t.Error("a ConfigMap was changed")
	}
}

func TestQuotaWithoutUsage(t *testing.T) {
	hard := corev1.ResourceList{corev1.ResourcePods: resource.MustParse("4")}
	in := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "lab-quota", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "labforge"}}},
		Spec:       corev1.ResourceQuotaSpec{Hard: hard},
		Status:     corev1.ResourceQuotaStatus{Hard: hard, Used: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("2")}},
	}
	out, err := quotaWithoutUsage(in)
	if err != nil {
		t.Fatal(err)
	}
	q := out.(*corev1.ResourceQuota)
	if q.ManagedFields != nil || q.Status.Hard != nil || q.Status.Used != nil {
		t.Errorf("managedFields or status kept in the cache: %+v %+v", q.ManagedFields, q.Status)
	}
	if q.Name != "lab-quota" || !q.Spec.Hard.Pods().Equal(resource.MustParse("4")) {
		t.Errorf("metadata or spec lost: %+v %+v", q.ObjectMeta, q.Spec)
	}
}

func TestClientRateLimits(t *testing.T) {
	tests := map[string]struct {
		cfg       rest.Config
		opts      Options
		wantQPS   float32
		wantBurst int
	}{
		"a kubeconfig says nothing: labforge's defaults, not client-go's 5 a second": {
			wantQPS: DefaultClientQPS, wantBurst: DefaultClientBurst,
		},
		"the config's own limits stay": {cfg: rest.Config{QPS: 1000, Burst: 2000}, wantQPS: 1000, wantBurst: 2000},
		"the flags win":                {cfg: rest.Config{QPS: 1000, Burst: 2000}, opts: Options{ClientQPS: 50, ClientBurst: 60}, wantQPS: 50, wantBurst: 60},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cfg := tc.cfg
			got := rateLimited(&cfg, tc.opts)
			if got.QPS != tc.wantQPS || got.Burst != tc.wantBurst {
				t.Errorf("QPS %v burst %d, want %v and %d", got.QPS, got.Burst, tc.wantQPS, tc.wantBurst)
			}
			if cfg.QPS != tc.cfg.QPS || cfg.Burst != tc.cfg.Burst {
				t.Error("the caller's config was changed")
			}
		})
	}
}
