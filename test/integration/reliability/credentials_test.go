package reliability_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/pki"
	"github.com/labforge/labforge/internal/render"
	"github.com/labforge/labforge/test/integration"
)

// creationOrder records, per namespace, the resourceVersion at which the first VM and the
// last guard (quota, limit range, network policy) were created: a watch's ADDED event
// carries the object as created, and resourceVersions are etcd's global order.
type creationOrder struct {
	mu        sync.Mutex
	lastGuard map[string]int64
	firstVM   map[string]int64
	guards    map[string]int
}

func watchCreationOrder(ctx context.Context) *creationOrder {
	o := &creationOrder{lastGuard: map[string]int64{}, firstVM: map[string]int64{}, guards: map[string]int{}}
	ctx, cancel := context.WithCancel(ctx)
	DeferCleanup(cancel)
	for _, list := range []client.ObjectList{&corev1.ResourceQuotaList{}, &corev1.LimitRangeList{},
		&networkingv1.NetworkPolicyList{}, &kubevirtv1.VirtualMachineList{}} {
		w, err := k8s.Watch(ctx, list)
		Expect(err).NotTo(HaveOccurred())
		go func() {
			defer GinkgoRecover()
			for ev := range w.ResultChan() {
				obj, ok := ev.Object.(client.Object)
				if !ok || ev.Type != "ADDED" {
					continue
				}
				rv, err := strconv.ParseInt(obj.GetResourceVersion(), 10, 64)
				Expect(err).NotTo(HaveOccurred())
				o.mu.Lock()
				ns := obj.GetNamespace()
				if _, isVM := obj.(*kubevirtv1.VirtualMachine); isVM {
					if first, seen := o.firstVM[ns]; !seen || rv < first {
						o.firstVM[ns] = rv
					}
				} else {
					o.guards[ns]++
					o.lastGuard[ns] = max(o.lastGuard[ns], rv)
				}
				o.mu.Unlock()
			}
		}()
	}
	return o
}

// secretNeedles returns strings that would show a PEM block leaked: a run of its base64
// body, and a run of the base64 of the whole PEM (how a logged []byte or a Secret's data
// shows it).
func secretNeedles(pemBytes []byte) []string {
	block, _ := pem.Decode(pemBytes)
	Expect(block).NotTo(BeNil())
	body := base64.StdEncoding.EncodeToString(block.Bytes)
	whole := base64.StdEncoding.EncodeToString(pemBytes)
	return []string{body[len(body)/2-20 : len(body)/2+20], whole[len(whole)/2-20 : len(whole)/2+20]}
}

func leaked(haystack string, needles map[string]string) []string {
	var out []string
	for needle, what := range needles {
		if strings.Contains(haystack, needle) {
			out = append(out, what)
		}
	}
	return out
}

func jsonOf(v any) string {
	b, err := json.Marshal(v)
	Expect(err).NotTo(HaveOccurred())
	return string(b)
}

