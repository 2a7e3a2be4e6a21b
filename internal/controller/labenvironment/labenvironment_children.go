package labenvironment

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/hostcluster"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/labprobe"
	"github.com/labforge/labforge/internal/pki"
	"github.com/labforge/labforge/internal/render"
	"github.com/labforge/labforge/internal/render/cloudinit"
	"github.com/labforge/labforge/internal/templatecheck"
)

// caValidity is how long a lab's CA is valid: far longer than any lab lives.
const caValidity = 365 * 24 * time.Hour

// scope is what one pass observed and decided about a lab.
type scope struct {
	env *labforgev1alpha1.LabEnvironment
	now time.Time
	// host is the host's network as this pass read it: one pass renders from one view.
	host hostcluster.Network

	// template is the spec the lab is built from (its snapshot once taken), and
	// templateGeneration the generation it had.
	template           *labforgev1alpha1.LabTemplateSpec
	templateGeneration int64
	// templateReason and templateMessage say why no lab can be built (terminal until the
	// template changes).
	templateReason, templateMessage string

	namespaceTerminating bool
	// foreignNamespace: the lab's namespace exists and labforge did not make it for this
	// lab (namespaceIsLabs); nothing in it is used, written or deleted.
	foreignNamespace bool
	// namespaceLost: the namespace of a lab already handed to a claim was deleted (by
	// hand); such a lab is reported lost, never rebuilt behind the student's back.
	namespaceLost bool
	// rebuilt: the namespace is not the one the lab became Ready in (it was deleted by
	// hand and is being built again), so that Ready no longer holds for the new lab, whose
	// boot started when namespaceCreated.
	rebuilt          bool
	namespaceCreated time.Time
	// namespaceUID is the UID of the lab's namespace as this pass found or created it.
	namespaceUID types.UID
	provisioned  bool
	vms          []render.Node
	vmis         map[string]*kubevirtv1.VirtualMachineInstance

	probed   bool
	probe    labprobe.Result
	probeErr error
	// probePending: the lab's VMs run and its first probe has not answered yet.
	probePending bool
}

// reconcileNormal runs the provisioning phases in order; each phase returns whether the
// next may run. Guards (quota, limit range, network policies) exist before any VM.
func (r *Reconciler) reconcileNormal(ctx context.Context, s *scope) (ctrl.Result, error) {
	// Before anything is read from the namespace (the template snapshot first).
	if err := r.checkNamespace(ctx, s); err != nil || s.foreignNamespace {
		return ctrl.Result{}, err
	}
	if ok, err := r.reconcileTemplate(ctx, s); !ok || err != nil {
		return ctrl.Result{}, err
	}
	l := render.Lab{Env: s.env, Template: *s.template, Host: s.host, OperatorNamespace: r.OperatorNamespace,
		NamespaceProof: r.Prover.Proof(namespaceIdentity(s.env))}
	if ok, err := r.reconcileNamespace(ctx, s, l); !ok || err != nil {
		// A namespace deleted by hand must be gone before the lab can be rebuilt; its
		// deletion event wakes this lab up.
		return ctrl.Result{}, err
	}
	if err := r.reconcileGuards(ctx, l); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.reconcileSnapshot(ctx, s, l); err != nil {
		return ctrl.Result{}, err
	}
	material, err := r.reconcilePKI(ctx, s, l)
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.reconcileMachines(ctx, s, l, material); err != nil {
		return ctrl.Result{}, err
	}
	s.provisioned = true
	if err := r.observeMachines(ctx, s, l); err != nil {
		return ctrl.Result{}, err
	}
	r.probeLab(ctx, s, material)
	return r.nextCheck(s), nil
}

