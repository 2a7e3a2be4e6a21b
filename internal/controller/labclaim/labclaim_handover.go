package labclaim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/hostcluster"
	"github.com/labforge/labforge/internal/index"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/pki"
	"github.com/labforge/labforge/internal/render"
)

// StudentGroup is the group of a student's client certificate: kubeadm binds it to
// cluster-admin in every lab.
const StudentGroup = "kubeadm:cluster-admins"

// handover is what the student was given.
type handover struct {
	// host is where the student connects; serverName is the name the lab API's
	// certificate carries, which the kubeconfig tells client-go to expect.
	host, serverName string
	sshPort, apiPort int32
	sshUser          string
	sshKeySecret     string
}

func kubeconfigSecret(c *labforgev1alpha1.LabClaim) string {
	return render.KubeconfigSecretName(c.Name)
}
func sshSecret(c *labforgev1alpha1.LabClaim) string { return render.SSHKeySecretName(c.Name) }

// handOver exposes the bound lab to its student, at claim time only: the NodePorts, the
// student's public keys in the VMs, and a kubeconfig whose certificate expires with the
// claim (re-minted when the expiry moves). The NodePorts and the keys do not depend on
// each other and are written at once; the kubeconfig needs the API's NodePort.
func (r *Reconciler) handOver(ctx context.Context, s *scope) error {
	l := render.Lab{Env: s.env}
	host := r.Host.Network()
	address, err := r.studentAddress(ctx, s, host)
	if err != nil || address == "" {
		// The lab's control plane runs on no node yet (the claim says its lab boots, and
		// the VMI's scheduling wakes it), or on one without an address (s.pendingReason).
		return err
	}
	h := &handover{host: address, serverName: lab.APIServiceHost(s.env.Name, host.ClusterDomain), sshUser: builtinSSHUser}
	if s.terms != nil {
		// The login recorded at the bind, never the template's as it is now (decision 57).
		h.sshUser = s.terms.SSHUser
	}

	var svc *corev1.Service
	var exhausted error
	// The keys' half works on its own copy of the scope, for what it refuses.
	keys := *s
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		svc, err = r.exposeLab(gctx, l)
		if nodePortsExhausted(err) {
			exhausted, err = err, nil
		}
		return err
	})
	g.Go(func() error { return r.installKeys(gctx, &keys, l, h) })
	if err := g.Wait(); err != nil {
		return err
	}
	if keys.refusedReason != "" {
		s.refusedReason, s.refusedMessage = keys.refusedReason, keys.refusedMessage
		return nil
	}
	if exhausted != nil {
		// Not an error of labforge's nor of the student's: the host has no NodePorts left.
		// The claim waits, and is woken when a lab's Service goes (nodePortWaiters).
		s.pendingReason, s.pendingMessage = labforgev1alpha1.ReasonNodePortsExhausted, nodePortsExhaustedMessage(exhausted)
		return nil
	}
	for _, p := range svc.Spec.Ports {
		switch p.Name {
		case render.PortSSH:
			h.sshPort = p.NodePort
		case render.PortAPI:
			h.apiPort = p.NodePort
		}
	}
	if h.sshPort == 0 || h.apiPort == 0 {
		return fmt.Errorf("service %s/%s has no NodePorts allocated yet", svc.Namespace, svc.Name)
	}
	if err := r.ensureKubeconfig(ctx, s, h); err != nil || s.refusedReason != "" {
		return err
	}
	s.handover = h
	return nil
}

