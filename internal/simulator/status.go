package simulator

import (
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
)

// bootPhases are the VMI phases a VM goes through to Running, in KubeVirt's order.
var bootPhases = []kubevirtv1.VirtualMachineInstancePhase{
	kubevirtv1.Pending, kubevirtv1.Scheduling, kubevirtv1.Scheduled, kubevirtv1.Running,
}

// phaseIndex orders the boot phases; "" (just created) comes first.
var phaseIndex = map[kubevirtv1.VirtualMachineInstancePhase]int{
	kubevirtv1.VmPhaseUnset: -1,
	kubevirtv1.Pending:      0,
	kubevirtv1.Scheduling:   1,
	kubevirtv1.Scheduled:    2,
	kubevirtv1.Running:      3,
}

// phaseAt is the phase of a VMI elapsed into a boot of length delay, and how long until
// the next one. Scheduling starts after a quarter of the delay, Scheduled after half,
// Running at the end.
func phaseAt(elapsed, delay time.Duration) (kubevirtv1.VirtualMachineInstancePhase, time.Duration) {
	if delay <= 0 || elapsed >= delay {
		return kubevirtv1.Running, 0
	}
	switch {
	case elapsed >= delay/2:
		return kubevirtv1.Scheduled, delay - elapsed
	case elapsed >= delay/4:
		return kubevirtv1.Scheduling, delay/2 - elapsed
	default:
		return kubevirtv1.Pending, delay/4 - elapsed
	}
}

// Condition reasons, as KubeVirt words them.
const (
	reasonGuestNotRunning = "GuestNotRunning"
	reasonVMINotExists    = "VMINotExists"
)

// guestOS is what the simulated guest agent reports.
var guestOS = kubevirtv1.VirtualMachineInstanceGuestOSInfo{
	Name:          "Ubuntu",
	ID:            "ubuntu",
	PrettyName:    "Ubuntu 24.04 LTS (labforge simulator)",
	Version:       "24.04 LTS (Noble Numbat)",
	VersionID:     "24.04",
	KernelRelease: "6.8.0-labforge-sim",
	KernelVersion: "#1 SMP PREEMPT_DYNAMIC",
	Machine:       "x86_64",
}

// setVMIStatus brings st to phase, with everything KubeVirt reports in it, leaving what
// is already right untouched (timestamps included) so that a second call changes nothing.
// ip is the guest's address, used once Running; iface is the name of its interface; node
// is where its launcher pod runs, reported from Scheduled on.
func setVMIStatus(st *kubevirtv1.VirtualMachineInstanceStatus, phase kubevirtv1.VirtualMachineInstancePhase, ip, iface, node string, now metav1.Time) {
	for _, p := range bootPhases {
		if phaseIndex[p] > phaseIndex[phase] {
			break
		}
		if !hasPhaseTimestamp(st, p) {
			st.PhaseTransitionTimestamps = append(st.PhaseTransitionTimestamps,
				kubevirtv1.VirtualMachineInstancePhaseTransitionTimestamp{Phase: p, PhaseTransitionTimestamp: now})
		}
	}
	st.Phase = phase
	if phaseIndex[phase] >= phaseIndex[kubevirtv1.Scheduled] {
		st.NodeName = node
		setVMICondition(st, kubevirtv1.VirtualMachineInstanceConditionType(corev1.PodScheduled), corev1.ConditionTrue, "", "", now)
	}
	if phase != kubevirtv1.Running {
		if phaseIndex[phase] >= phaseIndex[kubevirtv1.Scheduling] {
			setVMICondition(st, kubevirtv1.VirtualMachineInstanceReady, corev1.ConditionFalse,
				reasonGuestNotRunning, "Guest VM is not reported as running", now)
		}
		return
	}
	setVMICondition(st, kubevirtv1.VirtualMachineInstanceReady, corev1.ConditionTrue, "", "", now)
	setVMICondition(st, kubevirtv1.VirtualMachineInstanceAgentConnected, corev1.ConditionTrue, "", "", now)
	// The guest agent synchronises the VM's access credentials as soon as it connects.
	// KubeVirt's virt-handler (pkg/virt-handler, updateAccessCredentialConditions, v1.8)
	// writes this condition only when the sync's result or message changes, so it is set
	// here once, in the same write as Running, and never touched again: a condition
	// someone else set (a test playing a failed sync) stays as they left it.
	if !hasVMICondition(st, kubevirtv1.VirtualMachineInstanceAccessCredentialsSynchronized) {
		setVMICondition(st, kubevirtv1.VirtualMachineInstanceAccessCredentialsSynchronized, corev1.ConditionTrue, "", "", now)
	}
	if len(st.Interfaces) == 0 && ip != "" {
		st.Interfaces = []kubevirtv1.VirtualMachineInstanceNetworkInterface{{
			Name:             iface,
			InterfaceName:    "eth0",
			PodInterfaceName: "eth0",
			IP:               ip,
			IPs:              []string{ip},
			MAC:              macFor(ip),
			InfoSource:       "domain, guest-agent",
			LinkState:        "up",
			QueueCount:       1,
		}}
	}
	if st.GuestOSInfo == (kubevirtv1.VirtualMachineInstanceGuestOSInfo{}) {
		st.GuestOSInfo = guestOS
	}
}