// reconcileTemplate finds the spec to build from: the lab's own snapshot when it has one,
// else the LabTemplate as it is now, checked like the LabTemplate controller checks it.
func (r *Reconciler) reconcileTemplate(ctx context.Context, s *scope) (bool, error) {
	snapshot := &corev1.ConfigMap{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: namespaceOf(s.env), Name: render.TemplateSnapshot}, snapshot)
	owned := false
	if err == nil {
		var adoptErr error
		if owned, adoptErr = r.claimChild(ctx, s.env, snapshot); adoptErr != nil {
			return false, adoptErr
		}
	}
	switch {
	case owned:
		spec, gen, err := render.TemplateFromSnapshot(snapshot)
		if err != nil {
			return false, err
		}
		s.template, s.templateGeneration = &spec, gen
		return true, nil
	case err != nil && !apierrors.IsNotFound(err):
		return false, fmt.Errorf("reading the template snapshot of LabEnvironment %s: %w", s.env.Name, err)
	}

	tmpl := &labforgev1alpha1.LabTemplate{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: s.env.Spec.TemplateRef.Name}, tmpl); err != nil {
		if apierrors.IsNotFound(err) {
			s.templateReason = labforgev1alpha1.ReasonTemplateNotFound
			s.templateMessage = fmt.Sprintf("LabTemplate %s does not exist", s.env.Spec.TemplateRef.Name)
			return false, nil
		}
		return false, fmt.Errorf("reading LabTemplate %s: %w", s.env.Spec.TemplateRef.Name, err)
	}
	if _, problems := templatecheck.Check(&tmpl.Spec, s.host); len(problems) > 0 {
		s.templateReason = labforgev1alpha1.ReasonInvalidTemplate
		s.templateMessage = fmt.Sprintf("LabTemplate %s cannot be built: %s", tmpl.Name, strings.Join(problems, "; "))
		return false, nil
	}
	spec := tmpl.Spec.DeepCopy()
	s.template, s.templateGeneration = spec, tmpl.Generation
	return true, nil
}

// checkNamespace finds out whether a namespace of the lab's name that exists (and is not
// being deleted) is the lab's; if not, the lab stops there (foreignNamespace).
func (r *Reconciler) checkNamespace(ctx context.Context, s *scope) error {
	ns := &corev1.Namespace{}
	err := r.Client.Get(ctx, client.ObjectKey{Name: namespaceOf(s.env)}, ns)
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("reading namespace %s: %w", namespaceOf(s.env), err)
	}
	s.foreignNamespace = ns.DeletionTimestamp.IsZero() && !r.namespaceIsLabs(ns, s.env)
	if s.foreignNamespace && s.env.Status.TemplateGeneration == 0 {
		// The lab fails as a lab of its template's generation would: its pool keeps it as
		// evidence of failure (labpool's failureEvidence) rather than deleting it and
		// creating it again under the same name, into the same namespace.
		tmpl := &labforgev1alpha1.LabTemplate{}
		if err := r.Client.Get(ctx, client.ObjectKey{Name: s.env.Spec.TemplateRef.Name}, tmpl); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("reading LabTemplate %s: %w", s.env.Spec.TemplateRef.Name, err)
		}
		s.templateGeneration = tmpl.Generation
	}
	return nil
}

// reconcileNamespace creates the lab's namespace, or finds it. A namespace deleted by hand
// is waited for and built again, unless the lab was handed to a claim: then it is lost.
func (r *Reconciler) reconcileNamespace(ctx context.Context, s *scope, l render.Lab) (bool, error) {
	ns := &corev1.Namespace{}
	err := r.Client.Get(ctx, client.ObjectKey{Name: l.Namespace()}, ns)
	switch {
	case apierrors.IsNotFound(err):
		if handedOver(s.env) {
			s.namespaceLost = true
			return false, nil
		}
		s.rebuilt, s.namespaceCreated = s.env.Status.ReadyTime != nil, s.now
		created := render.Namespace(l)
		_, err := r.Applier.Apply(ctx, created, nil)
		s.namespaceUID = created.UID
		return err == nil, err
	case err != nil:
		return false, fmt.Errorf("reading namespace %s: %w", l.Namespace(), err)
	}
	if !ns.DeletionTimestamp.IsZero() {
		if handedOver(s.env) && r.namespaceIsLabs(ns, s.env) {
			s.namespaceLost = true
			return false, nil
		}
		s.namespaceTerminating = true
		return false, nil
	}
	owned := false
	if r.namespaceIsLabs(ns, s.env) {
		if owned, err = r.claimChild(ctx, s.env, ns); err != nil {
			return false, err
		}
	}
	if !owned {
		return false, fmt.Errorf("namespace %s exists and does not belong to LabEnvironment %s", l.Namespace(), s.env.Name)
	}
	s.namespaceCreated, s.namespaceUID = ns.CreationTimestamp.Time, ns.UID
	if ready := s.env.Status.ReadyTime; ready != nil {
		if was := s.env.Status.NamespaceUID; was != "" {
			s.rebuilt = ns.UID != was
		} else {
			// A lab that became Ready before status.namespaceUID existed: its namespace
			// was built again if it is younger than that Ready.
			s.rebuilt = ns.CreationTimestamp.After(ready.Time)
		}
	}
	_, err = r.Applier.Apply(ctx, render.Namespace(l), ns)
	return err == nil, err
}