// studentAddress returns where the student reaches the lab's NodePorts: the host's
// public address when the admin runs one entry point, else the address of the node that
// runs the lab's control-plane VMI (the Service's externalTrafficPolicy is Local, so that
// node is the one that answers). It is empty while the VMI runs on no node yet, and when
// the node has no address of the chosen type (then s.pendingReason says so); the VMI's
// scheduling and the host's node changes wake the claim.
func (r *Reconciler) studentAddress(ctx context.Context, s *scope, host hostcluster.Network) (string, error) {
	if host.PublicAddress != "" {
		return host.PublicAddress, nil
	}
	vmi := &kubevirtv1.VirtualMachineInstance{}
	key := client.ObjectKey{Namespace: lab.Namespace(s.env.Name), Name: lab.ControlPlaneVM}
	if err := r.Client.Get(ctx, key, vmi); client.IgnoreNotFound(err) != nil {
		return "", fmt.Errorf("reading VirtualMachineInstance %s: %w", key, err)
	}
	node := vmi.Status.NodeName
	if node == "" {
		return "", nil
	}
	if address, ok := host.StudentAddress(node); ok {
		return address, nil
	}
	s.pendingReason = labforgev1alpha1.ReasonNodeAddressUnknown
	s.pendingMessage = fmt.Sprintf("Node %s, which runs the lab's control plane, has no %s address (the operator's %s); the claim waits for one",
		node, host.NodeAddressType, hostcluster.FlagNodeAddressType)
	return "", nil
}

// exposeLab makes the lab's API Service a NodePort Service and returns it as the API
// server has it. A lab handed over by an earlier labforge version keeps the Service it
// got then.
func (r *Reconciler) exposeLab(ctx context.Context, l render.Lab) (*corev1.Service, error) {
	svc := render.ExposedAPIService(l)
	legacy := &corev1.Service{}
	switch err := r.Client.Get(ctx, client.ObjectKey{Namespace: svc.Namespace, Name: render.LegacyAccessService}, legacy); {
	case err == nil:
		return legacy, nil
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("reading Service %s/%s: %w", svc.Namespace, render.LegacyAccessService, err)
	}
	current := &corev1.Service{}
	var observed client.Object
	if err := r.Client.Get(ctx, client.ObjectKeyFromObject(svc), current); err == nil {
		observed = current
	} else if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading Service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	applied, err := r.Applier.Apply(ctx, svc, observed)
	if err != nil {
		return nil, err
	}
	if !applied {
		return current, nil
	}
	return svc, nil
}

// installKeys puts the student's public keys, and the public half of the key pair it
// generates for the claim if asked to, into the lab's access credentials. A key it cannot
// accept refuses the claim (s.refusedReason).
func (r *Reconciler) installKeys(ctx context.Context, s *scope, l render.Lab, h *handover) error {
	keys := make([]string, 0, len(s.claim.Spec.SSH.AuthorizedKeys)+1)
	for _, k := range s.claim.Spec.SSH.AuthorizedKeys {
		normalized, err := pki.ParseAuthorizedKey(k)
		if err != nil {
			s.refusedReason, s.refusedMessage = labforgev1alpha1.ReasonInvalidSSHKey, err.Error()
			return nil
		}
		keys = append(keys, normalized)
	}
	if s.claim.Spec.SSH.GenerateKeyPair {
		pub, err := r.ensureKeyPair(ctx, s)
		if err != nil || s.refusedReason != "" {
			return err
		}
		keys = append(keys, pub)
		h.sshKeySecret = sshSecret(s.claim)
	}
	return r.Applier.ApplyCurrent(ctx, r.Client, render.AuthorizedKeysFor(l, keys), &corev1.Secret{})
}

// ensureKeyPair returns the public half of the claim's generated key pair, generating it
// once. Its private half only ever exists in the Secret.
func (r *Reconciler) ensureKeyPair(ctx context.Context, s *scope) (string, error) {
	key := client.ObjectKey{Namespace: s.claim.Namespace, Name: sshSecret(s.claim)}
	secret := &corev1.Secret{}
	err := r.Client.Get(ctx, key, secret)
	if apierrors.IsNotFound(err) {
		pub, priv, genErr := pki.NewSSHKeyPair(nil, s.claim.Namespace+"/"+s.claim.Name+"@labforge")
		if genErr != nil {
			return "", genErr
		}
		createErr := r.Client.Create(ctx, r.withProof(s.claim, render.SSHKeySecret(s.claim, priv, pub)))
		if createErr == nil {
			return pub, nil
		}
		if !apierrors.IsAlreadyExists(createErr) {
			return "", fmt.Errorf("creating Secret %s: %w", key, createErr)
		}
		err = r.APIReader.Get(ctx, key, secret)
	}
	if err != nil {
		return "", fmt.Errorf("reading Secret %s: %w", key, err)
	}
	if ours, err := r.ownSecret(ctx, s, secret); err != nil || !ours {
		return "", err
	}
	return string(secret.Data["ssh-publickey"]), nil
}

