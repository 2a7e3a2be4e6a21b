package crash_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"sort"
	"strings"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/pki"
	"github.com/labforge/labforge/internal/render"
	"github.com/labforge/labforge/test/integration"
)

// labKinds are the kinds of object a lab's namespace holds, each labelled with the lab.
var labKinds = []schema.GroupVersionKind{
	{Version: "v1", Kind: "ResourceQuota"},
	{Version: "v1", Kind: "LimitRange"},
	{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicy"},
	{Version: "v1", Kind: "ConfigMap"},
	{Version: "v1", Kind: "Secret"},
	{Version: "v1", Kind: "Service"},
	{Group: "kubevirt.io", Version: "v1", Kind: "VirtualMachine"},
	{Group: "kubevirt.io", Version: "v1", Kind: "VirtualMachineInstance"},
}

// inventory is a lab as the API server holds it: for each kind, the names of the objects
// labelled as the lab's, its namespace included (under "Namespace", as labNamespace when
// it is the lab's own, so that the inventories of two labs compare).
type inventory map[string][]string

// labNamespace stands for the lab's own namespace in an inventory.
const labNamespace = "lab-<env>"

// labInventory reads the inventory of the lab env, and checks that each object in it is
// controlled by the LabEnvironment of UID envUID (a VMI by its VM, as KubeVirt does): no
// object of the lab that its owner would not take with it.
func labInventory(ctx context.Context, g Gomega, env string, envUID types.UID) inventory {
	selector := client.MatchingLabels{labforgev1alpha1.LabelEnvironment: env}
	inv := inventory{}
	list := func(gvk schema.GroupVersionKind, opts ...client.ListOption) []metav1.PartialObjectMetadata {
		var l metav1.PartialObjectMetadataList
		l.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		g.Expect(k8s.List(ctx, &l, opts...)).To(Succeed())
		return l.Items
	}
	for _, ns := range list(schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}, selector) {
		g.Expect(metav1.GetControllerOf(&ns)).To(HaveField("UID", envUID), "namespace %s", ns.Name)
		name := ns.Name
		if name == lab.Namespace(env) {
			name = labNamespace
		}
		inv["Namespace"] = append(inv["Namespace"], name)
	}
	for _, gvk := range labKinds {
		for _, o := range list(gvk, selector, client.InNamespace(lab.Namespace(env))) {
			owner := metav1.GetControllerOf(&o)
			g.Expect(owner).NotTo(BeNil(), "%s %s/%s has no controller", gvk.Kind, o.Namespace, o.Name)
			if gvk.Kind == "VirtualMachineInstance" {
				g.Expect(owner.Kind).To(Equal("VirtualMachine"), "VMI %s/%s", o.Namespace, o.Name)
				g.Expect(owner.Name).To(Equal(o.Name), "VMI %s/%s", o.Namespace, o.Name)
			} else {
				g.Expect(owner.UID).To(Equal(envUID), "%s %s/%s belongs to another lab", gvk.Kind, o.Namespace, o.Name)
			}
			inv[gvk.Kind] = append(inv[gvk.Kind], o.Name)
		}
	}
	for _, names := range inv {
		sort.Strings(names)
	}
	return inv
}

// keyMaterial is what a lab's PKI Secret held when it was read.
type keyMaterial struct {
	UID             types.UID
	ResourceVersion string
	CACert          []byte
	Token           string
}

// readKeyMaterial reads the PKI Secret of lab env from the API server; found is false when
// there is none yet.
func readKeyMaterial(ctx context.Context, g Gomega, env string) (keyMaterial, bool) {
	var s corev1.Secret
	err := k8s.Get(ctx, client.ObjectKey{Namespace: lab.Namespace(env), Name: lab.PKISecret}, &s)
	if apierrors.IsNotFound(err) {
		return keyMaterial{}, false
	}
	g.Expect(err).NotTo(HaveOccurred())
	return keyMaterial{UID: s.UID, ResourceVersion: s.ResourceVersion, CACert: s.Data[lab.PKICACert], Token: string(s.Data[lab.PKIBootstrapToken])}, true
}

