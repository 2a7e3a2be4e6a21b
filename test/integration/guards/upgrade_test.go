package guards_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/manager"
	"github.com/labforge/labforge/internal/render"
	"github.com/labforge/labforge/test/integration"
)

// sixPolicies returns the six policies a lab held before decision 93, as the labforge of
// then wrote them: the rules of lab-isolation and control-plane-access, split by what
// each rule was for, with the same labels and owner.
func sixPolicies(isolation, access *networkingv1.NetworkPolicy) []*networkingv1.NetworkPolicy {
	all, cp := isolation.Spec.PodSelector, access.Spec.PodSelector
	both := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	ingress := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	egress := []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	in, out := isolation.Spec.Ingress, isolation.Spec.Egress
	Expect(in).To(HaveLen(1))
	Expect(out).To(HaveLen(3), "the lab's pods, DNS, the internet")
	Expect(access.Spec.Ingress).To(HaveLen(2), "the student, the operator")
	old := func(name string, sel metav1.LabelSelector, types []networkingv1.PolicyType,
		in []networkingv1.NetworkPolicyIngressRule, out []networkingv1.NetworkPolicyEgressRule) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: isolation.Namespace, Name: name,
				Labels: isolation.Labels, OwnerReferences: isolation.OwnerReferences},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: sel, PolicyTypes: types, Ingress: in, Egress: out},
		}
	}
	return []*networkingv1.NetworkPolicy{
		old("default-deny", all, both, nil, nil),
		old("allow-lab-internal", all, both, in[:1], out[:1]),
		old("allow-student-access", cp, ingress, access.Spec.Ingress[:1], nil),
		old("allow-operator-probe", cp, ingress, access.Spec.Ingress[1:], nil),
		old("allow-dns", all, egress, nil, out[1:2]),
		old("allow-internet-egress", all, egress, nil, out[2:]),
	}
}

// policyNames lists the names of the NetworkPolicies in ns, sorted.
func policyNames(ctx context.Context, ns string) func(Gomega) []string {
	return func(g Gomega) []string {
		var list networkingv1.NetworkPolicyList
		g.Expect(k8s.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
		var names []string
		for _, p := range list.Items {
			names = append(names, p.Name)
		}
		slices.Sort(names)
		return names
	}
}

// policyEvents records the watch events of the NetworkPolicies of one namespace, in the
// order the API server sent them (that of their resourceVersions), as "TYPE name".
type policyEvents struct {
	mu     sync.Mutex
	events []string
}

func (e *policyEvents) follow(w watch.Interface) {
	for ev := range w.ResultChan() {
		p, ok := ev.Object.(*networkingv1.NetworkPolicy)
		if !ok {
			continue
		}
		e.mu.Lock()
		e.events = append(e.events, string(ev.Type)+" "+p.Name)
		e.mu.Unlock()
	}
}

func (e *policyEvents) seen() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.events)
}

