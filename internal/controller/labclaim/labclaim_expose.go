package labclaim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/render"
)

// exposure is what a claim's pass found of its lab's Services and exposed (the claim's
// status.exposed and its ServicesExposed condition); nil when the pass did not look.
type exposure struct {
	ports []labforgev1alpha1.ExposedPort
	// exposable counts the lab's Services of type NodePort or LoadBalancer; exposed those
	// with a host Service.
	exposable, exposed int
	// reason and message say why one is not exposed; empty when all are.
	reason, message string
	// problems are the message's parts, in the order found (exposure.problem).
	problems []string
	// retryAfter is set while a host Service waits for the host's NodePort range.
	retryAfter time.Duration
}

// refusal is a host Service the API server refused, remembered so that the next passes
// do not ask again until something changed: the lab's Services (changes: one that goes
// frees quota and host ports) or, for the host's NodePort range, whose ports other labs
// free too, the time (NodePortRetryInterval).
type refusal struct {
	changes         int64
	at              time.Time
	reason, message string
}

// refusals holds, by host Service (namespace/name), the last refusal of its create.
type refusals struct{ m sync.Map }

func (r *refusals) get(key string) (refusal, bool) {
	v, ok := r.m.Load(key)
	if !ok {
		return refusal{}, false
	}
	return v.(refusal), true
}

// reconcileExposed is the phase of reconcileExposure: a Service the API server refused
// for want of ports is looked at again after its back-off.
func (r *Reconciler) reconcileExposed(ctx context.Context, s *scope) (ctrl.Result, error) {
	if err := r.reconcileExposure(ctx, s); err != nil {
		return ctrl.Result{}, err
	}
	if e := s.exposure; e != nil && e.retryAfter > 0 {
		return ctrl.Result{RequeueAfter: e.retryAfter}, nil
	}
	return ctrl.Result{}, nil
}

// reconcileExposure mirrors the lab's NodePort and LoadBalancer Services to host NodePort
// Services while the lab is claimed, Ready and handed over: one host Service per lab
// Service (render.ExposedService), up to the template's network.maxExposedServices, the
// allow-exposed-services policy for exactly their ports, and a LoadBalancer Service's
// address set inside the lab to the student's. A host Service whose lab Service is gone
// (or no longer a NodePort or LoadBalancer) is deleted. It writes nothing while the lab
// has nothing to expose, and starts no watch for a template that exposes nothing.
func (r *Reconciler) reconcileExposure(ctx context.Context, s *scope) error {
	if r.LabConfig == nil || r.labServices == nil || s.handover == nil || !s.labReady || s.pendingReason != "" || s.refusedReason != "" {
		return nil
	}
	spec, err := r.snapshotOf(ctx, s.env)
	if err != nil {
		return err
	}
	if spec == nil || spec.Network.MaxExposedServices <= 0 {
		// The template exposes nothing (and its labs' quota has no room for it), or the
		// lab has no snapshot of its own to say what it may expose.
		r.labServices.stop(s.env.Name)
		return nil
	}
	limit := int(spec.Network.MaxExposedServices)
	w, err := r.watchLabServices(ctx, s)
	if err != nil {
		return err
	}
	if !w.synced() {
		// Its first list wakes the claim (labServices.ensure).
		return nil
	}
	l := render.Lab{Env: s.env, Template: *spec, Host: r.Host.Network()}
	svcs := w.services()
	want := wantExposure(svcs, limit)
	e := &exposure{exposable: len(svcs)}
	for _, msg := range want.refused {
		e.problem(labforgev1alpha1.ReasonExposureRefused, msg)
	}
	hostSvcs, err := r.exposedServices(ctx, s)
	if err != nil {
		return err
	}
	current, errs := r.withdrawExposed(ctx, s, hostSvcs, want)
	open, exposeErrs := r.exposeWanted(ctx, s, w, l, want, current, e)
	errs = append(errs, exposeErrs...)
	// Said last: the Services within the cap, and what refused them, come first.
	for _, msg := range want.capped {
		e.problem(labforgev1alpha1.ReasonExposureCapReached, msg)
	}
	if err := r.reconcileExposurePolicy(ctx, l, open); err != nil {
		errs = append(errs, err)
	}
	e.message = strings.Join(e.problems, "; ")
	s.exposure = e
	return errors.Join(errs...)
}

// watchLabServices returns the watch of the lab's Services for the claim, starting it
// with the lab's PKI if needed.
func (r *Reconciler) watchLabServices(ctx context.Context, s *scope) (*labWatch, error) {
	pkiSecret := &corev1.Secret{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: lab.Namespace(s.env.Name), Name: lab.PKISecret}, pkiSecret); err != nil {
		return nil, fmt.Errorf("reading the PKI of lab %s: %w", s.env.Name, err)
	}
	return r.labServices.ensure(ctx, s.env.Name, client.ObjectKeyFromObject(s.claim), pkiSecret)
}

