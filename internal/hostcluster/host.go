package hostcluster

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=servicecidrs,verbs=get;list;watch

// Host keeps the operator's Network current: it watches the host's Nodes and ServiceCIDRs
// through the manager's cache, recomputes the Network from them and the admin's Config
// when one changes, and tells its subscribers. Its zero value is not usable: use NewHost
// or Static. It is safe for concurrent use.
type Host struct {
	config         Config
	serviceCIDRAPI bool
	// kubernetesServiceIPs are the startup's (Facts.KubernetesServiceIPs): the cache holds
	// labforge's own Services only, and the kubernetes Service's address never changes.
	kubernetesServiceIPs []string
	// watching is false for a Static host, which never changes.
	watching bool
	reader   client.Reader
	current  atomic.Pointer[Network]
	poke     chan struct{}

	mu   sync.Mutex
	subs []subscriber
}

type subscriber struct {
	ch    chan event.GenericEvent
	wants func(old, cur Network) bool
}

// NewHost returns a Host that starts from facts (what Discover found at startup) and is
// kept current once Watch has added it to a manager. It fails, naming the flag to set,
// when the facts and cfg together do not say enough (Config.Network).
func NewHost(cfg Config, facts Facts) (*Host, error) {
	n, err := cfg.Network(facts)
	if err != nil {
		return nil, err
	}
	h := &Host{config: cfg, serviceCIDRAPI: facts.ServiceCIDRAPI, watching: true, poke: make(chan struct{}, 1)}
	for _, ip := range facts.KubernetesServiceIPs {
		h.kubernetesServiceIPs = append(h.kubernetesServiceIPs, ip.String())
	}
	h.current.Store(&n)
	return h, nil
}

// Static returns a Host whose Network is n and never changes (tests, and renderers'
// callers that need no watch).
func Static(n Network) *Host {
	h := &Host{}
	h.current.Store(&n)
	return h
}

// Network returns the current network. Callers must not change what it holds.
func (h *Host) Network() Network { return *h.current.Load() }

// Subscribe returns a channel that receives an event after the network changes in a way
// wants reports (nil: any change). Events coalesce: a subscriber that has not read the
// last one gets no second, and reads the current Network when it acts. Subscribe before
// the manager starts; the channel suits source.Channel.
func (h *Host) Subscribe(wants func(old, cur Network) bool) <-chan event.GenericEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := make(chan event.GenericEvent, 1)
	h.subs = append(h.subs, subscriber{ch: ch, wants: wants})
	return ch
}

// changed is the object of a subscriber's events: the host's network, not a real object.
var changed = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "labforge-host-network"}}

// Watch makes the manager keep h current: it watches Nodes (and ServiceCIDRs, where the
// API server serves them) through mgr's cache, on every replica (it only reads).
func (h *Host) Watch(mgr ctrl.Manager) error {
	if !h.watching {
		return nil
	}
	h.reader = mgr.GetCache()
	return mgr.Add(&watcher{h: h, cache: mgr.GetCache()})
}

// watcher is the manager runnable behind Watch.
type watcher struct {
	h     *Host
	cache cache.Cache
}

// NeedLeaderElection is false: every replica must know the host, leader or not.
func (w *watcher) NeedLeaderElection() bool { return false }

// Start registers the informers' handlers, then recomputes the network at each poke.
func (w *watcher) Start(ctx context.Context) error {
	objs := []client.Object{&corev1.Node{}}
	if w.h.serviceCIDRAPI {
		objs = append(objs, &networkingv1.ServiceCIDR{})
	}
	for _, o := range objs {
		inf, err := w.cache.GetInformer(ctx, o)
		if err != nil {
			return fmt.Errorf("watching the host's %T: %w", o, err)
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc: func(any) { w.h.wake() },
			UpdateFunc: func(old, cur any) {
				if factsChanged(old, cur) {
					w.h.wake()
				}
			},
			DeleteFunc: func(any) { w.h.wake() },
		}); err != nil {
			return fmt.Errorf("watching the host's %T: %w", o, err)
		}
	}
	log := ctrl.LoggerFrom(ctx).WithName("hostcluster")
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.h.poke:
			if err := w.h.refresh(ctx); err != nil {
				// The last good network stays: a host that briefly shows no Node must not
				// open the labs' policies. Discovery at the next change tries again.
				log.Error(err, "Kept the last known host network")
			}
		}
	}
}

func (h *Host) wake() {
	select {
	case h.poke <- struct{}{}:
	default:
	}
}

// factsChanged says whether an update of a Node or ServiceCIDR changed what Facts read.
func factsChanged(old, cur any) bool {
	switch o := old.(type) {
	case *corev1.Node:
		c, ok := cur.(*corev1.Node)
		return !ok || o.Spec.PodCIDR != c.Spec.PodCIDR || !slices.Equal(o.Spec.PodCIDRs, c.Spec.PodCIDRs) ||
			!slices.Equal(o.Status.Addresses, c.Status.Addresses)
	case *networkingv1.ServiceCIDR:
		c, ok := cur.(*networkingv1.ServiceCIDR)
		return !ok || !slices.Equal(o.Spec.CIDRs, c.Spec.CIDRs)
	}
	return true
}

// refresh recomputes the network from the cache and tells the subscribers what changed.
func (h *Host) refresh(ctx context.Context) error {
	var nodes corev1.NodeList
	if err := h.reader.List(ctx, &nodes); err != nil {
		return fmt.Errorf("listing the host's Nodes: %w", err)
	}
	// The ServiceCIDR API does not come and go while the operator runs; where it was
	// absent at the start, the cache has no informer for it and is not asked.
	var cidrs networkingv1.ServiceCIDRList
	if h.serviceCIDRAPI {
		if err := h.reader.List(ctx, &cidrs); err != nil {
			return fmt.Errorf("listing the host's ServiceCIDRs: %w", err)
		}
	}
	n, err := h.config.Network(FactsFrom(nodes.Items, cidrs.Items, h.serviceCIDRAPI, h.kubernetesServiceIPs))
	if err != nil {
		return err
	}
	h.Update(n)
	ctrl.LoggerFrom(ctx).V(1).Info("Host network read", "podCIDRs", n.PodCIDRs, "serviceCIDRs", n.ServiceCIDRs, "nodes", len(n.NodeAddresses))
	return nil
}

// Update makes n the current network and tells the subscribers that want to know.
func (h *Host) Update(n Network) {
	old := h.current.Swap(&n)
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.subs {
		if s.wants != nil && !s.wants(*old, n) {
			continue
		}
		select {
		case s.ch <- event.GenericEvent{Object: changed}:
		default:
		}
	}
}
