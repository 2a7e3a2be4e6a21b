package labpool

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

// MaxWarmUp bounds how long before its start a window sizes the pool, declared
// (spec.schedule[].warmUp, validated by the API server too) or derived (WarmUpFor).
const MaxWarmUp = 2 * time.Hour

// Margin on the observed boot time: a window without its own warmUp begins warming up the
// boot time plus a quarter of it, and at least WarmUpMinMargin more.
//
// The observation is the slowest boot among the pool's labs, mostly labs that booted a
// few at a time while the pool refilled. A window boots the class's labs all at once, on
// a host that is busy with them: boots that run together compete for the host's CPU,
// disks and image pulls and finish later than one alone. A quarter covers that for boots
// of minutes (where contention grows with the boot); the floor covers short boots, where
// the control plane's own spread over a burst is seconds whatever the boot. Both are
// cheap: a lab Ready early idles for the margin, minutes of one VM, against a student
// waiting a whole boot. A pool whose window boots more labs than spec.maxBooting boots
// them in waves, which no margin on one boot covers: such a window sets its own warmUp.
const (
	WarmUpMarginDivisor = 4
	WarmUpMinMargin     = 30 * time.Second
)

// WarmUpFor is the warm-up of a window without its own: bootTime with its margin, within
// MaxWarmUp; 0 for a pool that has not observed a boot (the window opens at its start,
// as the admin then must say with warmUp how early it should).
func WarmUpFor(bootTime time.Duration) time.Duration {
	if bootTime <= 0 {
		return 0
	}
	return min(MaxWarmUp, bootTime+max(bootTime/WarmUpMarginDivisor, WarmUpMinMargin))
}

// BootTimeTolerance: the recorded boot time moves only when an observation differs from it
// by this much or a tenth of it, whichever is more. Boots of the same template on the same
// host vary by a few seconds, and each new value would be one more status write for no
// change of the pool's behaviour worth the margin.
const BootTimeTolerance = 5 * time.Second

// observeBootTime returns the pool's boot time to record: the slowest boot (creation to
// Ready, rounded up to whole seconds) among labs that became Ready, or recorded when none
// did or when it differs from recorded by less than the tolerance. The labs are the
// pool's own from the cache, claimed ones and those being deleted included: they are the
// recent boots of this pool's template on this host, and a pool that lost them between
// classes keeps the recorded value.
func observeBootTime(envs []*labforgev1alpha1.LabEnvironment, recorded *metav1.Duration) *metav1.Duration {
	var slowest time.Duration
	for _, env := range envs {
		if env.Status.ReadyTime == nil {
			continue
		}
		slowest = max(slowest, env.Status.ReadyTime.Sub(env.CreationTimestamp.Time))
	}
	if slowest <= 0 {
		return recorded
	}
	observed := slowest.Truncate(time.Second)
	if observed < slowest {
		observed += time.Second
	}
	if recorded != nil {
		diff := observed - recorded.Duration
		if diff < 0 {
			diff = -diff
		}
		if diff < max(BootTimeTolerance, recorded.Duration/10) {
			return recorded
		}
	}
	return &metav1.Duration{Duration: observed}
}