// wantedExposure is what a pass means to expose of the lab's Services, and what not.
type wantedExposure struct {
	// services are the lab Services to expose, by their host Service's name.
	services map[string]render.LabService
	// order lists services' names, oldest lab Service first: the order of the claim's
	// status.exposed and of its messages.
	order []string
	// loadBalancers are the LoadBalancer Services among them, by host Service name: their
	// address inside the lab is set to the student's.
	loadBalancers map[string]*corev1.Service
	// refused says why a lab Service cannot be exposed at all (ReasonExposureRefused),
	// capped which are past the template's cap (ReasonExposureCapReached).
	refused, capped []string
}

// wantExposure sorts the lab's Services that may be exposed, oldest first (labWatch.services),
// into those the pass exposes, up to limit, and those it does not: a Service with no port
// or a port the host cannot mirror is refused and takes no place under the cap.
func wantExposure(svcs []*corev1.Service, limit int) wantedExposure {
	want := wantedExposure{services: map[string]render.LabService{}, loadBalancers: map[string]*corev1.Service{}}
	for _, svc := range svcs {
		src := render.LabService{Namespace: svc.Namespace, Name: svc.Name}
		why := ""
		for _, p := range svc.Spec.Ports {
			port := render.LabServicePort{Protocol: p.Protocol, NodePort: p.NodePort}
			if why = render.ValidLabServicePort(port); why != "" {
				break
			}
			src.Ports = append(src.Ports, port)
		}
		if len(svc.Spec.Ports) == 0 {
			why = "it has no ports"
		}
		switch {
		case why != "":
			want.refused = append(want.refused, fmt.Sprintf("Service %s is not exposed: %s", src.Key(), why))
		case len(want.services) >= limit:
			want.capped = append(want.capped, fmt.Sprintf("Service %s is not exposed: the lab exposes at most %d Services (its template's network.maxExposedServices)", src.Key(), limit))
		default:
			name := render.ExposedServiceName(src.Namespace, src.Name)
			want.services[name] = src
			want.order = append(want.order, name)
			if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
				want.loadBalancers[name] = svc
			}
		}
	}
	return want
}

// exposedServices lists the host Services exposing the lab's Services.
func (r *Reconciler) exposedServices(ctx context.Context, s *scope) ([]corev1.Service, error) {
	var hostSvcs corev1.ServiceList
	if err := r.Client.List(ctx, &hostSvcs, client.InNamespace(lab.Namespace(s.env.Name)),
		client.MatchingLabels{render.LabelExposed: "true", labforgev1alpha1.LabelEnvironment: s.env.Name}); err != nil {
		return nil, fmt.Errorf("listing the exposed Services of lab %s: %w", s.env.Name, err)
	}
	return hostSvcs.Items, nil
}

// withdrawExposed deletes the host Services no longer wanted (their lab Service is gone,
// no longer exposable, refused or past the cap) and returns the wanted ones that exist,
// by name. A withdrawn Service's refusal is forgotten: it is asked afresh when wanted
// again.
func (r *Reconciler) withdrawExposed(ctx context.Context, s *scope, hostSvcs []corev1.Service, want wantedExposure) (map[string]*corev1.Service, []error) {
	current := map[string]*corev1.Service{}
	var errs []error
	for i := range hostSvcs {
		h := &hostSvcs[i]
		if _, ok := want.services[h.Name]; ok {
			current[h.Name] = h
			continue
		}
		if err := r.Client.Delete(ctx, h, client.Preconditions{UID: &h.UID}); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("deleting Service %s/%s: %w", h.Namespace, h.Name, err))
			continue
		}
		r.exposureRefusals.m.Delete(h.Namespace + "/" + h.Name)
		r.Recorder.Eventf(s.claim, nil, corev1.EventTypeNormal, labforgev1alpha1.ReasonServiceWithdrawn, "Withdraw",
			"Service %s of the lab is no longer exposed", h.Annotations[render.AnnotationLabService])
	}
	return current, errs
}

