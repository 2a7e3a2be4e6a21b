package api_test

import (
	"context"
	"sort"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/discovery"
)

var _ = Describe("The labforge CRDs", func() {
	It("serve all four kinds with their scope, short names, category and subresources", func(ctx context.Context) {
		dc, err := discovery.NewDiscoveryClientForConfig(cp.RESTConfig())
		Expect(err).NotTo(HaveOccurred())
		list, err := dc.ServerResourcesForGroupVersion("labforge.dev/v1alpha1")
		Expect(err).NotTo(HaveOccurred())

		type resource struct {
			Name       string
			Kind       string
			Namespaced bool
			ShortNames []string
			Categories []string
		}
		var got []resource
		for _, r := range list.APIResources {
			got = append(got, resource{r.Name, r.Kind, r.Namespaced, r.ShortNames, r.Categories})
		}
		sort.Slice(got, func(i, j int) bool { return got[i].Name < got[j].Name })
		labforge := []string{"labforge"}
		Expect(got).To(Equal([]resource{
			{"labclaims", "LabClaim", true, []string{"lc", "labclaim"}, labforge},
			{"labclaims/status", "LabClaim", true, nil, nil},
			{"labenvironments", "LabEnvironment", false, []string{"le", "labenv"}, labforge},
			{"labenvironments/status", "LabEnvironment", false, nil, nil},
			{"labpools", "LabPool", false, []string{"lp", "labpool"}, labforge},
			{"labpools/scale", "Scale", false, nil, nil},
			{"labpools/status", "LabPool", false, nil, nil},
			{"labtemplates", "LabTemplate", false, []string{"lt", "labtemplate"}, labforge},
			{"labtemplates/status", "LabTemplate", false, nil, nil},
		}))
	})

	It("serve the KubeVirt kinds the operator creates and preflight reads", func(ctx context.Context) {
		dc, err := discovery.NewDiscoveryClientForConfig(cp.RESTConfig())
		Expect(err).NotTo(HaveOccurred())
		list, err := dc.ServerResourcesForGroupVersion("kubevirt.io/v1")
		Expect(err).NotTo(HaveOccurred())
		var names []string
		for _, r := range list.APIResources {
			names = append(names, r.Name)
		}
		// kubevirts: labforge preflight reads the KubeVirt object; its suite creates it in every shape.
		Expect(names).To(ContainElements("virtualmachines", "virtualmachines/status", "virtualmachineinstances", "virtualmachineinstances/status", "kubevirts", "kubevirts/status"))
	})
})
