package guards_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/render"
	"github.com/labforge/labforge/test/integration"
)

// tamper is one edit of a lab's guard: the object it changes (its kind and name) and the
// change, or nil to delete it.
type tamper struct {
	object func() client.Object
	edit   func(client.Object)
}

func policy(name string) func() client.Object {
	return func() client.Object { return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}} }
}

func quota() client.Object {
	return &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "lab-quota"}}
}
func limits() client.Object {
	return &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "lab-limits"}}
}

// tampers are the edits issue 17's review found unrepaired, and the plain ones.
var tampers = map[string]tamper{
	"narrows lab-isolation's podSelector to no pod": {policy(render.PolicyIsolation), func(o client.Object) {
		o.(*networkingv1.NetworkPolicy).Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"nothing": "here"}}
	}},
	"gives lab-isolation's own-pod peers namespaceSelector {}": {policy(render.PolicyIsolation), func(o client.Object) {
		spec := &o.(*networkingv1.NetworkPolicy).Spec
		spec.Ingress[0].From[0].NamespaceSelector = &metav1.LabelSelector{}
		spec.Egress[0].To[0].NamespaceSelector = &metav1.LabelSelector{}
	}},
	"widens control-plane-access's port 22 to 22-65535": {policy(render.PolicyControlPlaneAccess), func(o client.Object) {
		ports := o.(*networkingv1.NetworkPolicy).Spec.Ingress[0].Ports
		Expect(ports[0].Port.IntValue()).To(Equal(lab.SSHPort))
		ports[0].EndPort = ptr.To[int32](65535)
	}},
	"strips control-plane-access of labforge's labels and opens it to every address": {policy(render.PolicyControlPlaneAccess), func(o client.Object) {
		p := o.(*networkingv1.NetworkPolicy)
		p.Labels = nil
		p.Spec.Ingress = append(p.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{})
	}},
	"opens lab-isolation's egress to every address": {policy(render.PolicyIsolation), func(o client.Object) {
		p := o.(*networkingv1.NetworkPolicy)
		p.Spec.Egress = append(p.Spec.Egress, networkingv1.NetworkPolicyEgressRule{})
	}},
	"raises the quota's pods": {quota, func(o client.Object) {
		o.(*corev1.ResourceQuota).Spec.Hard[corev1.ResourcePods] = resource.MustParse("1000")
	}},
	"takes the quota's NodePort line away and adds one of its own": {quota, func(o client.Object) {
		hard := o.(*corev1.ResourceQuota).Spec.Hard
		delete(hard, corev1.ResourceServicesNodePorts)
		hard["count/configmaps"] = resource.MustParse("100")
	}},
	"changes the limit range's default request": {limits, func(o client.Object) {
		o.(*corev1.LimitRange).Spec.Limits[0].DefaultRequest[corev1.ResourceCPU] = resource.MustParse("1m")
	}},
	"deletes lab-isolation": {object: policy(render.PolicyIsolation)},
	"deletes the quota":     {object: quota},
}

