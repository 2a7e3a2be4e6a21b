package recovery_test

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/manager"
	"github.com/labforge/labforge/internal/ownership"
	"github.com/labforge/labforge/test/integration"
)

func createNamespace(ctx context.Context, name string) {
	GinkgoHelper()
	Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})).To(Succeed())
}

func get[T client.Object](ctx context.Context, g Gomega, key client.ObjectKey, obj T) T {
	g.Expect(k8s.Get(ctx, key, obj)).To(Succeed())
	return obj
}

func gone(ctx context.Context, key client.ObjectKey, obj client.Object) func() bool {
	return func() bool { return apierrors.IsNotFound(k8s.Get(ctx, key, obj)) }
}

// condition returns one condition of a claim or lab as the API server has it now.
func condition(ctx context.Context, obj client.Object, conditionType string) func(Gomega) metav1.Condition {
	return func(g Gomega) metav1.Condition {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj)).To(Succeed())
		var conds []metav1.Condition
		switch o := obj.(type) {
		case *labforgev1alpha1.LabClaim:
			conds = o.Status.Conditions
		case *labforgev1alpha1.LabEnvironment:
			conds = o.Status.Conditions
		case *labforgev1alpha1.LabPool:
			conds = o.Status.Conditions
		}
		c := meta.FindStatusCondition(conds, conditionType)
		g.Expect(c).NotTo(BeNil(), "%s has no %s condition yet", describe(obj), conditionType)
		return *c
	}
}

func claimReady(ctx context.Context, ns, name string) func(Gomega) metav1.Condition {
	return condition(ctx, &labforgev1alpha1.LabClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, labforgev1alpha1.ConditionReady)
}

func envReady(ctx context.Context, name string) func(Gomega) metav1.Condition {
	return condition(ctx, &labforgev1alpha1.LabEnvironment{ObjectMeta: metav1.ObjectMeta{Name: name}}, labforgev1alpha1.ConditionReady)
}

func poolStatus(ctx context.Context, name string) func(Gomega) labforgev1alpha1.LabPoolStatus {
	return func(g Gomega) labforgev1alpha1.LabPoolStatus {
		return get(ctx, g, client.ObjectKey{Name: name}, &labforgev1alpha1.LabPool{}).Status
	}
}

// claimOf returns the claim as stored now.
func claimOf(ctx context.Context, ns, name string) *labforgev1alpha1.LabClaim {
	GinkgoHelper()
	return get(ctx, Default, client.ObjectKey{Namespace: ns, Name: name}, &labforgev1alpha1.LabClaim{})
}

// labsOfTemplate lists the LabEnvironments built from template, by name.
func labsOfTemplate(ctx context.Context, g Gomega, template string) map[string]*labforgev1alpha1.LabEnvironment {
	var list labforgev1alpha1.LabEnvironmentList
	g.Expect(k8s.List(ctx, &list, client.MatchingLabels{labforgev1alpha1.LabelTemplate: template})).To(Succeed())
	out := map[string]*labforgev1alpha1.LabEnvironment{}
	for i := range list.Items {
		out[list.Items[i].Name] = &list.Items[i]
	}
	return out
}

// scannedKinds are every kind labforge writes (LabPools and LabClaims are written by people
// and carry no labels of labforge's; a story checks them by name).
func scannedKinds() []client.ObjectList {
	return []client.ObjectList{
		&labforgev1alpha1.LabEnvironmentList{}, &corev1.NamespaceList{}, &corev1.SecretList{}, &corev1.ConfigMapList{},
		&corev1.ServiceList{}, &corev1.ResourceQuotaList{}, &corev1.LimitRangeList{}, &networkingv1.NetworkPolicyList{},
		&kubevirtv1.VirtualMachineList{}, &kubevirtv1.VirtualMachineInstanceList{},
	}
}

// labforgeLabelled says whether an object carries one of labforge's labels.
func labforgeLabelled(o client.Object) bool {
	for k, v := range o.GetLabels() {
		if strings.HasPrefix(k, labforgev1alpha1.LabelPrefix) || (k == labforgev1alpha1.LabelManagedBy && v == labforgev1alpha1.ManagedByValue) {
			return true
		}
	}
	return false
}

// labforgeObjects lists, across the cluster, every object of the scanned kinds that carries
// a labforge label and that keep accepts.
func labforgeObjects(ctx context.Context, g Gomega, keep func(client.Object) bool) []client.Object {
	var out []client.Object
	for _, list := range scannedKinds() {
		if err := k8s.List(ctx, list); apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			continue // labforge's CRDs are uninstalled
		} else {
			g.Expect(err).NotTo(HaveOccurred())
		}
		items, err := meta.ExtractList(list)
		g.Expect(err).NotTo(HaveOccurred())
		for _, item := range items {
			o := item.(client.Object)
			if labforgeLabelled(o) && keep(o) {
				out = append(out, o)
			}
		}
	}
	return out
}

// inStory keeps the objects of one story: those built from its template, and those in its
// students' namespaces.
func inStory(template string, studentNamespaces ...string) func(client.Object) bool {
	return func(o client.Object) bool {
		if o.GetLabels()[labforgev1alpha1.LabelTemplate] == template {
			return true
		}
		for _, ns := range studentNamespaces {
			if o.GetNamespace() == ns {
				return true
			}
		}
		return false
	}
}

func everything(client.Object) bool { return true }