// exposeWanted writes the host Service of each wanted lab Service, oldest first, records
// the ports it got in e and sets a LoadBalancer Service's address in the lab, and returns
// the lab ports exposed: those the policy opens. A LoadBalancer Service whose address
// cannot be set is still exposed; the next change of the lab's Services tries again.
func (r *Reconciler) exposeWanted(ctx context.Context, s *scope, w *labWatch, l render.Lab, want wantedExposure,
	current map[string]*corev1.Service, e *exposure) ([]render.LabServicePort, []error) {
	var open []render.LabServicePort
	var errs []error
	for _, name := range want.order {
		src := want.services[name]
		hostSvc, err := r.exposeService(ctx, s, w, l, src, current[name], e)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if hostSvc == nil {
			continue
		}
		e.exposed++
		open = append(open, src.Ports...)
		for i, p := range hostSvc.Spec.Ports {
			if i >= len(src.Ports) || p.NodePort == 0 {
				continue
			}
			e.ports = append(e.ports, labforgev1alpha1.ExposedPort{
				Service: src.Key(), Protocol: p.Protocol, LabNodePort: src.Ports[i].NodePort, NodePort: p.NodePort,
				Address: net.JoinHostPort(s.handover.host, strconv.Itoa(int(p.NodePort))),
			})
		}
		if svc := want.loadBalancers[name]; svc != nil {
			if err := setLoadBalancerAddress(ctx, w, svc, s.handover.host); err != nil {
				ctrl.LoggerFrom(ctx).Info("Could not set the address of a LoadBalancer Service in the lab", "lab", s.env.Name, "service", src.Key(), "error", err.Error())
			}
		}
	}
	return open, errs
}

// exposeService writes the host Service of one lab Service and returns it as the API
// server has it (its NodePorts allocated), or nil when it was refused: the lab
// namespace's quota or the host's NodePort range (problem says so). A refusal is not asked
// again until the lab's Services changed or, for the range, NodePortRetryInterval passed:
// a refused create is a write too, and a claim's other events must not repeat it.
func (r *Reconciler) exposeService(ctx context.Context, s *scope, w *labWatch, l render.Lab, src render.LabService,
	current *corev1.Service, e *exposure) (*corev1.Service, error) {
	desired := render.ExposedService(l, src)
	key := desired.Namespace + "/" + desired.Name
	if current == nil {
		if ref, ok := r.exposureRefusals.get(key); ok {
			wait := NodePortRetryInterval - s.now.Sub(ref.at)
			switch {
			case ref.reason == labforgev1alpha1.ReasonNodePortQuotaExceeded && ref.changes == w.changes.Load():
				e.problem(ref.reason, ref.message)
				return nil, nil
			case ref.reason == labforgev1alpha1.ReasonNodePortsExhausted && ref.changes == w.changes.Load() && wait > 0:
				e.problem(ref.reason, ref.message)
				e.retry(wait)
				return nil, nil
			}
		}
	}
	var observed client.Object
	if current != nil {
		observed = current
	}
	applied, err := r.Applier.Apply(ctx, desired, observed)
	switch {
	case err == nil:
	case apierrors.IsForbidden(err) && strings.Contains(err.Error(), "exceeded quota"):
		msg := fmt.Sprintf("Service %s is not exposed: the lab's services.nodeports quota has no room for its %d ports", src.Key(), len(src.Ports))
		r.exposureRefusals.m.Store(key, refusal{changes: w.changes.Load(), at: s.now, reason: labforgev1alpha1.ReasonNodePortQuotaExceeded, message: msg})
		e.problem(labforgev1alpha1.ReasonNodePortQuotaExceeded, msg)
		return nil, nil
	case nodePortsExhausted(err):
		msg := fmt.Sprintf("Service %s is not exposed: the host cluster's NodePort range has no free port; it is tried again in %s or when a lab's Service goes",
			src.Key(), NodePortRetryInterval)
		r.exposureRefusals.m.Store(key, refusal{changes: w.changes.Load(), at: s.now, reason: labforgev1alpha1.ReasonNodePortsExhausted, message: msg})
		e.problem(labforgev1alpha1.ReasonNodePortsExhausted, msg)
		e.retry(NodePortRetryInterval)
		return nil, nil
	default:
		return nil, err
	}
	r.exposureRefusals.m.Delete(key)
	if !applied {
		return current, nil
	}
	if current == nil {
		r.Recorder.Eventf(s.claim, nil, corev1.EventTypeNormal, labforgev1alpha1.ReasonServiceExposed, "Expose",
			"Service %s of the lab is exposed on %s", src.Key(), exposedAddresses(s.handover.host, desired))
	}
	return desired, nil
}

// exposedAddresses lists where a host Service is reached, for an event.
func exposedAddresses(host string, svc *corev1.Service) string {
	var out []string
	for _, p := range svc.Spec.Ports {
		out = append(out, net.JoinHostPort(host, strconv.Itoa(int(p.NodePort)))+"/"+string(p.Protocol))
	}
	return strings.Join(out, ", ")
}

