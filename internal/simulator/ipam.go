package simulator

import (
	"context"
	"errors"
	"net/netip"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"
)

// podNetwork is where simulated guests get their addresses: a /16, 65,534 of them.
var podNetwork = netip.MustParsePrefix("10.250.0.0/16")

// ipam hands out one address per VMI, deterministically from a counter (10.250.0.1,
// 10.250.0.2, ...), never one already in use: on first use it learns the addresses that
// existing VMIs report (a restarted simulator) and it takes back those of deleted VMIs.
type ipam struct {
	mu     sync.Mutex
	seeded bool
	next   uint32 // offset in podNetwork of the next address to try
	byUID  map[types.UID]netip.Addr
	used   map[netip.Addr]types.UID
}

// assign returns vmi's address: the one it reports, the one it was given, or a new one.
func (a *ipam) assign(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance,
	list func(context.Context) ([]kubevirtv1.VirtualMachineInstance, error)) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.seeded {
		items, err := list(ctx)
		if err != nil {
			return "", err
		}
		a.byUID, a.used, a.next = map[types.UID]netip.Addr{}, map[netip.Addr]types.UID{}, 1
		for i := range items {
			if ip, ok := reportedIP(&items[i]); ok {
				a.takeLocked(items[i].UID, ip)
			}
		}
		a.seeded = true
	}
	if ip, ok := a.byUID[vmi.UID]; ok {
		return ip.String(), nil
	}
	if ip, ok := reportedIP(vmi); ok {
		a.takeLocked(vmi.UID, ip)
		return ip.String(), nil
	}
	const size = 1 << 16
	for range size {
		off := a.next
		a.next = a.next%(size-2) + 1 // 1 .. size-2: skip the network and broadcast addresses
		ip := offsetAddr(off)
		if _, taken := a.used[ip]; !taken {
			a.takeLocked(vmi.UID, ip)
			return ip.String(), nil
		}
	}
	return "", errors.New("simulated pod network 10.250.0.0/16 is full")
}

func (a *ipam) takeLocked(uid types.UID, ip netip.Addr) {
	a.byUID[uid] = ip
	a.used[ip] = uid
}

// release gives back the address of a VMI that is gone.
func (a *ipam) release(uid types.UID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ip, ok := a.byUID[uid]; ok {
		delete(a.byUID, uid)
		if a.used[ip] == uid {
			delete(a.used, ip)
		}
	}
}

func reportedIP(vmi *kubevirtv1.VirtualMachineInstance) (netip.Addr, bool) {
	for _, iface := range vmi.Status.Interfaces {
		if ip, err := netip.ParseAddr(iface.IP); err == nil && podNetwork.Contains(ip) {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

func offsetAddr(off uint32) netip.Addr {
	b := podNetwork.Addr().As4()
	b[2], b[3] = byte(off>>8), byte(off)
	return netip.AddrFrom4(b)
}
