package pki

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// cycleReader yields 0, 1, ..., 255, 0, 1, ... forever.
type cycleReader struct{ next byte }

func (c *cycleReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = c.next
		c.next++
	}
	return len(p), nil
}

// TestRandomStringIsExactlyUniform feeds every byte value equally often: with
// rejection sampling each of the 36 characters must then appear exactly
// equally often (a plain b%36 would give '0'-'3' eight times per cycle and
// the rest seven).
func TestRandomStringIsExactlyUniform(t *testing.T) {
	const cycles = 3
	s, err := randomString(&cycleReader{}, cycles*252)
	if err != nil {
		t.Fatal(err)
	}
	got := map[rune]int{}
	for _, r := range s {
		got[r]++
	}
	want := map[rune]int{}
	for _, r := range tokenAlphabet {
		want[r] = cycles * 7
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("character counts (-want +got):\n%s", diff)
	}
	if strings.Trim(s, tokenAlphabet) != "" {
		t.Errorf("output has characters outside the alphabet: %q", s)
	}
}