// handedOver says whether the lab was Ready when a claim took it: the student has it.
func handedOver(env *labforgev1alpha1.LabEnvironment) bool {
	return env.Spec.ClaimRef != nil && env.Status.ReadyTime != nil
}

// reconcileGuards writes what confines the lab before anything runs in it, and keeps it
// exactly as rendered: a guard that holds anything more or less (a narrowed selector, a
// widened port, an extra peer, whoever wrote it) is replaced whole (decision 60).
func (r *Reconciler) reconcileGuards(ctx context.Context, l render.Lab) error {
	var errs []error
	quota := render.ResourceQuota(l)
	errs = append(errs, r.Applier.ExactCurrent(ctx, r.Client, r.APIReader, quota, &corev1.ResourceQuota{}))
	limits := render.LimitRange(l)
	errs = append(errs, r.Applier.ExactCurrent(ctx, r.Client, r.APIReader, limits, &corev1.LimitRange{}))
	for _, p := range render.NetworkPolicies(l) {
		errs = append(errs, r.Applier.ExactCurrent(ctx, r.Client, r.APIReader, p, &networkingv1.NetworkPolicy{}))
	}
	return errors.Join(errs...)
}

// reconcileSnapshot records the template the lab is built from, once.
func (r *Reconciler) reconcileSnapshot(ctx context.Context, s *scope, l render.Lab) error {
	cm, err := render.TemplateSnapshotConfigMap(l, s.templateGeneration)
	if err != nil {
		return err
	}
	return r.createOnce(ctx, s.env, cm, &corev1.ConfigMap{})
}

// reconcilePKI returns the lab's key material, minting it the first time. The Secret is
// created, never updated: if a create races with an earlier one (a crash, a stale cache),
// the stored Secret wins and is read back from the API server, so a lab never has two CAs.
func (r *Reconciler) reconcilePKI(ctx context.Context, s *scope, l render.Lab) (render.PKI, error) {
	key := client.ObjectKey{Namespace: l.Namespace(), Name: lab.PKISecret}
	secret := &corev1.Secret{}
	err := r.Client.Get(ctx, key, secret)
	if apierrors.IsNotFound(err) {
		material, mintErr := r.mintPKI(s)
		if mintErr != nil {
			return render.PKI{}, mintErr
		}
		desired := render.PKISecret(l, material)
		createErr := r.Client.Create(ctx, desired)
		if createErr == nil {
			// No event: every lab mints its PKI once, and LabReady tells the rest.
			return material, nil
		}
		if !apierrors.IsAlreadyExists(createErr) {
			return render.PKI{}, fmt.Errorf("creating Secret %s: %w", key, createErr)
		}
		err = r.APIReader.Get(ctx, key, secret)
	}
	if err != nil {
		return render.PKI{}, fmt.Errorf("reading Secret %s: %w", key, err)
	}
	if owned, err := r.claimChild(ctx, s.env, secret); err != nil {
		return render.PKI{}, err
	} else if !owned {
		return render.PKI{}, fmt.Errorf("secret %s does not belong to LabEnvironment %s", key, s.env.Name)
	}
	return render.PKIFromSecret(secret)
}

func (r *Reconciler) mintPKI(s *scope) (render.PKI, error) {
	ca, err := pki.NewCA("labforge-"+s.env.Name, s.now, caValidity, r.Rand)
	if err != nil {
		return render.PKI{}, fmt.Errorf("minting the CA of LabEnvironment %s: %w", s.env.Name, err)
	}
	operator, err := ca.IssueClient(lab.OperatorUser, nil, s.now.Add(-pki.ClockSkew), ca.Cert.NotAfter, r.Rand)
	if err != nil {
		return render.PKI{}, fmt.Errorf("minting the operator credential of LabEnvironment %s: %w", s.env.Name, err)
	}
	token, err := pki.NewBootstrapToken(r.Rand)
	if err != nil {
		return render.PKI{}, err
	}
	caKey, err := ca.KeyPEM()
	if err != nil {
		return render.PKI{}, err
	}
	operatorKey, err := operator.KeyPEM()
	if err != nil {
		return render.PKI{}, err
	}
	return render.PKI{
		CACert: ca.CertPEM(), CAKey: caKey, BootstrapToken: token,
		OperatorCert: operator.CertPEM(), OperatorKey: operatorKey,
	}, nil
}

