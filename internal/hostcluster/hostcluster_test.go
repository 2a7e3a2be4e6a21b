package hostcluster

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	tests := map[string]struct {
		pods, services, public string
		want                   Network
		wantErr                string
	}{
		"defaults": {
			pods: DefaultPodCIDRs, services: DefaultServiceCIDRs, public: DefaultPublicAddress,
			want: Network{
				PodCIDRs:      []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")},
				ServiceCIDRs:  []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")},
				PublicAddress: "127.0.0.1",
			},
		},
		"lists are trimmed and masked": {
			pods: " 10.42.1.0/16 , fd00::/48", services: "10.43.0.0/16", public: " labs.example.com ",
			want: Network{
				PodCIDRs:      []netip.Prefix{netip.MustParsePrefix("10.42.0.0/16"), netip.MustParsePrefix("fd00::/48")},
				ServiceCIDRs:  []netip.Prefix{netip.MustParsePrefix("10.43.0.0/16")},
				PublicAddress: "labs.example.com",
			},
		},
		"bad pod CIDR":      {pods: "10.0.0.0/33", services: "10.96.0.0/12", public: "x", wantErr: `host pod CIDRs: netip.ParsePrefix("10.0.0.0/33"): prefix length out of range`},
		"no service CIDR":   {pods: "10.0.0.0/8", services: " , ", public: "x", wantErr: "host service CIDRs: at least one CIDR is required"},
		"no public address": {pods: "10.0.0.0/8", services: "10.96.0.0/12", public: " ", wantErr: "host public address must not be empty"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Parse(tc.pods, tc.services, tc.public)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("Parse() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOverlapping(t *testing.T) {
	n := Default()
	tests := map[string]struct {
		prefix string
		want   []string
	}{
		"lab default pods":    {prefix: "10.200.0.0/16"},
		"inside host pods":    {prefix: "10.244.5.0/24", want: []string{"10.244.0.0/16"}},
		"covers host service": {prefix: "10.0.0.0/8", want: []string{"10.244.0.0/16", "10.96.0.0/12"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var got []string
			for _, p := range n.Overlapping(netip.MustParsePrefix(tc.prefix)) {
				got = append(got, p.String())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Overlapping(%s) mismatch (-want +got):\n%s", tc.prefix, diff)
			}
		})
	}
}
