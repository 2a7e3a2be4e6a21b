package simulator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// What KubeVirt's VMI controller reports when it cannot create a launcher pod
// (kubevirt/kubevirt pkg/virt-controller/watch/vmi: sync and updateStatus): a Warning
// event FailedCreate "Error creating pod: <the API server's error>", and the VMI condition
// Synchronized=False with reason FailedCreate, which it removes once a sync succeeds. The
// VMI stays Pending.
const (
	// ReasonFailedCreate is the reason of the event and of the Synchronized condition.
	ReasonFailedCreate = "FailedCreate"
)

// Backoff between two attempts to create a refused launcher pod: doubling from
// refusedBackoffMin to refusedBackoffMax. KubeVirt retries through its work queue's
// rate limiter; whatever other event wakes the VM in between (the VMI's own status
// write, a resync) does not make the simulator try again sooner.
const (
	refusedBackoffMin = time.Second
	refusedBackoffMax = 5 * time.Minute
)

// refusals remembers, per VMI, when its launcher pod may be tried again.
type refusals struct {
	mu    sync.Mutex
	byUID map[types.UID]refusal
}

type refusal struct {
	next    time.Time
	backoff time.Duration
}

// wait returns how long until the VMI's next attempt (zero: now).
func (r *refusals) wait(uid types.UID, now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	f, ok := r.byUID[uid]
	if !ok || !now.Before(f.next) {
		return 0
	}
	return f.next.Sub(now)
}

// refused records a refused attempt and returns the wait before the next one.
func (r *refusals) refused(uid types.UID, now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byUID == nil {
		r.byUID = map[types.UID]refusal{}
	}
	f := r.byUID[uid]
	switch {
	case f.backoff == 0:
		f.backoff = refusedBackoffMin
	case f.backoff < refusedBackoffMax:
		f.backoff = min(2*f.backoff, refusedBackoffMax)
	}
	f.next = now.Add(f.backoff)
	r.byUID[uid] = f
	return f.backoff
}

func (r *refusals) forget(uid types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.byUID, uid)
}

// Attempts counts the launcher pod creates the simulator sent to the API server in
// namespace, refused or not, for tests that check nothing retries hot.
func (s *Simulator) Attempts(namespace string) int64 {
	s.podCreatesMu.Lock()
	defer s.podCreatesMu.Unlock()
	return s.podCreates[namespace]
}

// launcherPod returns vmi's running launcher pod, creating, binding and starting it as
// KubeVirt, the scheduler and the kubelet would. It returns nil and how long to wait
// when there is none yet: the cache has not shown the pod just created, or the API
// server refused it (reported on the VMI, and tried again after a backoff).
func (s *Simulator) launcherPod(ctx context.Context, vm *kubevirtv1.VirtualMachine, vmi *kubevirtv1.VirtualMachineInstance) (*corev1.Pod, time.Duration, error) {
	key := client.ObjectKeyFromObject(vmi)
	if wait, _ := s.pending.Wait(kindPod, key); wait > 0 {
		return nil, wait, nil
	}
	var pods corev1.PodList
	if err := s.client.List(ctx, &pods, client.InNamespace(vmi.Namespace),
		client.MatchingLabels{kubevirtv1.CreatedByLabel: string(vmi.UID)}); err != nil {
		return nil, 0, fmt.Errorf("listing the launcher pods of VirtualMachineInstance %s/%s: %w", vmi.Namespace, vmi.Name, err)
	}
	var pod *corev1.Pod
	for i := range pods.Items {
		if metav1.IsControlledBy(&pods.Items[i], vmi) && pods.Items[i].DeletionTimestamp.IsZero() {
			pod = pods.Items[i].DeepCopy()
			break
		}
	}
	if pod == nil && phaseIndex[vmi.Status.Phase] >= phaseIndex[kubevirtv1.Scheduled] {
		// KubeVirt creates a VMI's pod only before it is scheduled; a pod gone under a
		// scheduled or running VMI (its namespace being deleted, mostly) is not made
		// again. KubeVirt then fails the VMI; the simulator leaves it (see docs/labs.md).
		ctrl.LoggerFrom(ctx).V(1).Info("The launcher Pod of a scheduled VirtualMachineInstance is gone; not creating another", "vmi", vmi.Name)
		return nil, 0, nil
	}
	if pod == nil {
		if wait := s.refused.wait(vmi.UID, time.Now()); wait > 0 {
			return nil, wait, nil
		}
		created, err := s.createLauncherPod(ctx, vm, vmi)
		if err != nil || created == nil {
			// Refused: come back when the backoff ends (zero for a namespace that is
			// being deleted, where retrying would only be refused again).
			return nil, s.refused.wait(vmi.UID, time.Now()), err
		}
		pod = created
	}
	if pod.Spec.NodeName == "" {
		n := nodeFor(string(vmi.UID))
		binding := &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: n.Name},
		}
		if err := s.client.SubResource("binding").Create(ctx, pod, binding); err != nil {
			return nil, 0, fmt.Errorf("binding Pod %s/%s to %s: %w", pod.Namespace, pod.Name, n.Name, err)
		}
		pod.Spec.NodeName = n.Name
	}
	if pod.Status.Phase != corev1.PodRunning {
		ip, err := s.ips.assign(ctx, vmi, s.listVMIs)
		if err != nil {
			return nil, 0, err
		}
		n, _ := nodeByName(pod.Spec.NodeName)
		want := pod.DeepCopy()
		setPodRunning(&want.Status, n.InternalIP, ip, metav1.Now())
		if err := s.client.Status().Patch(ctx, want, client.MergeFrom(pod)); err != nil {
			return nil, 0, fmt.Errorf("updating Pod %s/%s status: %w", pod.Namespace, pod.Name, err)
		}
		pod = want
		s.pending.Expect(kindPod, podTracked(pod, vmi))
	}
	return pod, 0, nil
}