func hasPhaseTimestamp(st *kubevirtv1.VirtualMachineInstanceStatus, p kubevirtv1.VirtualMachineInstancePhase) bool {
	for _, t := range st.PhaseTransitionTimestamps {
		if t.Phase == p {
			return true
		}
	}
	return false
}

func hasVMICondition(st *kubevirtv1.VirtualMachineInstanceStatus, t kubevirtv1.VirtualMachineInstanceConditionType) bool {
	for _, c := range st.Conditions {
		if c.Type == t {
			return true
		}
	}
	return false
}

func setVMICondition(st *kubevirtv1.VirtualMachineInstanceStatus, t kubevirtv1.VirtualMachineInstanceConditionType,
	status corev1.ConditionStatus, reason, message string, now metav1.Time) {
	for i := range st.Conditions {
		c := &st.Conditions[i]
		if c.Type != t {
			continue
		}
		if c.Status != status {
			c.Status, c.LastTransitionTime = status, now
		}
		c.Reason, c.Message = reason, message
		return
	}
	st.Conditions = append(st.Conditions, kubevirtv1.VirtualMachineInstanceCondition{
		Type: t, Status: status, Reason: reason, Message: message, LastTransitionTime: now,
	})
}

func removeVMICondition(st *kubevirtv1.VirtualMachineInstanceStatus, t kubevirtv1.VirtualMachineInstanceConditionType) {
	kept := st.Conditions[:0]
	for _, c := range st.Conditions {
		if c.Type != t {
			kept = append(kept, c)
		}
	}
	st.Conditions = kept
}

// setVMStatus sets what KubeVirt's VM controller reports for a VM whose VMI is vmi (nil:
// none). Generations are left alone: recording them would cost a write on every spec
// change (such as the access credentials pushed at claim time) for nothing labforge reads.
func setVMStatus(st *kubevirtv1.VirtualMachineStatus, vmi *kubevirtv1.VirtualMachineInstance, now metav1.Time) {
	switch {
	case vmi == nil:
		st.Created, st.Ready, st.PrintableStatus = false, false, kubevirtv1.VirtualMachineStatusStopped
		setVMCondition(st, corev1.ConditionFalse, reasonVMINotExists, "VMI does not exist", now)
	case vmi.Status.Phase == kubevirtv1.Running:
		st.Created, st.Ready, st.PrintableStatus = true, true, kubevirtv1.VirtualMachineStatusRunning
		setVMCondition(st, corev1.ConditionTrue, "", "", now)
	default:
		st.Created, st.Ready, st.PrintableStatus = true, false, kubevirtv1.VirtualMachineStatusStarting
		setVMCondition(st, corev1.ConditionFalse, reasonGuestNotRunning, "Guest VM is not reported as running", now)
	}
}

func setVMCondition(st *kubevirtv1.VirtualMachineStatus, status corev1.ConditionStatus, reason, message string, now metav1.Time) {
	for i := range st.Conditions {
		c := &st.Conditions[i]
		if c.Type != kubevirtv1.VirtualMachineReady {
			continue
		}
		if c.Status != status {
			c.Status, c.LastTransitionTime = status, now
		}
		c.Reason, c.Message = reason, message
		return
	}
	st.Conditions = append(st.Conditions, kubevirtv1.VirtualMachineCondition{
		Type: kubevirtv1.VirtualMachineReady, Status: status, Reason: reason, Message: message, LastTransitionTime: now,
	})
}

// statusEqual compares statuses the way the API server would store them.
func statusEqual(a, b any) bool { return equality.Semantic.DeepEqual(a, b) }

// primaryInterface is the name of the VMI's first interface, as KubeVirt reports it.
func primaryInterface(spec *kubevirtv1.VirtualMachineInstanceSpec) string {
	if ifs := spec.Domain.Devices.Interfaces; len(ifs) > 0 {
		return ifs[0].Name
	}
	if len(spec.Networks) > 0 {
		return spec.Networks[0].Name
	}
	return "default"
}

// macFor derives a stable, locally administered MAC address from an IPv4 address.
func macFor(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is4() {
		return ""
	}
	b := a.As4()
	const hex = "0123456789abcdef"
	out := []byte("02:00:00:00:00:00")
	for i, v := range b {
		out[6+3*i] = hex[v>>4]
		out[7+3*i] = hex[v&0xf]
	}
	return string(out)
}
