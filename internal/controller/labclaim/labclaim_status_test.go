package labclaim

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

func TestSetStatus(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	bound := &labforgev1alpha1.LabEnvironment{ObjectMeta: metav1.ObjectMeta{Name: "pool-abcde"}}
	// The terms the bind recorded on the lab: bound now.
	terms := &labforgev1alpha1.ClaimTerms{BoundTime: metav1.NewTime(now), SSHUser: "ubuntu", Lifetime: labforgev1alpha1.Lifetime{
		Default: metav1.Duration{Duration: time.Hour}, Maximum: metav1.Duration{Duration: 4 * time.Hour}}}
	type cond struct{ Status, Reason string }
	tests := map[string]struct {
		scope scope
		// before is the claim's status before the pass, if it had one.
		before      *labforgev1alpha1.LabClaimStatus
		succeeded   bool
		want        map[string]cond
		wantLab     string
		wantCommand string
		wantQueue   int32
		// wantLaunch is the claim's launch type after the pass.
		wantLaunch labforgev1alpha1.LaunchType
		// wantReady: the claim has a readyTime.
		wantReady bool
	}{
		"waiting in line": {
			scope:     scope{pendingReason: labforgev1alpha1.ReasonWaitingForLab, pendingMessage: "number 3 in line", queuePosition: 3},
			succeeded: true,
			want:      map[string]cond{"Bound": {"False", "NotBound"}, "Ready": {"Unknown", "WaitingForLab"}},
			wantQueue: 3,
		},
		"refused": {
			scope:     scope{refusedReason: labforgev1alpha1.ReasonNamespaceNotAllowed, refusedMessage: "no"},
			succeeded: true,
			want:      map[string]cond{"Bound": {"False", "NotBound"}, "Ready": {"False", "NamespaceNotAllowed"}, "Stalled": {"True", "NamespaceNotAllowed"}},
		},
		"bound, lab booting": {
			scope:      scope{env: bound, terms: terms, boundNow: true, launch: labforgev1alpha1.LaunchCold, duration: time.Hour},
			succeeded:  true,
			want:       map[string]cond{"Bound": {"True", "Bound"}, "Ready": {"Unknown", "LabBooting"}},
			wantLab:    "pool-abcde",
			wantLaunch: labforgev1alpha1.LaunchCold,
		},
		"bound by a pass that died before its status write": {
			scope:      scope{env: bound, terms: terms, launch: labforgev1alpha1.LaunchWarm, duration: time.Hour},
			succeeded:  true,
			want:       map[string]cond{"Bound": {"True", "Bound"}, "Ready": {"Unknown", "LabBooting"}},
			wantLab:    "pool-abcde",
			wantLaunch: labforgev1alpha1.LaunchWarm,
		},
		"bound earlier: the launch type stays": {
			scope:      scope{env: bound, terms: terms, duration: time.Hour},
			succeeded:  true,
			before:     &labforgev1alpha1.LabClaimStatus{Lab: "pool-abcde", LaunchType: labforgev1alpha1.LaunchCold, BoundTime: &metav1.Time{Time: now}},
			want:       map[string]cond{"Bound": {"True", "Bound"}, "Ready": {"Unknown", "LabBooting"}},
			wantLab:    "pool-abcde",
			wantLaunch: labforgev1alpha1.LaunchCold,
		},
		"handed over": {
			scope: scope{env: bound, terms: terms, boundNow: true, launch: labforgev1alpha1.LaunchWarm, duration: time.Hour, labReady: true,
				handover: &handover{host: "labs.example.com", sshPort: 30022, apiPort: 30443, sshUser: "ubuntu"}},
			succeeded:   true,
			want:        map[string]cond{"Bound": {"True", "Bound"}, "Ready": {"True", "LabReady"}},
			wantLab:     "pool-abcde",
			wantCommand: "ssh -p 30022 ubuntu@labs.example.com",
			wantLaunch:  labforgev1alpha1.LaunchWarm,
			wantReady:   true,
		},
		"handed over while the lab boots: where to connect, but not Ready": {
			scope: scope{env: bound, terms: terms, launch: labforgev1alpha1.LaunchCold, duration: time.Hour,
				handover: &handover{host: "labs.example.com", sshPort: 30022, apiPort: 30443, sshUser: "ubuntu"}},
			succeeded:   true,
			want:        map[string]cond{"Bound": {"True", "Bound"}, "Ready": {"Unknown", "LabBooting"}},
			wantLab:     "pool-abcde",
			wantCommand: "ssh -p 30022 ubuntu@labs.example.com",
			wantLaunch:  labforgev1alpha1.LaunchCold,
		},
		"handover failed": {
			scope:     scope{env: bound, terms: terms, boundNow: true, duration: time.Hour},
			succeeded: false,
			want:      map[string]cond{"Bound": {"True", "Bound"}, "Ready": {"Unknown", "HandoverFailed"}},
			wantLab:   "pool-abcde",
		},
		"bound and Ready, but no NodePorts free": {
			scope: scope{env: bound, terms: terms, boundNow: true, launch: labforgev1alpha1.LaunchWarm, duration: time.Hour,
				pendingReason: labforgev1alpha1.ReasonNodePortsExhausted, pendingMessage: "range is full"},
			succeeded:  true,
			want:       map[string]cond{"Bound": {"True", "Bound"}, "Ready": {"Unknown", "NodePortsExhausted"}},
			wantLab:    "pool-abcde",
			wantLaunch: labforgev1alpha1.LaunchWarm,
		},
		"lost its NodePorts after a handover: the old ports are not shown any more": {
			scope:     scope{env: bound, terms: terms, duration: time.Hour, pendingReason: labforgev1alpha1.ReasonNodePortsExhausted, pendingMessage: "range is full"},
			before:    &labforgev1alpha1.LabClaimStatus{Lab: "pool-abcde", SSH: &labforgev1alpha1.SSHEndpoint{Port: 30022, Command: "ssh -p 30022 ubuntu@labs.example.com"}, APIServerURL: "https://labs.example.com:30443"},
			succeeded: true,
			want:      map[string]cond{"Bound": {"True", "Bound"}, "Ready": {"Unknown", "NodePortsExhausted"}},
			wantLab:   "pool-abcde",
		},
		"its status lost: rebuilt from the lab's terms, not from the pass's clock": {
			scope:     scope{env: bound, now: now.Add(3 * time.Hour), duration: time.Hour, terms: terms},
			succeeded: true,
			want:      map[string]cond{"Bound": {"True", "Bound"}, "Ready": {"Unknown", "LabBooting"}},
			wantLab:   "pool-abcde",
		},
		"a pass that failed before it read the terms: the expiry shown stays": {
			scope:     scope{env: bound, now: now.Add(3 * time.Hour)},
			before:    &labforgev1alpha1.LabClaimStatus{Lab: "pool-abcde", BoundTime: &metav1.Time{Time: now}, ExpiresAt: &metav1.Time{Time: now.Add(time.Hour)}},
			succeeded: false,
			want:      map[string]cond{"Bound": {"True", "Bound"}, "Ready": {"Unknown", "HandoverFailed"}},
			wantLab:   "pool-abcde",
		},
		"expired": {
			scope:     scope{expired: true, duration: time.Hour},
			succeeded: true,
			want:      map[string]cond{"Expired": {"True", "Expired"}, "Ready": {"False", "Expired"}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := tc.scope
			if s.now.IsZero() {
				s.now = now
			}
			s.claim = &labforgev1alpha1.LabClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "alice", Generation: 1}}
			if tc.before != nil {
				s.claim.Status = *tc.before.DeepCopy()
			}
			setStatus(&s, tc.succeeded)
			st := s.claim.Status
			if st.LaunchType != tc.wantLaunch {
				t.Errorf("launch type %q, want %q", st.LaunchType, tc.wantLaunch)
			}
			got := map[string]cond{}
			for _, c := range st.Conditions {
				got[c.Type] = cond{string(c.Status), c.Reason}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("conditions (-want +got):\n%s", diff)
			}
			if st.Lab != tc.wantLab || st.QueuePosition != tc.wantQueue {
				t.Errorf("lab %q queue %d, want %q %d", st.Lab, st.QueuePosition, tc.wantLab, tc.wantQueue)
			}
			gotCommand := ""
			if st.SSH != nil {
				gotCommand = st.SSH.Command
			}
			if gotCommand != tc.wantCommand {
				t.Errorf("ssh command %q, want %q", gotCommand, tc.wantCommand)
			}
			if tc.wantLab != "" && (st.ExpiresAt == nil || !st.ExpiresAt.Time.Equal(now.Add(time.Hour))) {
				t.Errorf("expiresAt %v, want %v", st.ExpiresAt, now.Add(time.Hour))
			}
			if tc.wantLab != "" && (st.BoundTime == nil || !st.BoundTime.Time.Equal(now)) {
				t.Errorf("boundTime %v, want %v", st.BoundTime, now)
			}
			if s.terms != nil {
				if diff := cmp.Diff(&s.terms.Lifetime, st.Lifetime); diff != "" {
					t.Errorf("lifetime (-want +got):\n%s", diff)
				}
			}
			if tc.wantCommand == "" && st.APIServerURL != "" {
				t.Errorf("apiServerURL %q without a handover", st.APIServerURL)
			}
			if tc.wantCommand != "" && (st.APIServerURL != "https://labs.example.com:30443" || st.KubeconfigSecretName != "alice-kubeconfig") {
				t.Errorf("handover status %+v", st)
			}
			if (st.ReadyTime != nil) != tc.wantReady {
				t.Errorf("readyTime %v, want one: %t", st.ReadyTime, tc.wantReady)
			}
		})
	}
}