var _ = Describe("A lab built when labs had six NetworkPolicies", Ordered, func() {
	const name = "upgraded"
	ns := lab.Namespace(name)
	var op client.Client
	var want map[string]networkingv1.NetworkPolicySpec

	BeforeAll(func(ctx context.Context) {
		var err error
		// What an older labforge wrote, it wrote as the operator: the lab-guards policy,
		// installed or not (specs run in random order), lets it through.
		op, err = client.New(operatorConfig, client.Options{Scheme: manager.NewScheme()})
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.Create(ctx, integration.MakeTemplate("upgrade").Workers(1).Obj())).To(Succeed())
		env := environment(name)
		env.Spec.TemplateRef.Name = "upgrade"
		Expect(k8s.Create(ctx, env)).To(Succeed())
		labReady(ctx, name)
		Expect(policyNames(ctx, ns)(Default)).To(Equal([]string{render.PolicyControlPlaneAccess, render.PolicyIsolation}))
		want = map[string]networkingv1.NetworkPolicySpec{}
		for _, n := range []string{render.PolicyIsolation, render.PolicyControlPlaneAccess} {
			p := &networkingv1.NetworkPolicy{}
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: n}, p)).To(Succeed())
			want[n] = p.Spec
		}
	})

	It("gets the two policies before its six go, and ends with exactly the two", func(ctx context.Context) {
		By("stopping the operator and putting the lab back as an older labforge built it")
		stopOperator()
		isolation, access := &networkingv1.NetworkPolicy{}, &networkingv1.NetworkPolicy{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: render.PolicyIsolation}, isolation)).To(Succeed())
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: render.PolicyControlPlaneAccess}, access)).To(Succeed())
		six := sixPolicies(isolation, access)
		for _, p := range six {
			Expect(op.Create(ctx, p)).To(Succeed())
		}
		Expect(op.Delete(ctx, isolation)).To(Succeed())
		Expect(op.Delete(ctx, access)).To(Succeed())
		Expect(policyNames(ctx, ns)(Default)).To(Equal([]string{"allow-dns", "allow-internet-egress", "allow-lab-internal",
			"allow-operator-probe", "allow-student-access", "default-deny"}))

		By("watching the lab's policies from here, and starting the operator")
		watcher, err := client.NewWithWatch(cp.RESTConfig(), client.Options{Scheme: manager.NewScheme()})
		Expect(err).NotTo(HaveOccurred())
		var list networkingv1.NetworkPolicyList
		Expect(k8s.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
		// From the list's resourceVersion: no synthetic events for what exists.
		w, err := watcher.Watch(ctx, &networkingv1.NetworkPolicyList{}, client.InNamespace(ns),
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(w.Stop)
		events := &policyEvents{}
		go events.follow(w)
		rec := &integration.WriteRecorder{}
		startOperator(rec)

		Eventually(policyNames(ctx, ns)).WithTimeout(time.Minute).Should(Equal([]string{render.PolicyControlPlaneAccess, render.PolicyIsolation}))
		for n, spec := range want {
			p := &networkingv1.NetworkPolicy{}
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: n}, p)).To(Succeed())
			Expect(p.Spec).To(Equal(spec), "policy %s", n)
		}
		retired := []string{"DELETED default-deny", "DELETED allow-lab-internal", "DELETED allow-student-access",
			"DELETED allow-operator-probe", "DELETED allow-dns", "DELETED allow-internet-egress"}
		added := []string{"ADDED " + render.PolicyIsolation, "ADDED " + render.PolicyControlPlaneAccess}
		Eventually(events.seen).Should(ContainElements(append(slices.Clone(added), retired...)))

		By("having had the two policies in place before the first of the six went")
		seen := events.seen()
		lastAdded, firstDeleted := -1, len(seen)
		for i, e := range seen {
			if slices.Contains(added, e) {
				lastAdded = max(lastAdded, i)
			}
			if slices.Contains(retired, e) {
				firstDeleted = min(firstDeleted, i)
			}
		}
		Expect(lastAdded).To(BeNumerically("<", firstDeleted), "the lab's policy events: %v", seen)

		By("costing two applies and six deletes, and nothing else in the lab")
		// The deletes woke the lab once more: that pass, too, must write nothing.
		Consistently(policyNames(ctx, ns)).WithTimeout(2 * time.Second).Should(Equal([]string{render.PolicyControlPlaneAccess, render.PolicyIsolation}))
		var inLab []string
		for _, w := range rec.Writes() {
			if strings.Contains(w, "/namespaces/"+ns+"/") {
				inLab = append(inLab, w)
			}
		}
		path := "/apis/networking.k8s.io/v1/namespaces/" + ns + "/networkpolicies/"
		Expect(inLab).To(ConsistOf(
			"PATCH "+path+render.PolicyIsolation, "PATCH "+path+render.PolicyControlPlaneAccess,
			"DELETE "+path+"default-deny", "DELETE "+path+"allow-lab-internal", "DELETE "+path+"allow-student-access",
			"DELETE "+path+"allow-operator-probe", "DELETE "+path+"allow-dns", "DELETE "+path+"allow-internet-egress"))
	})

	It("costs a restarted operator no write once it has the two", func(ctx context.Context) {
		stopOperator()
		rec := &integration.WriteRecorder{}
		startOperator(rec)
		inLab := func() []string {
			var out []string
			for _, w := range rec.Writes() {
				if strings.Contains(w, "/namespaces/"+ns+"/") {
					out = append(out, w)
				}
			}
			return out
		}
		Consistently(inLab).WithTimeout(5 * time.Second).Should(BeEmpty())
		// The restarted operator has the lab in hand: an edit is put back, and that is
		// its one write.
		p := &networkingv1.NetworkPolicy{}
		Expect(op.Get(ctx, client.ObjectKey{Namespace: ns, Name: render.PolicyIsolation}, p)).To(Succeed())
		p.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"nothing": "here"}}
		Expect(op.Update(ctx, p)).To(Succeed())
		Eventually(func(g Gomega) networkingv1.NetworkPolicySpec {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(p), p)).To(Succeed())
			return p.Spec
		}).Should(Equal(want[render.PolicyIsolation]))
		Expect(inLab()).To(ConsistOf("PUT /apis/networking.k8s.io/v1/namespaces/" + ns + "/networkpolicies/" + render.PolicyIsolation))
	})

	It("leaves a policy of a retired name that is not the lab's", func(ctx context.Context) {
		// labforge's labels, another lab's name, no owner: not this lab's to delete.
		foreign := &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "allow-dns", Labels: map[string]string{
				labforgev1alpha1.LabelManagedBy: labforgev1alpha1.ManagedByValue, labforgev1alpha1.LabelEnvironment: "someone-else"}},
			Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}},
		}
		Expect(op.Create(ctx, foreign)).To(Succeed())
		DeferCleanup(func(ctx context.Context) {
			Expect(client.IgnoreNotFound(op.Delete(ctx, foreign))).To(Succeed())
		})
		// An edit of the lab's policy after it makes a pass that sees it in the cache.
		p := &networkingv1.NetworkPolicy{}
		Expect(op.Get(ctx, client.ObjectKey{Namespace: ns, Name: render.PolicyControlPlaneAccess}, p)).To(Succeed())
		p.Spec.Ingress = append(p.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{})
		Expect(op.Update(ctx, p)).To(Succeed())
		Eventually(func(g Gomega) networkingv1.NetworkPolicySpec {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(p), p)).To(Succeed())
			return p.Spec
		}).Should(Equal(want[render.PolicyControlPlaneAccess]))
		Consistently(func() error {
			return k8s.Get(ctx, client.ObjectKeyFromObject(foreign), &networkingv1.NetworkPolicy{})
		}).WithTimeout(2 * time.Second).Should(Succeed())
	})
})