// ensureKubeconfig writes the claim's kubeconfig unless the current one is for this lab
// and expires with the claim.
func (r *Reconciler) ensureKubeconfig(ctx context.Context, s *scope, h *handover) error {
	expiresAt := metav1.NewTime(s.expiresAt())
	key := client.ObjectKey{Namespace: s.claim.Namespace, Name: kubeconfigSecret(s.claim)}
	current := &corev1.Secret{}
	err := r.Client.Get(ctx, key, current)
	if apierrors.IsNotFound(err) {
		// The cache holds only labforge's Secrets, so a Secret of the student's own may
		// hold the name: create, which never writes over one, and look only if one is there.
		secret, mintErr := r.mintKubeconfig(ctx, s, h, expiresAt)
		if mintErr != nil {
			return mintErr
		}
		if createErr := r.Client.Create(ctx, secret); !apierrors.IsAlreadyExists(createErr) {
			if createErr != nil {
				return fmt.Errorf("creating Secret %s: %w", key, createErr)
			}
			return nil
		}
		err = r.APIReader.Get(ctx, key, current)
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading Secret %s: %w", key, err)
	}
	exists := err == nil
	if exists {
		if ours, err := r.ownSecret(ctx, s, current); err != nil || !ours {
			return err
		}
		want := render.KubeconfigSecret(s.claim, s.env.Name, string(s.env.Status.NamespaceUID), h.server(), expiresAt, nil)
		if kubeconfigCurrent(current, want) {
			return nil
		}
	}
	secret, err := r.mintKubeconfig(ctx, s, h, expiresAt)
	if err != nil {
		return err
	}
	var observed client.Object
	if exists {
		observed = current
	}
	_, err = r.Applier.Apply(ctx, secret, observed)
	return err
}

// ownSecret says whether secret, of the claim's name, is the claim's: controlled by it,
// or adopted now (adoptSecret). Never take over a Secret the student (or anyone) made:
// the claim says so instead (s.refusedReason).
func (r *Reconciler) ownSecret(ctx context.Context, s *scope, secret *corev1.Secret) (bool, error) {
	if metav1.IsControlledBy(secret, s.claim) {
		return true, nil
	}
	adopted, err := r.adoptSecret(ctx, s, secret)
	if err != nil || adopted {
		return adopted, err
	}
	s.refusedReason = labforgev1alpha1.ReasonSecretConflict
	s.refusedMessage = fmt.Sprintf("Secret %s exists and does not belong to this claim; delete or rename it", client.ObjectKeyFromObject(secret))
	return false, nil
}

// kubeconfigCurrent says whether the claim's kubeconfig Secret current is the one want
// describes (its annotations): for this lab, expiring with the claim, for the server the
// student reaches now.
func kubeconfigCurrent(current, want *corev1.Secret) bool {
	have := current.Annotations
	// A kubeconfig written before labforge recorded the namespace was for a Ready lab,
	// whose namespace is never built again: it matches any.
	madeFor := have[render.AnnotationLabNamespaceUID]
	return have[render.AnnotationExpiresAt] == want.Annotations[render.AnnotationExpiresAt] &&
		have[render.AnnotationLab] == want.Annotations[render.AnnotationLab] &&
		(madeFor == "" || madeFor == want.Annotations[render.AnnotationLabNamespaceUID]) &&
		// A kubeconfig from before labforge recorded its server was for the one public
		// address; one for another node than the lab runs on now is minted again.
		(have[render.AnnotationServer] == "" || have[render.AnnotationServer] == want.Annotations[render.AnnotationServer]) &&
		len(current.Data[render.KubeconfigKey]) > 0
}

