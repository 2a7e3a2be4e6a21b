package traffic_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/manager"
	"github.com/labforge/labforge/internal/simulator"
	"github.com/labforge/labforge/test/bench/recorder"
	"github.com/labforge/labforge/test/integration"
)

// refusals records the writes of an operator (and of the simulated KubeVirt in its
// manager) that the API server refused, by "verb Kind code cause".
type refusals struct {
	mu    sync.Mutex
	by    map[string]int
	sent  int
	names []string
}

func (r *refusals) note(verb string, c client.Client, obj client.Object, err error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent++
	if err == nil {
		return nil
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return err
	}
	kind := obj.GetObjectKind().GroupVersionKind().Kind
	if gvk, gvkErr := c.GroupVersionKindFor(obj); gvkErr == nil {
		kind = gvk.Kind
	}
	cause := ""
	if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
		cause = " " + string(corev1.NamespaceTerminatingCause)
	}
	key := fmt.Sprintf("%s %s %d%s", verb, kind, status.Status().Code, cause)
	r.by[key]++
	r.names = append(r.names, key+" "+obj.GetNamespace()+"/"+obj.GetName())
	return err
}

func (r *refusals) counts() (map[string]int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.by))
	for k, v := range r.by {
		out[k] = v
	}
	return out, r.sent
}

type watchless struct{ client.Client }

func (watchless) Watch(context.Context, client.ObjectList, ...client.ListOption) (watch.Interface, error) {
	return nil, errors.New("the manager's client does not watch")
}

// wrap is the manager.Options.WrapClient that notes every refused write.
func (r *refusals) wrap(c client.Client) client.Client {
	return interceptor.NewClient(watchless{c}, interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			return r.note("create", c, obj, c.Create(ctx, obj, opts...))
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			return r.note("update", c, obj, c.Update(ctx, obj, opts...))
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			return r.note("patch", c, obj, c.Patch(ctx, obj, patch, opts...))
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			return r.note("delete", c, obj, c.Delete(ctx, obj, opts...))
		},
		Apply: func(ctx context.Context, c client.WithWatch, ac runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
			// labforge's SSA applier sends unstructured objects wrapped as apply
			// configurations; none of them is ever sent into a namespace that is going
			// (the object is not at hand here: counted by the API server's scrape below).
			return c.Apply(ctx, ac, opts...)
		},
		SubResourceCreate: func(ctx context.Context, c client.Client, sub string, obj, subObj client.Object, opts ...client.SubResourceCreateOption) error {
			return r.note("create "+sub, c, obj, c.SubResource(sub).Create(ctx, obj, subObj, opts...))
		},
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			return r.note("update "+sub, c, obj, c.SubResource(sub).Update(ctx, obj, opts...))
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			return r.note("patch "+sub, c, obj, c.SubResource(sub).Patch(ctx, obj, patch, opts...))
		},
	})
}

// refusedByServer returns the API server's refused mutating requests between two scrapes,
// by "VERB resource code".
func refusedByServer(before, after recorder.APICounts) map[string]float64 {
	return recorder.DiffAPI(before, after).Failed
}

var _ = Describe("A serial run of claims, each released once Ready", func() {
	It("writes nothing into a lab that is going: no write refused as its namespace terminates", func(ctx context.Context) {
		refused := &refusals{by: map[string]int{}}
		sim := simulator.New(simulator.Options{})
		stop, err := integration.StartManager(context.Background(), cp.RESTConfig(), manager.Options{Simulator: sim, WrapClient: refused.wrap})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(stop)

		const pool, cycles = "serial", 6
		Expect(k8s.Create(ctx, integration.MakeTemplate("serial").Version("v1.36.3").PodCIDR("10.200.0.0/16").Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool(pool, "serial").Replicas(2).MaxLabs(100).Obj())).To(Succeed())
		Eventually(readyLabs(ctx, pool)).Should(Equal(2))
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "students-serial"}})).To(Succeed())

		admin, err := kubernetes.NewForConfig(cp.RESTConfig())
		Expect(err).NotTo(HaveOccurred())
		before, err := recorder.ScrapeAPIServer(ctx, admin.CoreV1().RESTClient())
		Expect(err).NotTo(HaveOccurred())

		var released []string
		for i := range cycles {
			name := fmt.Sprintf("student-%d", i)
			claim := integration.MakeClaim("students-serial", name).Pool(pool).Obj()
			Expect(k8s.Create(ctx, claim)).To(Succeed())
			Eventually(func(g Gomega) string {
				g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(claim), claim)).To(Succeed())
				g.Expect(claim.Status.Conditions).To(ContainElement(And(HaveField("Type", "Ready"), HaveField("Status", metav1.ConditionTrue))))
				return claim.Status.Lab
			}).ShouldNot(BeEmpty())
			released = append(released, claim.Status.Lab)
			Expect(k8s.Delete(ctx, claim)).To(Succeed())
		}
		By("waiting for every released lab and its namespace to be gone, and the pool refilled")
		for _, env := range released {
			Eventually(func() bool {
				return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: lab.Namespace(env)}, &corev1.Namespace{}))
			}).WithTimeout(2*time.Minute).Should(BeTrue(), "namespace %s", lab.Namespace(env))
		}
		Eventually(readyLabs(ctx, pool)).Should(Equal(2))
		after, err := recorder.ScrapeAPIServer(ctx, admin.CoreV1().RESTClient())
		Expect(err).NotTo(HaveOccurred())

		mine, sent := refused.counts()
		server := refusedByServer(before, after)
		GinkgoWriter.Printf("%d claim cycles: the operator and the simulated KubeVirt sent %d writes, refused: %v\n", cycles, sent, mine)
		GinkgoWriter.Printf("refused by the API server, all clients: %v\n", server)
		refusedNames := append([]string(nil), refused.names...)
		sort.Strings(refusedNames)

		By("no write of the operator or the simulated KubeVirt refused because the lab's namespace is terminating")
		for key, n := range mine {
			Expect(key).NotTo(HaveSuffix(string(corev1.NamespaceTerminatingCause)), "%d writes refused: %v", n, refusedNames)
		}
		By("none refused by the API server either: no VMI or launcher Pod created into a terminating namespace")
		var forbidden []string
		for key := range server {
			if strings.HasSuffix(key, " 403") && key != "POST configmaps 403" {
				forbidden = append(forbidden, key)
			}
		}
		Expect(forbidden).To(BeEmpty(), "refused by the API server: %v", server)
		By("what remains is kube-controller-manager's: the root-CA publisher's kube-root-ca.crt, at most one per lab")
		Expect(server["POST configmaps 403"]).To(BeNumerically("<=", cycles))
		Expect(mine).NotTo(HaveKey(HavePrefix("create ConfigMap")))
	})
})

// readyLabs counts the pool's Ready unbound labs, as its status says.
func readyLabs(ctx context.Context, pool string) func(Gomega) int {
	return func(g Gomega) int {
		var p labforgev1alpha1.LabPool
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: pool}, &p)).To(Succeed())
		return int(p.Status.ReadyReplicas)
	}
}
