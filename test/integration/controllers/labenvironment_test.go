package controllers_test

import (
	"context"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/labprobe"
	"github.com/labforge/labforge/internal/manager"
	"github.com/labforge/labforge/internal/simulator"
	"github.com/labforge/labforge/test/integration"
)

func newEnvironment(name, template string) *labforgev1alpha1.LabEnvironment {
	return &labforgev1alpha1.LabEnvironment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       labforgev1alpha1.LabEnvironmentSpec{TemplateRef: labforgev1alpha1.LocalObjectReference{Name: template}},
	}
}

// envCondition returns one condition of the environment, once its status caught up with
// its generation.
func envCondition(ctx context.Context, name, conditionType string) func(Gomega) metav1.Condition {
	return func(g Gomega) metav1.Condition {
		var env labforgev1alpha1.LabEnvironment
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, &env)).To(Succeed())
		g.Expect(env.Status.ObservedGeneration).To(Equal(env.Generation))
		c := meta.FindStatusCondition(env.Status.Conditions, conditionType)
		g.Expect(c).NotTo(BeNil(), "no %s condition yet", conditionType)
		return *c
	}
}

// namesIn lists the names of the objects of list in the lab namespace of env.
func namesIn(ctx context.Context, env string, list client.ObjectList) []string {
	Expect(k8s.List(ctx, list, client.InNamespace(lab.Namespace(env)))).To(Succeed())
	items, err := meta.ExtractList(list)
	Expect(err).NotTo(HaveOccurred())
	var names []string
	for _, o := range items {
		names = append(names, o.(client.Object).GetName())
	}
	sort.Strings(names)
	return names
}

// versionsOf maps every object of a lab (the LabEnvironment, its namespace and what is in
// it) to its resourceVersion. KubeVirt's VMIs and the quota are left out: their status is
// written by the simulated KubeVirt and by kube-controller-manager, not the operator.
func versionsOf(ctx context.Context, env string) map[string]string {
	out := map[string]string{}
	var e labforgev1alpha1.LabEnvironment
	Expect(k8s.Get(ctx, client.ObjectKey{Name: env}, &e)).To(Succeed())
	out["LabEnvironment/"+env] = e.ResourceVersion
	var ns corev1.Namespace
	Expect(k8s.Get(ctx, client.ObjectKey{Name: lab.Namespace(env)}, &ns)).To(Succeed())
	out["Namespace/"+ns.Name] = ns.ResourceVersion
	for kind, list := range map[string]client.ObjectList{
		"Secret": &corev1.SecretList{}, "ConfigMap": &corev1.ConfigMapList{}, "Service": &corev1.ServiceList{},
		"LimitRange": &corev1.LimitRangeList{}, "NetworkPolicy": &networkingv1.NetworkPolicyList{},
		"VirtualMachine": &kubevirtv1.VirtualMachineList{},
	} {
		Expect(k8s.List(ctx, list, client.InNamespace(lab.Namespace(env)))).To(Succeed())
		items, err := meta.ExtractList(list)
		Expect(err).NotTo(HaveOccurred())
		for _, o := range items {
			obj := o.(client.Object)
			out[kind+"/"+obj.GetName()] = obj.GetResourceVersion()
		}
	}
	return out
}

func rv(o client.Object) int64 {
	n, err := strconv.ParseInt(o.GetResourceVersion(), 10, 64)
	Expect(err).NotTo(HaveOccurred())
	return n
}

