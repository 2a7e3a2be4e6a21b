package labclaim

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	testingclock "k8s.io/utils/clock/testing"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/expectations"
)

// lineT0 is when the claims of the line tests were created, give or take seconds.
var lineT0 = time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)

// lineClaim is a claim of pool p or template t (ref "pool" or "template") created at
// lineT0 plus age seconds; mutate may change it.
func lineClaim(name, ref string, age int, mutate func(*labforgev1alpha1.LabClaim)) labforgev1alpha1.LabClaim {
	c := labforgev1alpha1.LabClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "students", Name: name, UID: types.UID("uid-" + name),
		CreationTimestamp: metav1.NewTime(lineT0.Add(time.Duration(age) * time.Second))}}
	if ref == "pool" {
		c.Spec.PoolRef = &labforgev1alpha1.LocalObjectReference{Name: "p"}
	} else {
		c.Spec.TemplateRef = &labforgev1alpha1.LocalObjectReference{Name: "t"}
	}
	if mutate != nil {
		mutate(&c)
	}
	return c
}

func names[T interface{ GetName() string }](objs []T) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetName())
	}
	return out
}

// A pool's line: who waits and in what order, which labs are free and in what order, and
// which of them each waiting claim may take.
func TestPoolLine(t *testing.T) {
	readyAt := func(name string, sec int, mutate func(*labforgev1alpha1.LabEnvironment)) labforgev1alpha1.LabEnvironment {
		at := metav1.NewTime(lineT0.Add(time.Duration(sec) * time.Second))
		env := labforgev1alpha1.LabEnvironment{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: labforgev1alpha1.LabEnvironmentSpec{PoolRef: &labforgev1alpha1.LocalObjectReference{Name: "p"}},
			Status: labforgev1alpha1.LabEnvironmentStatus{ReadyTime: &at, Conditions: []metav1.Condition{{
				Type: labforgev1alpha1.ConditionReady, Status: metav1.ConditionTrue}}}}
		if mutate != nil {
			mutate(&env)
		}
		return env
	}
	now := metav1.NewTime(lineT0)
	envs := []labforgev1alpha1.LabEnvironment{
		readyAt("lab-late", 30, nil),
		readyAt("lab-b", 10, nil),
		readyAt("lab-a", 10, nil), // ready in the same second as lab-b: by name
		readyAt("lab-early", 5, nil),
		readyAt("bound", 1, func(e *labforgev1alpha1.LabEnvironment) {
			e.Spec.ClaimRef = &labforgev1alpha1.ClaimReference{Name: "x"}
		}),
		readyAt("deleting", 1, func(e *labforgev1alpha1.LabEnvironment) { e.DeletionTimestamp = &now }),
		readyAt("booting", 1, func(e *labforgev1alpha1.LabEnvironment) { e.Status.Conditions[0].Status = metav1.ConditionUnknown }),
		readyAt("no-ready-time", 1, func(e *labforgev1alpha1.LabEnvironment) { e.Status.ReadyTime = nil }),
		readyAt("other-pool", 1, func(e *labforgev1alpha1.LabEnvironment) { e.Spec.PoolRef.Name = "q" }),
	}
	claims := []labforgev1alpha1.LabClaim{
		lineClaim("young", "pool", 20, nil),
		lineClaim("old-b", "pool", 0, nil),
		lineClaim("old-a", "pool", 0, nil), // same second as old-b: by namespace/name
		lineClaim("bound", "pool", -10, func(c *labforgev1alpha1.LabClaim) { c.Status.Lab = "bound" }),
		lineClaim("refused", "pool", -10, func(c *labforgev1alpha1.LabClaim) {
			c.Status.Conditions = []metav1.Condition{{Type: labforgev1alpha1.ConditionStalled, Status: metav1.ConditionTrue}}
		}),
		lineClaim("deleting", "pool", -10, func(c *labforgev1alpha1.LabClaim) { c.DeletionTimestamp = &now }),
	}
	var woken []string
	waiting, reqs := waitingOf(claims, func(c *labforgev1alpha1.LabClaim) bool { return c.Status.Lab == "" })
	for _, r := range reqs {
		woken = append(woken, r.Name)
	}
	if diff := cmp.Diff([]string{"refused", "deleting"}, woken); diff != "" {
		t.Errorf("claims out of line woken (-want +got):\n%s", diff)
	}
	pl := poolLine("p", waiting, envs)
	if diff := cmp.Diff([]string{"old-a", "old-b", "young"}, names(pl.waiting)); diff != "" {
		t.Errorf("waiting (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"lab-early", "lab-a", "lab-b", "lab-late"}, names(pl.free)); diff != "" {
		t.Errorf("free (-want +got):\n%s", diff)
	}
	// Each claim may take only the labs past those its elders take; a claim out of line
	// (the refused one, asked again) counts everyone waiting before it.
	tests := map[string]struct {
		claim    labforgev1alpha1.LabClaim
		position int
		labs     []string
	}{
		"the oldest":                  {claim: claims[2], position: 0, labs: []string{"lab-early", "lab-a", "lab-b", "lab-late"}},
		"its twin of the same second": {claim: claims[1], position: 1, labs: []string{"lab-a", "lab-b", "lab-late"}},
		"the youngest":                {claim: claims[0], position: 2, labs: []string{"lab-b", "lab-late"}},
		"a claim older than all":      {claim: claims[4], position: 0, labs: []string{"lab-early", "lab-a", "lab-b", "lab-late"}},
		"a claim behind every lab":    {claim: lineClaim("last", "pool", 60, nil), position: 3, labs: []string{"lab-late"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			position := pl.position(&tc.claim, nil)
			if position != tc.position {
				t.Errorf("position = %d, want %d", position, tc.position)
			}
			if diff := cmp.Diff(tc.labs, names(pl.labsFor(position))); diff != "" {
				t.Errorf("labs it may take (-want +got):\n%s", diff)
			}
		})
	}
	if got := pl.labsFor(4); got != nil {
		t.Errorf("labsFor(4) of 4 free labs = %v, want none", names(got))
	}
}

// A template's line under its caps, with the labs this process created that the cache
// does not show yet counted by the ledger until the cache lists them, their create is
// refused, or their expectation lapses (by the injected clock).
func TestTemplateLineAdmits(t *testing.T) {
	tmpl := func(maxBooting, maxLabs int32) *labforgev1alpha1.LabTemplate {
		return &labforgev1alpha1.LabTemplate{ObjectMeta: metav1.ObjectMeta{Name: "t"},
			Spec: labforgev1alpha1.LabTemplateSpec{Claims: labforgev1alpha1.TemplateClaims{MaxBooting: maxBooting, MaxLabs: maxLabs}}}
	}
	me := lineClaim("me", "template", 10, nil)
	// elder waits before me, unless the cache shows it bound.
	elder := lineClaim("elder", "template", 0, nil)
	elderBound := lineClaim("elder", "template", 0, func(c *labforgev1alpha1.LabClaim) { c.Status.Lab = coldLabName(c) })
	labOf := func(c labforgev1alpha1.LabClaim, mutate func(*labforgev1alpha1.LabEnvironment)) labforgev1alpha1.LabEnvironment {
		env := labforgev1alpha1.LabEnvironment{
			ObjectMeta: metav1.ObjectMeta{Name: coldLabName(&c), Labels: map[string]string{labforgev1alpha1.LabelManagedBy: labforgev1alpha1.ManagedByValue}},
			Spec: labforgev1alpha1.LabEnvironmentSpec{TemplateRef: labforgev1alpha1.LocalObjectReference{Name: "t"},
				ClaimRef: &labforgev1alpha1.ClaimReference{Namespace: c.Namespace, Name: c.Name, UID: c.UID}},
		}
		if mutate != nil {
			mutate(&env)
		}
		return env
	}
	now := metav1.NewTime(lineT0)
	tests := map[string]struct {
		tmpl *labforgev1alpha1.LabTemplate
		// before runs on the ledger first: the elder's own pass, say.
		before    func(l *ledger, clk *testingclock.FakePassiveClock)
		claims    []labforgev1alpha1.LabClaim
		envs      []labforgev1alpha1.LabEnvironment
		boundHere map[types.UID]bool
		want      bool
		// wantPosition is me's place from zero; wantTotal and wantBooting what the caps
		// count; wantExpected how many labs the ledger expects afterwards (an admitted
		// claim's lab at once: the next claim's pass counts it).
		wantPosition, wantTotal, wantBooting int
		wantExpected                         int32
	}{
		"room under the caps": {
			tmpl: tmpl(1, 1), claims: []labforgev1alpha1.LabClaim{me}, want: true, wantExpected: 1,
		},
		"a lab created here that the cache does not show holds the room": {
			tmpl: tmpl(1, 5), before: admitElder, claims: []labforgev1alpha1.LabClaim{elderBound, me},
			wantTotal: 1, wantBooting: 1, wantExpected: 1,
		},
		"until its expectation lapses": {
			tmpl: tmpl(1, 5), claims: []labforgev1alpha1.LabClaim{elderBound, me}, want: true, wantExpected: 1,
			before: func(l *ledger, clk *testingclock.FakePassiveClock) {
				admitElder(l, clk)
				clk.SetTime(clk.Now().Add(expectations.DefaultTTL))
			},
		},
		"once the cache lists it, it is counted there, once": {
			tmpl: tmpl(1, 5), before: admitElder, claims: []labforgev1alpha1.LabClaim{elderBound, me},
			envs: []labforgev1alpha1.LabEnvironment{labOf(elder, nil)}, wantTotal: 1, wantBooting: 1,
		},
		"a create the API server refused holds no room": {
			tmpl: tmpl(1, 5), claims: []labforgev1alpha1.LabClaim{elderBound, me}, want: true, wantExpected: 1,
			before: func(l *ledger, clk *testingclock.FakePassiveClock) {
				admitElder(l, clk)
				l.coldLabFailed("t", coldLabName(&elder))
			},
		},
		"an older claim in line takes the room first": {
			tmpl: tmpl(1, 5), claims: []labforgev1alpha1.LabClaim{me, elder}, wantPosition: 1,
		},
		"an older claim whose lab the cache shows waits no more": {
			tmpl: tmpl(2, 5), claims: []labforgev1alpha1.LabClaim{me, elder}, want: true,
			envs: []labforgev1alpha1.LabEnvironment{labOf(elder, nil)}, wantTotal: 1, wantBooting: 1, wantExpected: 1,
		},
		"an older claim this process bound waits no more": {
			tmpl: tmpl(1, 5), claims: []labforgev1alpha1.LabClaim{me, elder}, want: true,
			boundHere: map[types.UID]bool{elder.UID: true}, wantExpected: 1,
		},
		"a lab being deleted holds its place under maxLabs": {
			tmpl: tmpl(5, 1), claims: []labforgev1alpha1.LabClaim{elderBound, me},
			envs:      []labforgev1alpha1.LabEnvironment{labOf(elder, func(e *labforgev1alpha1.LabEnvironment) { e.DeletionTimestamp = &now })},
			wantTotal: 1,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			clk := testingclock.NewFakePassiveClock(lineT0)
			l := newLedger(nil, clk)
			if tc.before != nil {
				tc.before(l, clk)
			}
			tl, position, ok := l.admitLocked(&me, tc.tmpl, tc.claims, tc.envs, func(uid types.UID) bool { return tc.boundHere[uid] })
			got := fmt.Sprintf("admitted %t at %d, total %d, booting %d", ok, position, tl.cold.total, tl.cold.booting)
			want := fmt.Sprintf("admitted %t at %d, total %d, booting %d", tc.want, tc.wantPosition, tc.wantTotal, tc.wantBooting)
			if got != want {
				t.Errorf("got %s; want %s", got, want)
			}
			if expected, _ := l.cold.Pending("t"); expected != tc.wantExpected {
				t.Errorf("%d labs expected afterwards, want %d", expected, tc.wantExpected)
			}
		})
	}
}