// createLauncherPod renders vmi's launcher pod and creates it through the API server,
// where LimitRange, ResourceQuota and Pod Security admission decide as on a real host.
// A refusal is reported on the VMI, as KubeVirt reports it, and returns nil, nil.
func (s *Simulator) createLauncherPod(ctx context.Context, vm *kubevirtv1.VirtualMachine, vmi *kubevirtv1.VirtualMachineInstance) (*corev1.Pod, error) {
	cfg, err := s.launcherConfig(ctx, vmi.Namespace)
	if err != nil {
		return nil, err
	}
	pod := renderLauncherPod(vmi, &vm.Spec.Template.Spec, cfg)
	s.podCreatesMu.Lock()
	if s.podCreates == nil {
		s.podCreates = map[string]int64{}
	}
	s.podCreates[vmi.Namespace]++
	s.podCreatesMu.Unlock()
	err = s.client.Create(ctx, pod)
	switch {
	case err == nil:
		s.refused.forget(vmi.UID)
		s.pending.Expect(kindPod, podTracked(pod, vmi))
		ctrl.LoggerFrom(ctx).V(1).Info("Created virt-launcher Pod", "pod", pod.Name)
		return pod, nil
	case apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
		return nil, nil
	case apierrors.IsForbidden(err) && strings.Contains(err.Error(), "error looking up service account"):
		// A namespace just created has no default ServiceAccount for a few milliseconds,
		// until kube-controller-manager makes it, and admission refuses pods meanwhile.
		// KubeVirt reports it too and its work queue retries within milliseconds; the
		// simulator only retries, so that no new lab says it failed for a moment.
		return nil, fmt.Errorf("creating the virt-launcher Pod of VirtualMachineInstance %s/%s before its namespace's ServiceAccount exists: %w", vmi.Namespace, vmi.Name, err)
	case refusedByAdmission(err):
		wait := s.refused.refused(vmi.UID, time.Now())
		ctrl.LoggerFrom(ctx).Info("The API server refused the virt-launcher Pod; retrying after a backoff",
			"vmi", vmi.Name, "backoff", wait.String(), "error", err.Error())
		s.recorder.Eventf(vmi, nil, corev1.EventTypeWarning, ReasonFailedCreate, "Create", "Error creating pod: %v", err)
		return nil, s.setSyncFailure(ctx, vmi, "failed to create virtual machine pod: "+err.Error())
	default:
		return nil, fmt.Errorf("creating the virt-launcher Pod of VirtualMachineInstance %s/%s: %w", vmi.Namespace, vmi.Name, err)
	}
}

