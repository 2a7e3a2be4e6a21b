package simulator

import (
	"context"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// SimNode is a node of the simulated host: launcher pods are bound to it, and it has an
// address on loopback, so that later work can listen where a student would connect.
type SimNode struct {
	// Name is the Node's name.
	Name string
	// InternalIP is its InternalIP address.
	InternalIP string
}

// Nodes are the simulated host's nodes. The control plane the tests and `labforge dev`
// run has no node lifecycle controller, pod garbage collector or taint manager
// (internal/controlplane's controller list), so nothing marks them NotReady, taints them
// or evicts their pods for lack of a kubelet's heartbeat.
var Nodes = []SimNode{
	{Name: "sim-node-1", InternalIP: "127.0.0.11"},
	{Name: "sim-node-2", InternalIP: "127.0.0.12"},
	{Name: "sim-node-3", InternalIP: "127.0.0.13"},
}

// nodeFor picks the node a VMI's launcher pod runs on: the same one for the same VMI,
// whichever process binds it, and the labs spread over every node.
func nodeFor(uid string) SimNode {
	h := fnv.New32a()
	_, _ = h.Write([]byte(uid))
	return Nodes[int(h.Sum32()%uint32(len(Nodes)))]
}

func nodeByName(name string) (SimNode, bool) {
	for _, n := range Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return SimNode{}, false
}

// node renders a simulated Node as a kubelet registers one: labels KubeVirt's scheduling
// looks for, capacity for many labs and KubeVirt's devices, a Ready condition, addresses.
func node(n SimNode) *corev1.Node {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("64"),
		corev1.ResourceMemory:           resource.MustParse("512Gi"),
		corev1.ResourcePods:             resource.MustParse("1000"),
		corev1.ResourceEphemeralStorage: resource.MustParse("2Ti"),
		resourceKVM:                     resource.MustParse("1k"),
		resourceTun:                     resource.MustParse("1k"),
		resourceVhostNet:                resource.MustParse("1k"),
	}
	now := metav1.Now()
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: n.Name,
			Labels: map[string]string{
				corev1.LabelHostname:       n.Name,
				corev1.LabelOSStable:       "linux",
				corev1.LabelArchStable:     "amd64",
				kubevirtv1.NodeSchedulable: "true",
				"sim.labforge.dev/node":    "true",
			},
		},
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: capacity.DeepCopy(),
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: n.InternalIP},
				{Type: corev1.NodeHostName, Address: n.Name},
			},
			Conditions: []corev1.NodeCondition{{
				Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
				Message: "simulated by labforge", LastHeartbeatTime: now, LastTransitionTime: now,
			}},
			NodeInfo: corev1.NodeSystemInfo{
				KubeletVersion: "v1.36.3", OperatingSystem: "linux", Architecture: "amd64",
				ContainerRuntimeVersion: "containerd://2.1.0",
			},
		},
	}
}

// nodeRegistrar creates the simulated nodes once the manager starts, on every replica
// (as kubelets register their nodes whoever leads): a create each, the first time.
type nodeRegistrar struct{ sim *Simulator }

func (r *nodeRegistrar) NeedLeaderElection() bool { return false }

func (r *nodeRegistrar) Start(ctx context.Context) error {
	return RegisterNodes(ctx, r.sim.client)
}

// RegisterNodes creates the simulated Nodes that do not exist yet. The simulator does it
// when its manager starts; `labforge dev` does it before, so that the operator, which
// refuses to start without a node address for students, finds them. A Node that exists
// is read, not created again: a restart among running labs writes nothing (the
// idle-resync benchmark counted three refused creates per restart).
func RegisterNodes(ctx context.Context, c client.Client) error {
	for _, n := range Nodes {
		if err := c.Get(ctx, client.ObjectKey{Name: n.Name}, &corev1.Node{}); err == nil {
			continue
		}
		for attempt := 0; ; attempt++ {
			err := c.Create(ctx, node(n))
			if err == nil || apierrors.IsAlreadyExists(err) {
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			if attempt >= 5 {
				return fmt.Errorf("registering simulated node %s: %w", n.Name, err)
			}
			time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
		}
	}
	return nil
}

// kubelet plays the kubelets of the simulated nodes where the API server waits for one:
// a launcher pod bound to a node is deleted gracefully (by the garbage collector once its
// VMI is gone, or by a namespace's deletion) and stays until its kubelet confirms that
// its containers stopped. Simulated guests stop at once, so it confirms at once.
type kubelet struct {
	sim *Simulator
	// confirmed holds the UIDs of pods whose deletion this kubelet confirmed and whose
	// delete event has not arrived yet: a later update event of such a pod (another
	// deleter's graceful delete) finds it still in the cache, and deleting it again would
	// only be refused (404).
	confirmed sync.Map
}

// Reconcile finishes the deletion of a launcher pod on a simulated node.
func (k *kubelet) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var pod corev1.Pod
	if err := k.sim.client.Get(ctx, req.NamespacedName, &pod); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if pod.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	if _, ours := nodeByName(pod.Spec.NodeName); !ours {
		return ctrl.Result{}, nil
	}
	if _, done := k.confirmed.Load(pod.UID); done {
		return ctrl.Result{}, nil
	}
	err := k.sim.client.Delete(ctx, &pod, client.GracePeriodSeconds(0), client.Preconditions{UID: &pod.UID})
	if client.IgnoreNotFound(err) != nil && !apierrors.IsConflict(err) {
		return ctrl.Result{}, fmt.Errorf("confirming the deletion of Pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	k.confirmed.Store(pod.UID, struct{}{})
	return ctrl.Result{}, nil
}

// gone forgets a pod whose delete event arrived.
func (k *kubelet) gone(o client.Object) {
	k.confirmed.Delete(o.GetUID())
}
