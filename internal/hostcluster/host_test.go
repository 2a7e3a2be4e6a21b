package hostcluster

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestSubscribe: a subscriber hears of the changes it asks about, once however many
// came before it read, and reads the current network when it does.
func TestSubscribe(t *testing.T) {
	h := Static(Network{PodCIDRs: prefixes("10.244.1.0/24")})
	policies := h.Subscribe(func(old, cur Network) bool { return !old.SamePolicies(cur) })
	addresses := h.Subscribe(func(old, cur Network) bool { return !old.SameAddresses(cur) })

	h.Update(Network{PodCIDRs: prefixes("10.244.1.0/24"), NodeAddresses: map[string]string{"n1": "192.168.1.11"}})
	if len(policies) != 0 || len(addresses) != 1 {
		t.Fatalf("after a new node address: %d policy and %d address events, want 0 and 1", len(policies), len(addresses))
	}
	h.Update(Network{PodCIDRs: prefixes("10.244.1.0/24", "10.244.2.0/24")})
	h.Update(Network{PodCIDRs: prefixes("10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24")})
	if len(policies) != 1 || len(addresses) != 1 {
		t.Fatalf("after two new pod ranges: %d policy and %d address events, want 1 and 1 (coalesced)", len(policies), len(addresses))
	}
	if e := <-policies; e.Object.GetName() != "labforge-host-network" {
		t.Errorf("event names %q", e.Object.GetName())
	}
	if got := h.Network().PodCIDRs; len(got) != 3 {
		t.Errorf("current network has pod ranges %v, want the last update's", got)
	}
}

func TestFactsChanged(t *testing.T) {
	n := node("n1", []string{"10.244.1.0/24"}, internal("192.168.1.11"))
	heartbeat := n.DeepCopy()
	heartbeat.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	moved := n.DeepCopy()
	moved.Status.Addresses[0].Address = "192.168.1.99"
	if factsChanged(&n, heartbeat) {
		t.Error("a Node's condition change counted as a change of the host's facts")
	}
	if !factsChanged(&n, moved) {
		t.Error("a Node's new address did not count")
	}
}