// reconcileMachines writes the access-credentials Secret, the cloud-init Secrets, the API
// Service and the VMs.
func (r *Reconciler) reconcileMachines(ctx context.Context, s *scope, l render.Lab, material render.PKI) error {
	if err := r.createOnce(ctx, s.env, render.AccessCredentialsSecret(l, nil), &corev1.Secret{}); err != nil {
		return err
	}
	var errs []error
	nodes := l.Nodes()
	for _, n := range nodes {
		if exists, err := r.existingUserData(ctx, s, l, n); exists || err != nil {
			errs = append(errs, err)
			continue
		}
		ca, err := pki.ParseKeyPair(material.CACert, material.CAKey)
		if err != nil {
			return fmt.Errorf("reading the CA of LabEnvironment %s: %w", s.env.Name, err)
		}
		userData, err := cloudinit.UserData(userDataInput(s, n, material, ca))
		if err != nil {
			errs = append(errs, fmt.Errorf("rendering the user-data of %s/%s: %w", l.Namespace(), n.Name, err))
			continue
		}
		if err := r.Client.Create(ctx, render.UserDataSecret(l, n.Name, userData)); err != nil && !apierrors.IsAlreadyExists(err) {
			errs = append(errs, fmt.Errorf("creating the user-data Secret of %s/%s: %w", l.Namespace(), n.Name, err))
		}
	}
	errs = append(errs, r.reconcileAPIService(ctx, l))
	if err := errors.Join(errs...); err != nil {
		// Never boot a VM whose user-data is missing or stale.
		return err
	}
	for _, vm := range render.VirtualMachines(l) {
		errs = append(errs, r.Applier.ApplyCurrent(ctx, r.Client, vm, &kubevirtv1.VirtualMachine{}))
	}
	s.vms = nodes
	return errors.Join(errs...)
}

// existingUserData says whether node n's user-data Secret exists. A VM reads its user-data
// at first boot only: the Secret is written once and immutable, so an existing one is
// never rendered or compared again (the cache holds its metadata only:
// manager.dropUserData). It must be the lab's, or an orphan labelled as the lab's
// (adopted here).
func (r *Reconciler) existingUserData(ctx context.Context, s *scope, l render.Lab, n render.Node) (bool, error) {
	existing := &corev1.Secret{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: l.Namespace(), Name: lab.UserDataSecret(n.Name)}, existing)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading the user-data Secret of %s/%s: %w", l.Namespace(), n.Name, err)
	}
	if owned, err := r.claimChild(ctx, s.env, existing); err != nil {
		return true, err
	} else if !owned {
		return true, fmt.Errorf("%s/%s exists and does not belong to LabEnvironment %s", existing.Namespace, existing.Name, s.env.Name)
	}
	return true, nil
}

// userDataInput is what node n's user-data is rendered from: only the control plane
// gets the lab CA's key.
func userDataInput(s *scope, n render.Node, material render.PKI, ca *pki.KeyPair) cloudinit.Input {
	in := cloudinit.Input{
		Environment:    s.env.Name,
		Template:       *s.template,
		Node:           cloudinit.Node{Name: n.Name, Role: n.Role},
		CACertPEM:      material.CACert,
		BootstrapToken: material.BootstrapToken,
		TokenTTL:       s.template.BootTimeout.Duration + 10*time.Minute,
		DiscoveryHash:  pki.DiscoveryHash(ca.Cert),
		ClusterDomain:  s.host.ClusterDomain,
	}
	if n.Role == lab.RoleControlPlane {
		in.CAKeyPEM = material.CAKey
	}
	return in
}

// reconcileAPIService applies the lab's in-cluster API Service until the lab is handed
// over: the claim controller then makes it a NodePort Service (render.ExposedAPIService),
// and it is the claim's from then on. Applying the warm lab's Service over it would take
// the student's NodePorts away.
func (r *Reconciler) reconcileAPIService(ctx context.Context, l render.Lab) error {
	desired := render.APIService(l)
	current := &corev1.Service{}
	var observed client.Object
	switch err := r.Client.Get(ctx, client.ObjectKeyFromObject(desired), current); {
	case err == nil && current.Spec.Type == corev1.ServiceTypeNodePort:
		return nil
	case err == nil:
		observed = current
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("reading Service %s/%s: %w", desired.Namespace, desired.Name, err)
	}
	_, err := r.Applier.Apply(ctx, desired, observed)
	return err
}