// describe names an object as "Kind namespace/name".
func describe(o client.Object) string {
	gvk, err := apiutil.GVKForObject(o, manager.NewScheme())
	kind := fmt.Sprintf("%T", o)
	if err == nil {
		kind = gvk.Kind
	}
	if o.GetNamespace() == "" {
		return kind + " " + o.GetName()
	}
	return kind + " " + o.GetNamespace() + "/" + o.GetName()
}

func describeAll(objs []client.Object) []string {
	out := make([]string, 0, len(objs))
	for _, o := range objs {
		out = append(out, describe(o))
	}
	sort.Strings(out)
	return out
}

// leftovers lists what a story left behind, for an Eventually that wants none.
func leftovers(ctx context.Context, keep func(client.Object) bool) func(Gomega) []string {
	return func(g Gomega) []string { return describeAll(labforgeObjects(ctx, g, keep)) }
}

// resourceVersions maps each object to its resourceVersion.
func resourceVersions(objs []client.Object) map[string]string {
	out := map[string]string{}
	for _, o := range objs {
		out[describe(o)] = o.GetResourceVersion()
	}
	return out
}

// controllerRef is the owner reference labforge's controllers write: the one controller,
// blocking the owner's foreground deletion.
func controllerRef(kind, name string, uid types.UID) []metav1.OwnerReference {
	return []metav1.OwnerReference{{
		APIVersion: labforgev1alpha1.GroupVersion.String(), Kind: kind, Name: name, UID: uid,
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
	}}
}

// labObjects lists the objects in a lab's namespace, as "Kind name", with their owners.
func labObjects(ctx context.Context, g Gomega, env string) map[string][]metav1.OwnerReference {
	out := map[string][]metav1.OwnerReference{}
	for _, list := range scannedKinds()[2:] {
		g.Expect(k8s.List(ctx, list, client.InNamespace(lab.Namespace(env)))).To(Succeed())
		items, err := meta.ExtractList(list)
		g.Expect(err).NotTo(HaveOccurred())
		for _, item := range items {
			o := item.(client.Object)
			if labforgeLabelled(o) {
				name := describe(o)
				out[strings.Replace(name, " "+o.GetNamespace()+"/", " ", 1)] = o.GetOwnerReferences()
			}
		}
	}
	return out
}

// labObjectNames are the objects a lab of newTemplate holds, claimed or not: a claim
// makes the lab's API Service a NodePort Service, and adds nothing.
func labObjectNames() []string {
	names := []string{
		"ConfigMap labforge-template", "LimitRange lab-limits", "ResourceQuota lab-quota",
		"NetworkPolicy control-plane-access", "NetworkPolicy lab-isolation",
		"Secret cloud-init-control-plane", "Secret cloud-init-worker-1", "Secret lab-pki", "Secret ssh-authorized-keys",
		"Service lab-api", "VirtualMachine control-plane", "VirtualMachine worker-1",
		"VirtualMachineInstance control-plane", "VirtualMachineInstance worker-1",
	}
	sort.Strings(names)
	return names
}

// expectLabOwnedBy checks the owner graph of one lab: its namespace and every object labforge
// wrote in it are controlled by the LabEnvironment (by UID), and each VMI by its VM, as
// KubeVirt makes it.
func expectLabOwnedBy(ctx context.Context, g Gomega, env *labforgev1alpha1.LabEnvironment, claimed bool) {
	ns := get(ctx, g, client.ObjectKey{Name: lab.Namespace(env.Name)}, &corev1.Namespace{})
	g.Expect(ns.OwnerReferences).To(Equal(controllerRef("LabEnvironment", env.Name, env.UID)), "namespace of %s", env.Name)
	objs := labObjects(ctx, g, env.Name)
	names := make([]string, 0, len(objs))
	for name, owners := range objs {
		names = append(names, name)
		if vmi, ok := strings.CutPrefix(name, "VirtualMachineInstance "); ok {
			g.Expect(owners).To(HaveLen(1), name)
			g.Expect(owners[0]).To(And(HaveField("Kind", "VirtualMachine"), HaveField("Name", vmi), HaveField("Controller", ptr.To(true))), name)
			continue
		}
		g.Expect(owners).To(Equal(controllerRef("LabEnvironment", env.Name, env.UID)), "%s of lab %s", name, env.Name)
	}
	sort.Strings(names)
	g.Expect(names).To(Equal(labObjectNames()), "objects of lab %s", env.Name)
	svc := get(ctx, g, client.ObjectKey{Namespace: lab.Namespace(env.Name), Name: lab.APIService}, &corev1.Service{})
	wantType := corev1.ServiceTypeClusterIP
	if claimed {
		wantType = corev1.ServiceTypeNodePort
	}
	g.Expect(svc.Spec.Type).To(Equal(wantType), "type of the API Service of lab %s", env.Name)
}

// kubectl runs the real kubectl against the test control plane.
func kubectl(ctx context.Context, args ...string) string {
	GinkgoHelper()
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", cp.KubeconfigPath()}, args...)...)
	cmd.Dir = integration.RepoRoot()
	out, err := cmd.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "kubectl %s: %s", strings.Join(args, " "), out)
	return string(out)
}

// operatorProver signs as the operator does, with the key it keeps in its namespace: what
// a story needs to restore an object labforge made (a backup holds the proof as it was).
func operatorProver(ctx context.Context) *ownership.Prover {
	GinkgoHelper()
	secret := get(ctx, Default, client.ObjectKey{Namespace: manager.DefaultOperatorNamespace, Name: ownership.KeySecret}, &corev1.Secret{})
	p, err := ownership.NewProver(secret.Data[ownership.KeySecretKey])
	Expect(err).NotTo(HaveOccurred())
	return p
}