// refusedByAdmission: an answer that says the pod itself, or the namespace's policy, is
// wrong, not that the API server could not answer. Retrying at once cannot help.
func refusedByAdmission(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return false
	}
	return apierrors.IsForbidden(err) || apierrors.IsInvalid(err) || apierrors.IsBadRequest(err)
}

// setSyncFailure sets the VMI's Synchronized condition to False, FailedCreate, with msg:
// one write when the message changes, none while it stays the same.
func (s *Simulator) setSyncFailure(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance, msg string) error {
	want := vmi.DeepCopy()
	setVMICondition(&want.Status, kubevirtv1.VirtualMachineInstanceSynchronized, corev1.ConditionFalse, ReasonFailedCreate, msg, metav1.Now())
	if want.Status.Phase == "" {
		want.Status.Phase = kubevirtv1.Pending
		setVMIStatus(&want.Status, kubevirtv1.Pending, "", "", "", metav1.Now())
	}
	if statusEqual(vmi.Status, want.Status) {
		return nil
	}
	if err := s.client.Status().Patch(ctx, want, client.MergeFrom(vmi)); err != nil {
		return fmt.Errorf("updating VirtualMachineInstance %s/%s status: %w", vmi.Namespace, vmi.Name, err)
	}
	s.pending.Expect(kindVMI, want)
	*vmi = *want
	return nil
}

// launcherConfig is KubeVirt's configuration for a launcher pod in namespace: the
// simulator's CPU allocation ratio, and the limits KubeVirt sets because a quota of the
// namespace has limits.cpu or limits.memory (read from the API server: an admin's quota
// carries none of labforge's labels, so the manager's cache does not hold it).
func (s *Simulator) launcherConfig(ctx context.Context, namespace string) (launcherConfig, error) {
	cfg := launcherConfig{cpuAllocationRatio: s.opts.CPUAllocationRatio}
	if cfg.cpuAllocationRatio <= 0 {
		cfg.cpuAllocationRatio = DefaultCPUAllocationRatio
	}
	var quotas corev1.ResourceQuotaList
	if err := s.apiReader.List(ctx, &quotas, client.InNamespace(namespace)); err != nil {
		return cfg, fmt.Errorf("listing the ResourceQuotas of %s: %w", namespace, err)
	}
	for _, q := range quotas.Items {
		if _, ok := q.Spec.Hard[corev1.ResourceLimitsCPU]; ok {
			cfg.autoCPULimit = true
		}
		if _, ok := q.Spec.Hard[corev1.ResourceLimitsMemory]; ok {
			cfg.autoMemoryLimit = true
		}
	}
	return cfg, nil
}

// setPodRunning is what the scheduler and the kubelet report of a started launcher pod.
func setPodRunning(st *corev1.PodStatus, hostIP, podIP string, now metav1.Time) {
	st.Phase = corev1.PodRunning
	st.HostIP = hostIP
	st.HostIPs = []corev1.HostIP{{IP: hostIP}}
	st.PodIP = podIP
	st.PodIPs = []corev1.PodIP{{IP: podIP}}
	st.StartTime = &now
	st.Conditions = nil
	for _, t := range []corev1.PodConditionType{
		corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady,
		kubevirtv1.VirtualMachineUnpaused,
	} {
		st.Conditions = append(st.Conditions, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
}

// podTracked is pod as the write tracker keys it: by its VMI, since the tracker must
// know about it before the pod's generated name is in the cache.
func podTracked(pod *corev1.Pod, vmi *kubevirtv1.VirtualMachineInstance) client.Object {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: vmi.Namespace, Name: vmi.Name, ResourceVersion: pod.ResourceVersion}}
	return p
}

// launcherKey is the VMI a launcher pod belongs to, the key its writes are tracked by.
func launcherKey(o client.Object) (types.NamespacedName, bool) {
	ref := metav1.GetControllerOf(o)
	if ref == nil || ref.Kind != "VirtualMachineInstance" {
		return types.NamespacedName{}, false
	}
	return types.NamespacedName{Namespace: o.GetNamespace(), Name: ref.Name}, true
}
