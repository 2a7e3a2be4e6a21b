package reliability_test

import (
	"context"
	"fmt"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/test/integration"
)

func createNamespace(ctx context.Context, name string) {
	Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})).To(Succeed())
}

// createBurst creates n claims on pool in namespace ns at once, from n goroutines, and
// returns their names.
func createBurst(ctx context.Context, ns, pool string, n int) []string {
	names := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		names[i] = fmt.Sprintf("student-%03d", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = k8s.Create(ctx, integration.MakeClaim(ns, names[i]).Pool(pool).Obj())
		}()
	}
	wg.Wait()
	for _, err := range errs {
		Expect(err).NotTo(HaveOccurred())
	}
	return names
}

// readyClaims counts the claims of ns that are Ready.
func readyClaims(ctx context.Context, ns string) func(Gomega) int {
	return func(g Gomega) int {
		var claims labforgev1alpha1.LabClaimList
		g.Expect(k8s.List(ctx, &claims, client.InNamespace(ns))).To(Succeed())
		n := 0
		for _, c := range claims.Items {
			if meta.IsStatusConditionTrue(c.Status.Conditions, labforgev1alpha1.ConditionReady) {
				n++
			}
		}
		return n
	}
}

// expectEveryClaimHoldsItsOwnLab checks that the n claims of ns are Ready, each on a lab
// of its own whose claimRef names exactly it, and that no other lab names them.
func expectEveryClaimHoldsItsOwnLab(ctx context.Context, ns string, n int) {
	var claims labforgev1alpha1.LabClaimList
	Expect(k8s.List(ctx, &claims, client.InNamespace(ns))).To(Succeed())
	Expect(claims.Items).To(HaveLen(n))
	holder := map[string]string{}
	for _, c := range claims.Items {
		Expect(meta.IsStatusConditionTrue(c.Status.Conditions, labforgev1alpha1.ConditionReady)).To(BeTrue(), "claim %s is not Ready", c.Name)
		Expect(holder).NotTo(HaveKey(c.Status.Lab), "lab %s is held by %s and %s", c.Status.Lab, holder[c.Status.Lab], c.Name)
		holder[c.Status.Lab] = c.Name
		var env labforgev1alpha1.LabEnvironment
		Expect(k8s.Get(ctx, client.ObjectKey{Name: c.Status.Lab}, &env)).To(Succeed())
		Expect(env.Spec.ClaimRef).NotTo(BeNil())
		Expect(env.Spec.ClaimRef.UID).To(Equal(c.UID), "lab %s names another claim than %s", env.Name, c.Name)
	}
	var envs labforgev1alpha1.LabEnvironmentList
	Expect(k8s.List(ctx, &envs)).To(Succeed())
	bound := 0
	for _, env := range envs.Items {
		if env.Spec.ClaimRef != nil && env.Spec.ClaimRef.Namespace == ns {
			bound++
		}
	}
	Expect(bound).To(Equal(n), "labs bound to claims of %s", ns)
}

// bindingWatch records, for every lab, each claim it was ever seen bound to: a lab handed
// to a second claim, even for a moment, shows up as two.
type bindingWatch struct {
	mu     sync.Mutex
	claims map[string]map[types.UID]bool
}

func watchBindings(ctx context.Context) *bindingWatch {
	b := &bindingWatch{claims: map[string]map[types.UID]bool{}}
	ctx, cancel := context.WithCancel(ctx)
	DeferCleanup(cancel)
	go func() {
		defer GinkgoRecover()
		for ctx.Err() == nil {
			w, err := k8s.Watch(ctx, &labforgev1alpha1.LabEnvironmentList{})
			if err != nil {
				continue // the API server may be restarting
			}
			for ev := range w.ResultChan() {
				env, ok := ev.Object.(*labforgev1alpha1.LabEnvironment)
				if !ok || ev.Type == watch.Error || env.Spec.ClaimRef == nil {
					continue
				}
				b.mu.Lock()
				if b.claims[env.Name] == nil {
					b.claims[env.Name] = map[types.UID]bool{}
				}
				b.claims[env.Name][env.Spec.ClaimRef.UID] = true
				b.mu.Unlock()
			}
			w.Stop()
		}
	}()
	return b
}

// rebound lists the labs seen bound to more than one claim.
func (b *bindingWatch) rebound() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for env, claims := range b.claims {
		if len(claims) > 1 {
			out = append(out, env)
		}
	}
	return out
}

// poolStatus returns a pool's status.
func poolStatus(ctx context.Context, name string) func(Gomega) labforgev1alpha1.LabPoolStatus {
	return func(g Gomega) labforgev1alpha1.LabPoolStatus {
		var p labforgev1alpha1.LabPool
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, &p)).To(Succeed())
		return p.Status
	}
}