// admitElder is the elder claim's pass on an empty template: its lab is expected.
func admitElder(l *ledger, _ *testingclock.FakePassiveClock) {
	elder := lineClaim("elder", "template", 0, nil)
	tmpl := &labforgev1alpha1.LabTemplate{ObjectMeta: metav1.ObjectMeta{Name: "t"}}
	if _, _, ok := l.admitLocked(&elder, tmpl, []labforgev1alpha1.LabClaim{elder}, nil, nil); !ok {
		panic("the elder claim was not admitted on an empty template")
	}
}

// How a waiting claim's status words its place: exact in the first ExactPositions, an
// upper bound further back.
func TestPlace(t *testing.T) {
	tests := []struct {
		said     int32
		position int
		want     int32
		wantText string
	}{
		{said: 0, position: 0, want: 1, wantText: "number 1 in line"},
		{said: 3, position: 9, want: 10, wantText: "number 10 in line"},
		{said: 0, position: 10, want: 11, wantText: "number 11 in line or better"},
		{said: 40, position: 30, want: 40, wantText: "number 40 in line or better"},
	}
	for _, tc := range tests {
		got, text := place(tc.said, tc.position)
		if got != tc.want || text != tc.wantText {
			t.Errorf("place(said %d, position %d) = %d, %q; want %d, %q", tc.said, tc.position, got, text, tc.want, tc.wantText)
		}
	}
}