// mintKubeconfig returns the claim's kubeconfig Secret: a client certificate from the
// lab's CA for the student's user, expiring with the claim.
func (r *Reconciler) mintKubeconfig(ctx context.Context, s *scope, h *handover, expiresAt metav1.Time) (*corev1.Secret, error) {
	pkiSecret := &corev1.Secret{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: lab.Namespace(s.env.Name), Name: lab.PKISecret}, pkiSecret); err != nil {
		return nil, fmt.Errorf("reading the PKI of lab %s: %w", s.env.Name, err)
	}
	ca, err := pki.ParseKeyPair(pkiSecret.Data[lab.PKICACert], pkiSecret.Data[lab.PKICAKey])
	if err != nil {
		return nil, fmt.Errorf("reading the CA of lab %s: %w", s.env.Name, err)
	}
	user := studentUser(s.claim)
	cert, err := ca.IssueClient(user, []string{StudentGroup}, s.now.Add(-pki.ClockSkew), expiresAt.Time, nil)
	if err != nil {
		return nil, fmt.Errorf("minting the kubeconfig of LabClaim %s/%s: %w", s.claim.Namespace, s.claim.Name, err)
	}
	kubeconfig, err := pki.Kubeconfig(s.env.Name, h.server(), h.serverName, pkiSecret.Data[lab.PKICACert], user, cert)
	if err != nil {
		return nil, err
	}
	return r.withProof(s.claim, render.KubeconfigSecret(s.claim, s.env.Name, string(s.env.Status.NamespaceUID), h.server(), expiresAt, kubeconfig)), nil
}

// server is the lab API's URL as the student reaches it.
func (h *handover) server() string {
	return "https://" + net.JoinHostPort(h.host, strconv.Itoa(int(h.apiPort)))
}

// NodePortRetryInterval is how often a claim waiting for NodePorts tries again on its own.
// Ports freed by labforge's own labs wake it at once (nodePortWaiters); this retry is for
// ports freed by Services of others, which labforge does not watch.
const NodePortRetryInterval = time.Minute

// nodePortAllocationFailure is how kube-apiserver words a NodePort range with no room left
// for a Service's ports (an InternalError, HTTP 500, from its port allocator).
const nodePortAllocationFailure = "failed to allocate a nodePort: range is full"

// nodePortsExhausted says whether err is the API server refusing a Service because its
// NodePort range is full.
func nodePortsExhausted(err error) bool {
	return err != nil && apierrors.IsInternalError(err) && strings.Contains(err.Error(), nodePortAllocationFailure)
}

// nodePortsExhaustedMessage tells the student and the admin what the claim waits for, in
// the API server's own words.
func nodePortsExhaustedMessage(err error) string {
	said := nodePortAllocationFailure
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Message != "" {
		said = status.Status().Message
	}
	return fmt.Sprintf("The host cluster's NodePort range (kube-apiserver --service-node-port-range) has no 2 free ports for the lab's SSH and API (%s); "+
		"the claim waits until another lab releases its ports", said)
}

// requeueAfter is when the claim must be looked at again without any event: at its expiry,
// and sooner while it waits for NodePorts.
func (s *scope) requeueAfter() time.Duration {
	after := s.expiresAt().Sub(s.now)
	if s.pendingReason == labforgev1alpha1.ReasonNodePortsExhausted && after > NodePortRetryInterval {
		after = NodePortRetryInterval
	}
	return after
}

// nodePortWaiters wakes every claim waiting for NodePorts. It runs when a lab's Service is
// deleted (its ports are free once the API server has released them) and when a lab is
// gone for good (its namespace, and every port in it, certainly released), so that a retry
// racing the release still gets a second chance without polling.
func (r *Reconciler) nodePortWaiters(ctx context.Context, _ client.Object) []reconcile.Request {
	var claims labforgev1alpha1.LabClaimList
	if err := r.Client.List(ctx, &claims, client.MatchingFields{index.ClaimWaitingForNodePorts: "true"}, readOnly); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list the LabClaims waiting for NodePorts")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(claims.Items))
	for _, c := range claims.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&c)})
	}
	return reqs
}

// onlyDeletes lets only deletions through: nothing else frees a port.
func onlyDeletes() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		UpdateFunc:  func(event.UpdateEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return true },
	}
}

// nodePortServiceDeleted lets through deletions of NodePort Services only.
func nodePortServiceDeleted() predicate.Predicate {
	return predicate.And(onlyDeletes(), predicate.NewPredicateFuncs(func(o client.Object) bool {
		svc, ok := o.(*corev1.Service)
		return ok && svc.Spec.Type == corev1.ServiceTypeNodePort
	}))
}