var _ = Describe("A hundred labs handed to a hundred students", func() {
	It("hold credentials of their own, and no secret shows in a status, an event or a log line", func(ctx context.Context) {
		n := 100
		if long {
			n = 300
		}
		order := watchCreationOrder(ctx)
		Expect(k8s.Create(ctx, integration.MakeTemplate("hundred").Workers(1).Obj())).To(Succeed())
		pool := integration.MakePool("hundred", "hundred").Replicas(int32(n)).MaxLabs(int32(n)).MaxBooting(10).Obj()
		pool.Spec.MaxBooting = 50
		Expect(k8s.Create(ctx, pool)).To(Succeed())
		operator := startOperator("operator.log", "--zap-log-level=10")
		Eventually(poolStatus(ctx, "hundred")).WithTimeout(5 * time.Minute).WithPolling(time.Second).
			Should(HaveField("ReadyReplicas", int32(n)))

		By("claiming every lab, each claim with its own generated key pair and duration")
		createNamespace(ctx, "hundred")
		start := time.Now()
		for i := range n {
			c := integration.MakeClaim("hundred", fmt.Sprintf("student-%03d", i)).Pool("hundred").Obj()
			c.Spec.SSH.GenerateKeyPair = true
			c.Spec.Duration = &metav1.Duration{Duration: time.Hour + time.Duration(i)*time.Minute}
			Expect(k8s.Create(ctx, c)).To(Succeed())
		}
		Eventually(readyClaims(ctx, "hundred")).WithTimeout(3 * time.Minute).WithPolling(time.Second).Should(Equal(n))
		GinkgoWriter.Printf("%d claims Ready %s after the first was created\n", n, time.Since(start))
		expectEveryClaimHoldsItsOwnLab(ctx, "hundred", n)

		By("finding every CA, token, SSH key and kubeconfig unique, the discovery hash matching its CA, each certificate expiring with its claim")
		var claims labforgev1alpha1.LabClaimList
		Expect(k8s.List(ctx, &claims, client.InNamespace("hundred"))).To(Succeed())
		seen := map[string]string{}
		unique := func(kind string, value []byte, owner string) {
			key := kind + "/" + string(value)
			Expect(seen).NotTo(HaveKey(key), "%s of %s is also %s's", kind, owner, seen[key])
			seen[key] = owner
		}
		needles := map[string]string{}
		for _, c := range claims.Items {
			ns := lab.Namespace(c.Status.Lab)
			var pkiSecret, userData, kubeconfig, sshKey corev1.Secret
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: lab.PKISecret}, &pkiSecret)).To(Succeed())
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: lab.UserDataSecret(lab.WorkerVM(1))}, &userData)).To(Succeed())
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: c.Status.KubeconfigSecretName}, &kubeconfig)).To(Succeed())
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: c.Status.SSHKeySecretName}, &sshKey)).To(Succeed())

			caPEM, caKeyPEM := pkiSecret.Data[lab.PKICACert], pkiSecret.Data[lab.PKICAKey]
			token := string(pkiSecret.Data[lab.PKIBootstrapToken])
			unique("CA", caPEM, c.Name)
			unique("CA key", caKeyPEM, c.Name)
			unique("token", []byte(token), c.Name)
			unique("SSH key", sshKey.Data[corev1.SSHAuthPrivateKey], c.Name)
			unique("kubeconfig", kubeconfig.Data[render.KubeconfigKey], c.Name)

			ca, err := pki.ParseKeyPair(caPEM, caKeyPEM)
			Expect(err).NotTo(HaveOccurred())
			Expect(string(userData.Data[lab.UserDataKey])).To(ContainSubstring(pki.DiscoveryHash(ca.Cert)), "the worker of %s", c.Status.Lab)

			cfg, err := clientcmd.Load(kubeconfig.Data[render.KubeconfigKey])
			Expect(err).NotTo(HaveOccurred())
			auth := cfg.AuthInfos[cfg.Contexts[cfg.CurrentContext].AuthInfo]
			Expect(cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster].CertificateAuthorityData).To(Equal(caPEM))
			block, _ := pem.Decode(auth.ClientCertificateData)
			cert, err := x509.ParseCertificate(block.Bytes)
			Expect(err).NotTo(HaveOccurred())
			Expect(cert.CheckSignatureFrom(ca.Cert)).To(Succeed())
			Expect(cert.NotAfter.Unix()).To(Equal(c.Status.ExpiresAt.Unix()), "the certificate of %s", c.Name)
			unique("client key", auth.ClientKeyData, c.Name)

			_, secretPart, _ := strings.Cut(token, ".")
			Expect(secretPart).To(HaveLen(16))
			needles[secretPart] = "the bootstrap token of " + c.Status.Lab
			for what, p := range map[string][]byte{
				"the CA key": caKeyPEM, "the operator key": pkiSecret.Data[lab.PKIOperatorKey],
				"the SSH private key": sshKey.Data[corev1.SSHAuthPrivateKey], "the kubeconfig key": auth.ClientKeyData,
			} {
				for _, needle := range secretNeedles(p) {
					needles[needle] = what + " of " + c.Name
				}
			}
			// The scan must be able to find what it looks for: the Secret itself shows it.
			Expect(leaked(jsonOf(pkiSecret), needles)).NotTo(BeEmpty())
		}

		By("scanning every labforge object, event, VM and the operator's log for a secret")
		haystacks := map[string]string{}
		for kind, list := range map[string]client.ObjectList{
			"LabClaims": &labforgev1alpha1.LabClaimList{}, "LabEnvironments": &labforgev1alpha1.LabEnvironmentList{},
			"LabPools": &labforgev1alpha1.LabPoolList{}, "LabTemplates": &labforgev1alpha1.LabTemplateList{},
			"events": &eventsv1.EventList{}, "core events": &corev1.EventList{},
			"VirtualMachines": &kubevirtv1.VirtualMachineList{}, "VirtualMachineInstances": &kubevirtv1.VirtualMachineInstanceList{},
			"ConfigMaps": &corev1.ConfigMapList{}, "Services": &corev1.ServiceList{},
		} {
			Expect(k8s.List(ctx, list)).To(Succeed())
			haystacks[kind] = jsonOf(list)
		}
		var events eventsv1.EventList
		Expect(k8s.List(ctx, &events, client.InNamespace("hundred"))).To(Succeed())
		Expect(len(events.Items)).To(BeNumerically(">=", n), "one HandedOver event per claim")
		log, err := os.ReadFile(operator.LogPath)
		Expect(err).NotTo(HaveOccurred())
		Expect(strings.Count(string(log), "\n")).To(BeNumerically(">", 10*n), "the operator logs at its most verbose")
		haystacks["the operator's log"] = string(log)
		// client-go hex-dumps protobuf bodies, raw bytes beside: a token shows in the clear
		// only where it happens to start a 16-byte line, so the needles alone would miss
		// most of them. No body line may be there at all.
		Expect(string(log)).NotTo(Or(ContainSubstring(`"Request Body"`), ContainSubstring(`"Response Body"`)))
		for where, text := range haystacks {
			Expect(leaked(text, needles)).To(BeEmpty(), "secrets found in %s", where)
		}

		By("having guarded every lab namespace before its first VM existed")
		var namespaces corev1.NamespaceList
		Expect(k8s.List(ctx, &namespaces, client.MatchingLabels{labforgev1alpha1.LabelManagedBy: labforgev1alpha1.ManagedByValue})).To(Succeed())
		order.mu.Lock()
		defer order.mu.Unlock()
		checked := 0
		for _, ns := range namespaces.Items {
			// The watch began with what earlier specs left: only this spec's labs were
			// seen from their start.
			if !strings.HasPrefix(ns.Name, lab.Namespace("hundred-")) {
				continue
			}
			checked++
			Expect(ns.Labels).To(HaveKeyWithValue("pod-security.kubernetes.io/enforce", "privileged"))
			first, ok := order.firstVM[ns.Name]
			Expect(ok).To(BeTrue(), "no VM seen created in %s", ns.Name)
			Expect(order.guards[ns.Name]).To(Equal(4), "quota, limit range and 2 policies in %s", ns.Name)
			Expect(order.lastGuard[ns.Name]).To(BeNumerically("<", first), "a guard of %s was created after a VM", ns.Name)
		}
		Expect(checked).To(BeNumerically(">=", n))
	})
})