// expectOneKeyMaterial checks that the lab env runs on exactly the key material km: the
// PKI Secret is the same object, unchanged, every VM's user-data carries km's bootstrap
// token, the control plane's holds km's CA and the workers' pin its discovery hash (a
// second CA or token minted for the lab would show in one of them).
func expectOneKeyMaterial(ctx context.Context, g Gomega, env string, km keyMaterial) {
	now, found := readKeyMaterial(ctx, g, env)
	g.Expect(found).To(BeTrue(), "lab %s has no PKI Secret", env)
	g.Expect(now).To(Equal(km), "the PKI Secret of lab %s changed", env)
	block, _ := pem.Decode(km.CACert)
	g.Expect(block).NotTo(BeNil(), "lab %s: the CA is not PEM", env)
	ca, err := x509.ParseCertificate(block.Bytes)
	g.Expect(err).NotTo(HaveOccurred())
	var secrets corev1.SecretList
	g.Expect(k8s.List(ctx, &secrets, client.InNamespace(lab.Namespace(env)))).To(Succeed())
	var userData []string
	for _, s := range secrets.Items {
		vm, ok := strings.CutPrefix(s.Name, "cloud-init-")
		if !ok {
			continue
		}
		userData = append(userData, vm)
		data := string(s.Data[lab.UserDataKey])
		g.Expect(data).To(ContainSubstring(km.Token), "the user-data of %s in lab %s has another bootstrap token", vm, env)
		if vm == lab.ControlPlaneVM {
			// The PEM sits in YAML, indented: each of its lines is there as it is.
			for _, line := range strings.Split(strings.TrimSpace(string(km.CACert)), "\n") {
				g.Expect(data).To(ContainSubstring(line), "the control plane of lab %s has another CA", env)
			}
		} else {
			g.Expect(data).To(ContainSubstring(pki.DiscoveryHash(ca)), "the user-data of %s in lab %s trusts another CA", vm, env)
		}
	}
	g.Expect(userData).To(ConsistOf(lab.ControlPlaneVM, lab.WorkerVM(1)), "lab %s: one user-data Secret per VM", env)
}

// expectHandedOver checks what the student of claim holds: exactly the claim's own
// Secrets (a kubeconfig and a key pair), a kubeconfig that trusts the lab's CA and points
// at the lab API Service's NodePort, and the lab's authorized keys holding the
// student's key and the generated one.
func expectHandedOver(ctx context.Context, g Gomega, claim *labforgev1alpha1.LabClaim, km keyMaterial) {
	var secrets corev1.SecretList
	g.Expect(k8s.List(ctx, &secrets, client.InNamespace(claim.Namespace))).To(Succeed())
	var names []string
	for _, s := range secrets.Items {
		names = append(names, s.Name)
		g.Expect(metav1.GetControllerOf(&s)).To(HaveField("UID", claim.UID), "Secret %s/%s", s.Namespace, s.Name)
	}
	g.Expect(names).To(ConsistOf(render.KubeconfigSecretName(claim.Name), render.SSHKeySecretName(claim.Name)))

	var kubeconfig, keyPair corev1.Secret
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: claim.Namespace, Name: render.KubeconfigSecretName(claim.Name)}, &kubeconfig)).To(Succeed())
	cfg, err := clientcmd.Load(kubeconfig.Data[render.KubeconfigKey])
	g.Expect(err).NotTo(HaveOccurred())
	cluster := cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster]
	g.Expect(cluster.CertificateAuthorityData).To(Equal(km.CACert), "the kubeconfig trusts another CA")
	g.Expect(cluster.Server).To(Equal(claim.Status.APIServerURL))

	var access corev1.Service
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: lab.Namespace(claim.Status.Lab), Name: lab.APIService}, &access)).To(Succeed())
	ports := map[string]int32{}
	for _, p := range access.Spec.Ports {
		ports[p.Name] = p.NodePort
	}
	g.Expect(claim.Status.SSH).NotTo(BeNil())
	g.Expect(claim.Status.SSH.Port).To(Equal(ports[render.PortSSH]))
	g.Expect(claim.Status.APIServerURL).To(HaveSuffix(":%d", ports[render.PortAPI]))

	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: claim.Namespace, Name: render.SSHKeySecretName(claim.Name)}, &keyPair)).To(Succeed())
	var keys corev1.Secret
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: lab.Namespace(claim.Status.Lab), Name: lab.AccessCredentialsSecret}, &keys)).To(Succeed())
	var authorized []string
	for _, v := range keys.Data {
		authorized = append(authorized, strings.TrimSpace(string(v)))
	}
	g.Expect(authorized).To(ConsistOf(integration.StudentKey, strings.TrimSpace(string(keyPair.Data["ssh-publickey"]))))
}