// do makes the tamper in namespace ns as c, returning the API server's answer.
func (t tamper) do(ctx context.Context, c client.Client, ns string) error {
	o := t.object()
	o.SetNamespace(ns)
	if t.edit == nil {
		return c.Delete(ctx, o)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil {
		return err
	}
	t.edit(o)
	return c.Update(ctx, o, client.FieldOwner("kubectl-edit"))
}

// guards maps each guard of a lab namespace ("Kind/name") to its spec and labforge's
// labels, as JSON: what must come back exactly.
func guards(ctx context.Context, ns string) func(Gomega) map[string]string {
	return func(g Gomega) map[string]string {
		out := map[string]string{}
		add := func(kind string, o client.Object, spec any) {
			l := o.GetLabels()
			b, err := json.Marshal(map[string]any{"spec": spec, "labels": []string{
				l[labforgev1alpha1.LabelManagedBy], l[labforgev1alpha1.LabelEnvironment]}})
			g.Expect(err).NotTo(HaveOccurred())
			out[kind+"/"+o.GetName()] = string(b)
		}
		var policies networkingv1.NetworkPolicyList
		g.Expect(k8s.List(ctx, &policies, client.InNamespace(ns))).To(Succeed())
		for i := range policies.Items {
			add("NetworkPolicy", &policies.Items[i], policies.Items[i].Spec)
		}
		var quotas corev1.ResourceQuotaList
		g.Expect(k8s.List(ctx, &quotas, client.InNamespace(ns))).To(Succeed())
		for i := range quotas.Items {
			add("ResourceQuota", &quotas.Items[i], quotas.Items[i].Spec)
		}
		var ranges corev1.LimitRangeList
		g.Expect(k8s.List(ctx, &ranges, client.InNamespace(ns))).To(Succeed())
		for i := range ranges.Items {
			add("LimitRange", &ranges.Items[i], ranges.Items[i].Spec)
		}
		return out
	}
}

// labReady waits for the lab to be Ready.
func labReady(ctx context.Context, name string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		var env labforgev1alpha1.LabEnvironment
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, &env)).To(Succeed())
		g.Expect(env.Status.Conditions).To(ContainElement(And(
			HaveField("Type", labforgev1alpha1.ConditionReady), HaveField("Status", metav1.ConditionTrue))))
	}).WithTimeout(time.Minute).Should(Succeed())
}

func environment(name string) *labforgev1alpha1.LabEnvironment {
	return &labforgev1alpha1.LabEnvironment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       labforgev1alpha1.LabEnvironmentSpec{TemplateRef: labforgev1alpha1.LocalObjectReference{Name: "guarded"}},
	}
}

// policyMessage is what config/policy/lab-guards.yaml answers user.
func policyMessage(user string) string {
	return "ValidatingAdmissionPolicy 'lab-guards' with binding 'lab-guards' denied request: " +
		"a lab namespace's quota, limit range and network policies are written by the labforge operator only " +
		"(ValidatingAdmissionPolicy lab-guards), not by " + user + "; to change what labs may do, edit their LabTemplate"
}