func TestReportedPosition(t *testing.T) {
	tests := []struct {
		said, actual, want int32
	}{
		{said: 0, actual: 40, want: 40},  // first pass in line
		{said: 40, actual: 39, want: 40}, // moved up a little: the status stands
		{said: 40, actual: 21, want: 40},
		{said: 40, actual: 20, want: 20}, // halved: written
		{said: 40, actual: 45, want: 45}, // moved back (an older claim came in): written
		{said: 12, actual: 10, want: 10}, // within the exact ten
		{said: 3, actual: 2, want: 2},
	}
	for _, tc := range tests {
		if got := reportedPosition(tc.said, tc.actual); got != tc.want {
			t.Errorf("reportedPosition(said %d, actual %d) = %d, want %d", tc.said, tc.actual, got, tc.want)
		}
	}
}

// A change on a pool wakes the claims of its line that can bind or must see their exact
// place, and those whose status is more than twice too far back; not the whole line.
func TestWakeable(t *testing.T) {
	waiting := make([]*labforgev1alpha1.LabClaim, 40)
	for i := range waiting {
		// Each says the place it had before one claim ahead of it left: one too far back.
		waiting[i] = &labforgev1alpha1.LabClaim{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("c%02d", i)},
			Status: labforgev1alpha1.LabClaimStatus{QueuePosition: int32(i + 2)}}
	}
	waiting[30].Status.QueuePosition = 70 // actual 31: more than twice too far back
	waiting[35].Status.QueuePosition = 0  // never told its place
	var got []string
	for _, c := range (line{waiting: waiting, room: 2}).wake() {
		got = append(got, c.Name)
	}
	var want []string
	for i := 0; i < 2+ExactPositions; i++ {
		want = append(want, fmt.Sprintf("c%02d", i))
	}
	want = append(want, "c30", "c35")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("woken (-want +got):\n%s", diff)
	}
	if got := (line{room: 5}).wake(); len(got) != 0 {
		t.Errorf("an empty line woke %d claims", len(got))
	}
}

// The line's order is the claims' age, then namespace/name for claims of the same second.
func TestBefore(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC))
	claim := func(ns, name string, at metav1.Time) *labforgev1alpha1.LabClaim {
		return &labforgev1alpha1.LabClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: at}}
	}
	older, younger := claim("b", "z", t0), claim("a", "a", metav1.NewTime(t0.Add(time.Second)))
	if !before(older, younger) || before(younger, older) {
		t.Error("the older claim is not first")
	}
	if !before(claim("a", "z", t0), claim("b", "a", t0)) || before(claim("a", "b", t0), claim("a", "a", t0)) {
		t.Error("claims of the same second are not ordered by namespace/name")
	}
}