// problem notes why a lab Service is not exposed: the condition's reason is the first
// problem's, its message all of them.
func (e *exposure) problem(reason, msg string) {
	if e.reason == "" {
		e.reason = reason
	}
	e.problems = append(e.problems, msg)
}

// retry asks for the pass again after at most after.
func (e *exposure) retry(after time.Duration) {
	if e.retryAfter == 0 || after < e.retryAfter {
		e.retryAfter = after
	}
}

// reconcileExposurePolicy keeps allow-exposed-services opening exactly the exposed ports,
// and deletes it when none is.
func (r *Reconciler) reconcileExposurePolicy(ctx context.Context, l render.Lab, ports []render.LabServicePort) error {
	if p := render.ExposurePolicy(l, ports); p != nil {
		return r.Applier.ApplyCurrent(ctx, r.Client, p, &networkingv1.NetworkPolicy{})
	}
	current := &networkingv1.NetworkPolicy{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: l.Namespace(), Name: render.PolicyExposedServices}, current)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading NetworkPolicy %s/%s: %w", l.Namespace(), render.PolicyExposedServices, err)
	}
	if err := r.Client.Delete(ctx, current, client.Preconditions{UID: &current.UID}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting NetworkPolicy %s/%s: %w", l.Namespace(), render.PolicyExposedServices, err)
	}
	return nil
}

// setLoadBalancerAddress gives a LoadBalancer Service of the lab the student's address as
// its ingress, as a cloud provider's load balancer would (cloud-provider-kubevirt reports
// its infrastructure Service's ingress there), unless it has it already. The operator's
// role in the lab may update services/status only: what it sends back is the Service as
// the watch last saw it, under its resourceVersion, so a Service changed meanwhile is left
// for the next event.
func setLoadBalancerAddress(ctx context.Context, w *labWatch, svc *corev1.Service, host string) error {
	ingress := corev1.LoadBalancerIngress{Hostname: host}
	if addr, err := netip.ParseAddr(host); err == nil {
		ingress = corev1.LoadBalancerIngress{IP: addr.String()}
	}
	if got := svc.Status.LoadBalancer.Ingress; len(got) == 1 && got[0].IP == ingress.IP && got[0].Hostname == ingress.Hostname {
		return nil
	}
	updated := svc.DeepCopy()
	updated.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{ingress}
	_, err := w.client.CoreV1().Services(svc.Namespace).UpdateStatus(ctx, updated, metav1.UpdateOptions{FieldManager: "labforge"})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// setExposure writes what the pass exposed into the claim's status: status.exposed and
// the ServicesExposed condition, which is there only while the lab has Services to
// expose. A pass that did not look keeps what the status says; an expired claim exposes
// nothing.
func setExposure(s *scope, _ bool) {
	set := s.setCondition
	st := &s.claim.Status
	if s.expired {
		st.Exposed = nil
		meta.RemoveStatusCondition(&st.Conditions, labforgev1alpha1.ConditionServicesExposed)
		return
	}
	e := s.exposure
	if e == nil {
		return
	}
	st.Exposed = e.ports
	switch {
	case e.exposable == 0:
		meta.RemoveStatusCondition(&st.Conditions, labforgev1alpha1.ConditionServicesExposed)
	case e.reason == "":
		set(labforgev1alpha1.ConditionServicesExposed, metav1.ConditionTrue, labforgev1alpha1.ReasonExposed,
			fmt.Sprintf("All %d NodePort and LoadBalancer Services of the lab are exposed (status.exposed)", e.exposed))
	default:
		set(labforgev1alpha1.ConditionServicesExposed, metav1.ConditionFalse, e.reason,
			fmt.Sprintf("%d of %d NodePort and LoadBalancer Services of the lab are exposed. %s", e.exposed, e.exposable, e.message))
	}
}

// recordExposure emits a warning when the claim's exposure newly falls short, once per
// reason and message: the student's describe shows why a Service is not reachable.
func (r *Reconciler) recordExposure(before, after *labforgev1alpha1.LabClaim) {
	now := meta.FindStatusCondition(after.Status.Conditions, labforgev1alpha1.ConditionServicesExposed)
	if now == nil || now.Status != metav1.ConditionFalse {
		return
	}
	if was := meta.FindStatusCondition(before.Status.Conditions, labforgev1alpha1.ConditionServicesExposed); was != nil &&
		was.Reason == now.Reason && was.Message == now.Message {
		return
	}
	r.Recorder.Eventf(after, nil, corev1.EventTypeWarning, now.Reason, "Expose", "%s", now.Message)
}