var _ = Describe("A lab's guards", Ordered, func() {
	ns := lab.Namespace("drift")
	var pristine map[string]string

	BeforeAll(func(ctx context.Context) {
		Expect(k8s.Create(ctx, integration.MakeTemplate("guarded").Workers(1).Obj())).To(Succeed())
		Expect(k8s.Create(ctx, environment("drift"))).To(Succeed())
		labReady(ctx, "drift")
		pristine = guards(ctx, ns)(Default)
		Expect(pristine).To(HaveLen(4), "two policies, the quota and the limit range")
	})

	Context("edited by an admin, with no admission policy installed", func() {
		DescribeTable("are put back exactly on the next pass, when an admin",
			func(ctx context.Context, name string) {
				Expect(tampers[name].do(ctx, k8s, ns)).To(Succeed())
				Eventually(guards(ctx, ns)).Should(Equal(pristine))
			},
			func(name string) string { return name },
			Entry(nil, "narrows lab-isolation's podSelector to no pod"),
			Entry(nil, "gives lab-isolation's own-pod peers namespaceSelector {}"),
			Entry(nil, "widens control-plane-access's port 22 to 22-65535"),
			Entry(nil, "strips control-plane-access of labforge's labels and opens it to every address"),
			Entry(nil, "opens lab-isolation's egress to every address"),
			Entry(nil, "raises the quota's pods"),
			Entry(nil, "takes the quota's NodePort line away and adds one of its own"),
			Entry(nil, "changes the limit range's default request"),
			Entry(nil, "deletes lab-isolation"),
			Entry(nil, "deletes the quota"),
		)

		It("cost a restarted operator no write while nobody touches them", func(ctx context.Context) {
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
			// The restarted operator does watch: an edit is still put back.
			Expect(tampers["narrows lab-isolation's podSelector to no pod"].do(ctx, k8s, ns)).To(Succeed())
			Eventually(guards(ctx, ns)).Should(Equal(pristine))
			Expect(inLab()).To(ConsistOf(HavePrefix("PUT /apis/networking.k8s.io/v1/namespaces/" + ns + "/networkpolicies/lab-isolation")))
		})
	})

	Context("with the lab-guards admission policy installed", func() {
		eve := "eve"

		BeforeAll(func(ctx context.Context) {
			data, err := os.ReadFile(filepath.Join(integration.RepoRoot(), "config/policy/lab-guards.yaml"))
			Expect(err).NotTo(HaveOccurred())
			docs := bytes.Split(data, []byte("\n---\n"))
			Expect(docs).To(HaveLen(2))
			vap, binding := &admissionregistrationv1.ValidatingAdmissionPolicy{}, &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
			Expect(yaml.UnmarshalStrict(docs[0], vap)).To(Succeed())
			Expect(yaml.UnmarshalStrict(docs[1], binding)).To(Succeed())
			Expect(k8s.Create(ctx, vap)).To(Succeed())
			Expect(k8s.Create(ctx, binding)).To(Succeed())
			// The API server compiles a new policy within a second or so; until then
			// eve's edit goes through and the operator puts it back.
			Eventually(func() error {
				return tampers["raises the quota's pods"].do(ctx, as(eve), ns)
			}).Should(MatchError(HaveSuffix(" is forbidden: " + policyMessage(eve))))
			Eventually(guards(ctx, ns)).Should(Equal(pristine))
		})

		DescribeTable("refuse an admin who is not the operator, who",
			func(ctx context.Context, name string) {
				err := tampers[name].do(ctx, as(eve), ns)
				Expect(apierrors.IsForbidden(err)).To(BeTrue(), "want Forbidden, got %v", err)
				Expect(err).To(MatchError(HaveSuffix(" is forbidden: " + policyMessage(eve))))
				Expect(guards(ctx, ns)(Default)).To(Equal(pristine))
			},
			func(name string) string { return name },
			Entry(nil, "narrows lab-isolation's podSelector to no pod"),
			Entry(nil, "gives lab-isolation's own-pod peers namespaceSelector {}"),
			Entry(nil, "widens control-plane-access's port 22 to 22-65535"),
			Entry(nil, "strips control-plane-access of labforge's labels and opens it to every address"),
			Entry(nil, "opens lab-isolation's egress to every address"),
			Entry(nil, "raises the quota's pods"),
			Entry(nil, "takes the quota's NodePort line away and adds one of its own"),
			Entry(nil, "changes the limit range's default request"),
			Entry(nil, "deletes lab-isolation"),
			Entry(nil, "deletes the quota"),
		)

		It("refuse a new policy in a lab namespace, and leave other namespaces alone", func(ctx context.Context) {
			allowAll := func(namespace string) *networkingv1.NetworkPolicy {
				return &networkingv1.NetworkPolicy{
					ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "allow-all"},
					Spec: networkingv1.NetworkPolicySpec{
						PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
						Egress:      []networkingv1.NetworkPolicyEgressRule{{}},
					},
				}
			}
			Expect(as(eve).Create(ctx, allowAll(ns))).To(MatchError(HaveSuffix(" is forbidden: " + policyMessage(eve))))
			Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}})).To(Succeed())
			Expect(as(eve).Create(ctx, allowAll("team-a"))).To(Succeed())
		})

		It("let the operator, as its service account, build a new lab", func(ctx context.Context) {
			Expect(k8s.Create(ctx, environment("after"))).To(Succeed())
			labReady(ctx, "after")
			after := guards(ctx, lab.Namespace("after"))(Default)
			Expect(after).To(HaveLen(4))
		})

		It("let a lab namespace be deleted completely", func(ctx context.Context) {
			for _, name := range []string{"drift", "after"} {
				Expect(k8s.Delete(ctx, environment(name))).To(Succeed())
			}
			for _, name := range []string{"drift", "after"} {
				Eventually(func() bool {
					err := k8s.Get(ctx, client.ObjectKey{Name: lab.Namespace(name)}, &corev1.Namespace{})
					return apierrors.IsNotFound(err)
				}).WithTimeout(2*time.Minute).Should(BeTrue(), "namespace %s still exists", lab.Namespace(name))
				Eventually(func() bool {
					err := k8s.Get(ctx, client.ObjectKey{Name: name}, &labforgev1alpha1.LabEnvironment{})
					return apierrors.IsNotFound(err)
				}).Should(BeTrue(), "LabEnvironment %s still exists", name)
			}
		})
	})
})