// expectNoOrphans checks the whole cluster: every lab namespace belongs to a
// LabEnvironment that exists with that UID, every LabEnvironment bound to a claim is bound
// to one that exists with that UID (or is being deleted), and every Secret labforge wrote
// for a claim belongs to a claim that exists with that UID.
func expectNoOrphans(ctx context.Context, g Gomega) {
	var envs labforgev1alpha1.LabEnvironmentList
	g.Expect(k8s.List(ctx, &envs)).To(Succeed())
	envUIDs := map[types.UID]bool{}
	for _, env := range envs.Items {
		envUIDs[env.UID] = true
		if ref := env.Spec.ClaimRef; ref != nil && env.DeletionTimestamp.IsZero() {
			var c labforgev1alpha1.LabClaim
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, &c)).To(Succeed(), "lab %s is bound to a claim that is gone", env.Name)
			g.Expect(c.UID).To(Equal(ref.UID), "lab %s is bound to an earlier claim %s/%s", env.Name, ref.Namespace, ref.Name)
		}
	}
	var namespaces corev1.NamespaceList
	g.Expect(k8s.List(ctx, &namespaces, client.HasLabels{labforgev1alpha1.LabelEnvironment})).To(Succeed())
	for _, ns := range namespaces.Items {
		owner := metav1.GetControllerOf(&ns)
		g.Expect(owner).NotTo(BeNil(), "namespace %s has no owner", ns.Name)
		g.Expect(envUIDs).To(HaveKey(owner.UID), "namespace %s outlived its LabEnvironment", ns.Name)
	}
	var secrets corev1.SecretList
	g.Expect(k8s.List(ctx, &secrets, client.HasLabels{labforgev1alpha1.LabelPrefix + "claim"})).To(Succeed())
	for _, s := range secrets.Items {
		owner := metav1.GetControllerOf(&s)
		g.Expect(owner).NotTo(BeNil(), "Secret %s/%s has no owner", s.Namespace, s.Name)
		var c labforgev1alpha1.LabClaim
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: s.Namespace, Name: owner.Name}, &c)).To(Succeed(), "Secret %s/%s outlived its claim", s.Namespace, s.Name)
		g.Expect(c.UID).To(Equal(owner.UID), "Secret %s/%s belongs to an earlier claim", s.Namespace, s.Name)
	}
}

// labsBoundTo returns the LabEnvironments bound to the claim of UID uid.
func labsBoundTo(ctx context.Context, g Gomega, uid types.UID) []labforgev1alpha1.LabEnvironment {
	var envs labforgev1alpha1.LabEnvironmentList
	g.Expect(k8s.List(ctx, &envs)).To(Succeed())
	var out []labforgev1alpha1.LabEnvironment
	for _, env := range envs.Items {
		if env.Spec.ClaimRef != nil && env.Spec.ClaimRef.UID == uid {
			out = append(out, env)
		}
	}
	return out
}
