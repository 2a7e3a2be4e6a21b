package integration

import (
	"context"

	. "github.com/onsi/gomega" //nolint:revive // the suites' own assertion style
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Events lists "type/reason: note" of the events about the object of kind named name in
// namespace ns ("" for a cluster-scoped object, whose events go to "default"), oldest
// first as the API server lists them.
func Events(ctx context.Context, c client.Client, kind, ns, name string) func(Gomega) []string {
	return func(g Gomega) []string {
		if ns == "" {
			ns = "default"
		}
		var list eventsv1.EventList
		g.Expect(c.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
		var out []string
		for _, e := range list.Items {
			if e.Regarding.Kind == kind && e.Regarding.Name == name {
				out = append(out, e.Type+"/"+e.Reason+": "+e.Note)
			}
		}
		return out
	}
}
