package scenarios

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestArrivalsAreSeededPoisson(t *testing.T) {
	a, b := arrivals(1, 50, 60*time.Second), arrivals(1, 50, 60*time.Second)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Fatalf("two draws with one seed differ:\n%s", diff)
	}
	if c := arrivals(2, 50, 60*time.Second); cmp.Equal(a, c) {
		t.Fatal("two seeds drew the same arrivals")
	}
	// 3,000 expected; a Poisson count's standard deviation is about 55.
	if n := len(a); n < 2800 || n > 3200 {
		t.Errorf("drew %d arrivals at 50/s over 60s, want about 3000", n)
	}
	for i := 1; i < len(a); i++ {
		if a[i] < a[i-1] || a[i] >= 60*time.Second {
			t.Fatalf("arrival %d at %s after %s: not increasing within the duration", i, a[i], a[i-1])
		}
	}
}