// observeMachines reads the lab's VMIs, as KubeVirt (or the simulated backend) reports them.
func (r *Reconciler) observeMachines(ctx context.Context, s *scope, l render.Lab) error {
	var list kubevirtv1.VirtualMachineInstanceList
	if err := r.Client.List(ctx, &list, client.InNamespace(l.Namespace())); err != nil {
		return fmt.Errorf("listing the VMIs of LabEnvironment %s: %w", s.env.Name, err)
	}
	s.vmis = map[string]*kubevirtv1.VirtualMachineInstance{}
	for i := range list.Items {
		s.vmis[list.Items[i].Name] = &list.Items[i]
	}
	return nil
}

// probeLab asks the lab whether its bootstrap finished, once all its VMs run. A lab that
// said so once stays bootstrapped: a student may break its API server on purpose.
func (r *Reconciler) probeLab(ctx context.Context, s *scope, material render.PKI) {
	if bootstrapDone(s) || !allRunning(s) {
		return
	}
	// The probe runs on the pool's goroutines, never on this reconcile worker (decision
	// 55): this pass gets the lab's latest answer, waiting briefly for a lab that answers
	// promptly, and an answer that comes later wakes the lab.
	answer, known := r.probes.Probe(ctx, s.env.Name, labprobe.Credentials{
		CACertPEM: material.CACert, ClientCertPEM: material.OperatorCert, ClientKeyPEM: material.OperatorKey,
	})
	if !known {
		s.probePending = true
		return
	}
	s.probed = true
	// Sanitised again: the Prober is an interface, and the lab is the student's.
	s.probe, s.probeErr = answer.Result, labprobe.SanitizeError(answer.Err)
	if s.probeErr != nil {
		ctrl.LoggerFrom(ctx).V(4).Info("Probed lab API", "error", s.probeErr.Error())
	}
	if bootstrapSucceeded(s) {
		// Never probed again (see bootstrapDone): its TLS client would only take memory,
		// a thousand Ready labs' worth of parsed certificates.
		r.probes.Forget(s.env.Name)
	}
}

// nextCheck says when to look again without an event: the next probe of a booting lab,
// or the boot deadline.
func (r *Reconciler) nextCheck(s *scope) ctrl.Result {
	if bootstrapDone(s) || bootstrapSucceeded(s) || bootstrapFailed(s) {
		return ctrl.Result{}
	}
	deadline := s.bootStarted().Add(s.template.BootTimeout.Duration)
	wait := deadline.Sub(s.now)
	if wait <= 0 {
		return ctrl.Result{}
	}
	if allRunning(s) && r.ProbeInterval < wait {
		wait = r.ProbeInterval
	}
	return ctrl.Result{RequeueAfter: wait}
}

// createOnce creates obj unless it exists: for objects whose content is fixed at birth or
// written by someone else later (the access-credentials Secret, at claim time). One that
// exists must be env's (or an orphan labelled as env's, adopted here).
func (r *Reconciler) createOnce(ctx context.Context, env *labforgev1alpha1.LabEnvironment, desired, holder client.Object) error {
	err := r.Client.Get(ctx, client.ObjectKeyFromObject(desired), holder)
	if err == nil {
		owned, err := r.claimChild(ctx, env, holder)
		if err == nil && !owned {
			err = fmt.Errorf("%s/%s exists and does not belong to LabEnvironment %s", desired.GetNamespace(), desired.GetName(), env.Name)
		}
		return err
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading %s/%s: %w", desired.GetNamespace(), desired.GetName(), err)
	}
	if err := r.Client.Create(ctx, desired); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating %s/%s: %w", desired.GetNamespace(), desired.GetName(), err)
	}
	return nil
}

// bootStarted is when the lab's boot began, which its boot timeout counts from: its
// creation, or for a lab being rebuilt, the creation of its new namespace.
func (s *scope) bootStarted() time.Time {
	if s.rebuilt && !s.namespaceCreated.IsZero() {
		return s.namespaceCreated
	}
	return s.env.CreationTimestamp.Time
}

func namespaceOf(env *labforgev1alpha1.LabEnvironment) string { return lab.Namespace(env.Name) }

// ownedBy says whether obj's controller is env (same UID, not just the same name).
func ownedBy(obj metav1.Object, env *labforgev1alpha1.LabEnvironment) bool {
	ref := metav1.GetControllerOf(obj)
	return ref != nil && ref.UID == env.UID
}