var _ = Describe("A LabEnvironment", func() {
	It("becomes a namespace of guarded VMs that the lab itself reports Ready", func(ctx context.Context) {
		Expect(k8s.Create(ctx, integration.MakeTemplate("env-basic").Version("v1.36.3").PodCIDR("10.200.0.0/16").Obj())).To(Succeed())
		Expect(k8s.Create(ctx, newEnvironment("basic", "env-basic"))).To(Succeed())
		Eventually(envCondition(ctx, "basic", labforgev1alpha1.ConditionReady)).Should(And(
			HaveField("Status", metav1.ConditionTrue), HaveField("Reason", "LabReady")))

		var env labforgev1alpha1.LabEnvironment
		Expect(k8s.Get(ctx, client.ObjectKey{Name: "basic"}, &env)).To(Succeed())
		for _, t := range []string{"VMsScheduled", "VMsRunning", "APIReachable", "BootstrapComplete", "Ready"} {
			Expect(meta.IsStatusConditionTrue(env.Status.Conditions, t)).To(BeTrue(), "condition %s", t)
		}
		Expect(env.Status.Namespace).To(Equal("lab-basic"))
		Expect(env.Status.TemplateGeneration).To(Equal(int64(1)))
		Expect(env.Status.ReadyTime).NotTo(BeNil())
		Expect(env.Finalizers).To(Equal([]string{"labforge.dev/environment"}))

		By("holding exactly the lab's objects")
		var ns corev1.Namespace
		Expect(k8s.Get(ctx, client.ObjectKey{Name: "lab-basic"}, &ns)).To(Succeed())
		Expect(ns.Labels).To(HaveKeyWithValue("pod-security.kubernetes.io/enforce", "privileged"))
		Expect(metav1.IsControlledBy(&ns, &env)).To(BeTrue())
		Expect(namesIn(ctx, "basic", &corev1.SecretList{})).To(Equal([]string{"cloud-init-control-plane", "cloud-init-worker-1", "lab-pki", "ssh-authorized-keys"}))
		Expect(namesIn(ctx, "basic", &networkingv1.NetworkPolicyList{})).To(Equal([]string{"control-plane-access", "lab-isolation"}))
		Expect(namesIn(ctx, "basic", &corev1.ResourceQuotaList{})).To(Equal([]string{"lab-quota"}))
		Expect(namesIn(ctx, "basic", &corev1.LimitRangeList{})).To(Equal([]string{"lab-limits"}))
		Expect(namesIn(ctx, "basic", &corev1.ServiceList{})).To(Equal([]string{"lab-api"}))
		Expect(namesIn(ctx, "basic", &kubevirtv1.VirtualMachineList{})).To(Equal([]string{"control-plane", "worker-1"}))
		Expect(namesIn(ctx, "basic", &kubevirtv1.VirtualMachineInstanceList{})).To(Equal([]string{"control-plane", "worker-1"}))

		By("guarding the namespace before the first VM existed")
		var vms kubevirtv1.VirtualMachineList
		Expect(k8s.List(ctx, &vms, client.InNamespace("lab-basic"))).To(Succeed())
		firstVM := rv(&vms.Items[0])
		for _, vm := range vms.Items {
			firstVM = min(firstVM, rv(&vm))
		}
		var policies networkingv1.NetworkPolicyList
		Expect(k8s.List(ctx, &policies, client.InNamespace("lab-basic"))).To(Succeed())
		for _, p := range policies.Items {
			Expect(rv(&p)).To(BeNumerically("<", firstVM), "policy %s was written after a VM", p.Name)
		}
		// (The quota's resourceVersion moves when kube-controller-manager counts the VMs into
		// its status, so only the policies, which nothing else writes, can show the order.)

		By("keeping every secret out of the VM specs")
		var pkiSecret corev1.Secret
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "lab-basic", Name: lab.PKISecret}, &pkiSecret)).To(Succeed())
		vmJSON, err := json.Marshal(vms.Items)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(vmJSON)).NotTo(ContainSubstring(string(pkiSecret.Data[lab.PKIBootstrapToken])))
		Expect(string(vmJSON)).NotTo(ContainSubstring("PRIVATE KEY"))
		Expect(string(vmJSON)).NotTo(ContainSubstring("BEGIN CERTIFICATE"))

		By("telling the story in events")
		Eventually(eventReasons(ctx, "LabEnvironment", "basic")).Should(ConsistOf("Normal/LabReady"))
	})

	It("costs no API write when the operator restarts and finds it Ready", func(ctx context.Context) {
		Expect(k8s.Create(ctx, integration.MakeTemplate("env-steady").Version("v1.36.3").PodCIDR("10.200.0.0/16").Obj())).To(Succeed())
		Expect(k8s.Create(ctx, newEnvironment("steady", "env-steady"))).To(Succeed())
		Eventually(envCondition(ctx, "steady", labforgev1alpha1.ConditionReady)).Should(HaveField("Status", metav1.ConditionTrue))
		before := versionsOf(ctx, "steady")

		stopManager()
		var writes integration.WriteRecorder
		var err error
		stopManager, sim, err = integration.StartSimulatedManager(writes.Wrap(cp.RESTConfig()), clk)
		Expect(err).NotTo(HaveOccurred())

		// A lab created after the restart and Ready proves the new manager has synced and
		// worked through its queue, in which the steady lab came first.
		Expect(k8s.Create(ctx, newEnvironment("after-restart", "env-steady"))).To(Succeed())
		Eventually(envCondition(ctx, "after-restart", labforgev1alpha1.ConditionReady)).Should(HaveField("Status", metav1.ConditionTrue))
		Expect(versionsOf(ctx, "steady")).To(Equal(before))
		// No-op applies leave resourceVersions alone but are still requests: count them.
		var steady []string
		for _, w := range writes.Writes() {
			if strings.Contains(w, "lab-steady") || strings.Contains(w, "labenvironments/steady") {
				steady = append(steady, w)
			}
		}
		Expect(steady).To(BeEmpty())
	})

	It("lets go of its probe's TLS client once Ready, and when gone", func(ctx context.Context) {
		stopManager()
		probes := &probeRecorder{}
		sim = simulator.New(simulator.Options{})
		var err error
		stopManager, err = integration.StartManager(context.Background(), cp.RESTConfig(),
			manager.Options{Clock: clk, Simulator: sim, WrapProber: probes.wrap})
		Expect(err).NotTo(HaveOccurred())

		Expect(k8s.Create(ctx, integration.MakeTemplate("env-probed").Version("v1.36.3").PodCIDR("10.200.0.0/16").Obj())).To(Succeed())
		env := newEnvironment("probed", "env-probed")
		Expect(k8s.Create(ctx, env)).To(Succeed())
		Eventually(envCondition(ctx, "probed", labforgev1alpha1.ConditionReady)).Should(HaveField("Status", metav1.ConditionTrue))
		probed, held, forgotten := probes.of("probed")
		Expect(probed).To(BeNumerically(">=", 1))
		Expect(held).To(BeFalse(), "a Ready lab is never probed again: its client must go")
		Expect(forgotten).To(BeNumerically(">=", 1))

		Expect(k8s.Delete(ctx, env)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: "probed"}, &labforgev1alpha1.LabEnvironment{}))
		}).WithTimeout(time.Minute).Should(BeTrue())
		// Forgotten right after the finalizer's removal, which the Get above may see first.
		Eventually(func() int {
			_, _, gone := probes.of("probed")
			return gone
		}).Should(BeNumerically(">", forgotten), "a deleted lab is forgotten too")
	})

	It("repairs drift: a deleted policy, an edited quota and a deleted VM come back", func(ctx context.Context) {
		Expect(k8s.Create(ctx, integration.MakeTemplate("env-drift").Version("v1.36.3").PodCIDR("10.200.0.0/16").Obj())).To(Succeed())
		Expect(k8s.Create(ctx, newEnvironment("drift", "env-drift"))).To(Succeed())
		Eventually(envCondition(ctx, "drift", labforgev1alpha1.ConditionReady)).Should(HaveField("Status", metav1.ConditionTrue))

		deny := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "lab-drift", Name: "lab-isolation"}}
		Expect(k8s.Delete(ctx, deny)).To(Succeed())
		var quota corev1.ResourceQuota
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "lab-drift", Name: "lab-quota"}, &quota)).To(Succeed())
		quota.Spec.Hard[corev1.ResourceServicesNodePorts] = resource.MustParse("50")
		Expect(k8s.Update(ctx, &quota)).To(Succeed())
		worker := &kubevirtv1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Namespace: "lab-drift", Name: "worker-1"}}
		Expect(k8s.Delete(ctx, worker)).To(Succeed())

		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(deny), deny)).To(Succeed())
			g.Expect(deny.Spec.PolicyTypes).To(ConsistOf(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress))
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(&quota), &quota)).To(Succeed())
			g.Expect(quota.Spec.Hard.Name(corev1.ResourceServicesNodePorts, resource.DecimalSI).Value()).To(Equal(int64(4)))
			var vm kubevirtv1.VirtualMachine
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(worker), &vm)).To(Succeed())
			g.Expect(vm.DeletionTimestamp).To(BeNil())
		}).Should(Succeed())
	})

	It("is not touched by an edit of its template", func(ctx context.Context) {
		t := integration.MakeTemplate("env-edit").Version("v1.36.3").PodCIDR("10.200.0.0/16").Obj()
		Expect(k8s.Create(ctx, t)).To(Succeed())
		Expect(k8s.Create(ctx, newEnvironment("edit", "env-edit"))).To(Succeed())
		Eventually(envCondition(ctx, "edit", labforgev1alpha1.ConditionReady)).Should(HaveField("Status", metav1.ConditionTrue))
		var before kubevirtv1.VirtualMachine
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "lab-edit", Name: "worker-1"}, &before)).To(Succeed())

		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(t), t)).To(Succeed())
		t.Spec.Workers.Memory = resource.MustParse("3Gi")
		t.Spec.Workers.Count = 2
		Expect(k8s.Update(ctx, t)).To(Succeed())
		Eventually(readyCondition(ctx, "env-edit")).Should(HaveField("ObservedGeneration", int64(2)))

		// Nudge the lab (a label change is an event) and let it reconcile.
		var env labforgev1alpha1.LabEnvironment
		Expect(k8s.Get(ctx, client.ObjectKey{Name: "edit"}, &env)).To(Succeed())
		patch := client.MergeFrom(env.DeepCopy())
		env.Labels = map[string]string{"nudge": "1"}
		Expect(k8s.Patch(ctx, &env, patch)).To(Succeed())
		Consistently(func(g Gomega) {
			var vm kubevirtv1.VirtualMachine
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "lab-edit", Name: "worker-1"}, &vm)).To(Succeed())
			g.Expect(vm.ResourceVersion).To(Equal(before.ResourceVersion))
			g.Expect(namesIn(ctx, "edit", &kubevirtv1.VirtualMachineList{})).To(Equal([]string{"control-plane", "worker-1"}))
		}).WithTimeout(2 * 1e9).Should(Succeed())
		Expect(k8s.Get(ctx, client.ObjectKey{Name: "edit"}, &env)).To(Succeed())
		Expect(env.Status.TemplateGeneration).To(Equal(int64(1)))
	})

	It("with a template labforge cannot build says why, creates nothing, and builds once fixed", func(ctx context.Context) {
		t := integration.MakeTemplate("env-bad").Version("v1.29.1").PodCIDR("10.200.0.0/16").Obj()
		Expect(k8s.Create(ctx, t)).To(Succeed())
		Expect(k8s.Create(ctx, newEnvironment("bad", "env-bad"))).To(Succeed())
		Eventually(envCondition(ctx, "bad", labforgev1alpha1.ConditionReady)).Should(And(
			HaveField("Status", metav1.ConditionFalse),
			HaveField("Reason", "InvalidTemplate"),
			HaveField("Message", "LabTemplate env-bad cannot be built: kubernetesVersion v1.29.1 is not supported: labforge builds labs of v1.31 to v1.37"),
		))
		Eventually(envCondition(ctx, "bad", labforgev1alpha1.ConditionStalled)).Should(HaveField("Status", metav1.ConditionTrue))
		Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: "lab-bad"}, &corev1.Namespace{}))).To(BeTrue())
		Eventually(eventReasons(ctx, "LabEnvironment", "bad")).Should(ContainElement("Warning/InvalidTemplate"))

		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(t), t)).To(Succeed())
		t.Spec.KubernetesVersion = "v1.36.3"
		Expect(k8s.Update(ctx, t)).To(Succeed())
		Eventually(envCondition(ctx, "bad", labforgev1alpha1.ConditionReady)).Should(HaveField("Status", metav1.ConditionTrue))
		Eventually(func(g Gomega) *metav1.Condition {
			var env labforgev1alpha1.LabEnvironment
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: "bad"}, &env)).To(Succeed())
			return meta.FindStatusCondition(env.Status.Conditions, labforgev1alpha1.ConditionStalled)
		}).Should(BeNil())
	})

	It("whose bootstrap fails shows the lab's own message", func(ctx context.Context) {
		Expect(k8s.Create(ctx, integration.MakeTemplate("env-fail").Version("v1.36.3").PodCIDR("10.200.0.0/16").Obj())).To(Succeed())
		env := newEnvironment("fail", "env-fail")
		env.Annotations = map[string]string{simulator.BootstrapFailureAnnotation: "scenario: coredns patch failed"}
		Expect(k8s.Create(ctx, env)).To(Succeed())
		Eventually(envCondition(ctx, "fail", labforgev1alpha1.ConditionReady)).Should(And(
			HaveField("Status", metav1.ConditionFalse),
			HaveField("Reason", "BootstrapFailed"),
			HaveField("Message", "The lab's bootstrap failed: scenario: coredns patch failed"),
		))
		Eventually(envCondition(ctx, "fail", "BootstrapComplete")).Should(HaveField("Status", metav1.ConditionFalse))
		Eventually(eventReasons(ctx, "LabEnvironment", "fail")).Should(ContainElement("Warning/BootstrapFailed"))
	})

	It("when deleted, takes its namespace and every object it made with it", func(ctx context.Context) {
		Expect(k8s.Create(ctx, integration.MakeTemplate("env-gone").Version("v1.36.3").PodCIDR("10.200.0.0/16").Obj())).To(Succeed())
		env := newEnvironment("gone", "env-gone")
		Expect(k8s.Create(ctx, env)).To(Succeed())
		Eventually(envCondition(ctx, "gone", labforgev1alpha1.ConditionReady)).Should(HaveField("Status", metav1.ConditionTrue))
		// A finalizer of the test's holds the namespace in Terminating, as a slow
		// teardown would.
		holder := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "lab-gone", Name: "holder", Finalizers: []string{"test.labforge.dev/hold"}}}
		Expect(k8s.Create(ctx, holder)).To(Succeed())

		Expect(k8s.Delete(ctx, env)).To(Succeed())
		By("saying Ready=False (Deleting) while its namespace terminates, never Ready=True")
		Eventually(envCondition(ctx, "gone", labforgev1alpha1.ConditionReady)).Should(And(
			HaveField("Status", metav1.ConditionFalse), HaveField("Reason", "Deleting"),
			HaveField("Message", "The lab is being deleted with its namespace lab-gone")))
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(holder), holder)).To(Succeed())
		holder.Finalizers = nil
		Expect(k8s.Update(ctx, holder)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: "gone"}, &labforgev1alpha1.LabEnvironment{}))
		}).WithTimeout(60 * 1e9).Should(BeTrue())
		Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: "lab-gone"}, &corev1.Namespace{}))).To(BeTrue())
		selector := client.MatchingLabels{labforgev1alpha1.LabelEnvironment: "gone"}
		for _, list := range []client.ObjectList{
			&corev1.SecretList{}, &corev1.ConfigMapList{}, &corev1.ServiceList{}, &networkingv1.NetworkPolicyList{},
			&corev1.ResourceQuotaList{}, &corev1.LimitRangeList{}, &kubevirtv1.VirtualMachineList{}, &kubevirtv1.VirtualMachineInstanceList{},
		} {
			Expect(k8s.List(ctx, list, selector)).To(Succeed())
			Expect(meta.LenList(list)).To(BeZero(), "%T left behind", list)
		}
	})
})

// probeRecorder wraps the operator's readiness probe and tracks, per lab, how often it was
// probed and forgotten and whether the probe still holds something of it.
type probeRecorder struct {
	mu        sync.Mutex
	probed    map[string]int
	held      map[string]bool
	forgotten map[string]int
}

type recordingProber struct {
	labprobe.Prober
	r *probeRecorder
}

func (p *probeRecorder) wrap(inner labprobe.Prober) labprobe.Prober {
	p.probed, p.held, p.forgotten = map[string]int{}, map[string]bool{}, map[string]int{}
	return recordingProber{Prober: inner, r: p}
}

func (p *probeRecorder) of(env string) (probed int, held bool, forgotten int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.probed[env], p.held[env], p.forgotten[env]
}

func (p recordingProber) Probe(ctx context.Context, env string, creds labprobe.Credentials) (labprobe.Result, error) {
	p.r.mu.Lock()
	p.r.probed[env]++
	p.r.held[env] = true
	p.r.mu.Unlock()
	return p.Prober.Probe(ctx, env, creds)
}

func (p recordingProber) Forget(env string) {
	p.r.mu.Lock()
	p.r.forgotten[env]++
	delete(p.r.held, env)
	p.r.mu.Unlock()
	p.Prober.Forget(env)
}
