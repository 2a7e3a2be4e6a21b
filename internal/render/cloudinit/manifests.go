package cloudinit

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/template"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/templatecheck"
)

// FlannelVersion is the flannel release every lab runs as its CNI. Its manifest is
// assets/kube-flannel.yaml.tmpl: upstream's Documentation/kube-flannel.yml of that release
// (github.com/flannel-io/flannel, also served by the Go module proxy), whose image tags
// pin flannel itself and its CNI plugin. To upgrade, replace the file with the new
// release's, keep the net-conf.json placeholder and the header, and bump this constant.
const FlannelVersion = "v0.28.10"

//go:embed assets/kube-flannel.yaml.tmpl
var flannelManifestTemplate string

var flannelTemplate = template.Must(template.New("kube-flannel.yaml").Option("missingkey=error").Parse(flannelManifestTemplate))

// flannelNetConf is flannel's net-conf.json (field order is output order).
type flannelNetConf struct {
	Network        string `json:"Network"`
	EnableNFTables bool   `json:"EnableNFTables"`
	Backend        struct {
		Type string `json:"Type"`
		Port int    `json:"Port"`
	} `json:"Backend"`
}

// flannelManifest renders the CNI manifest: the lab's pod range and VXLAN port.
func (c *config) flannelManifest() ([]byte, error) {
	nc := flannelNetConf{Network: c.podCIDR.String()}
	nc.Backend.Type = "vxlan"
	nc.Backend.Port = c.tunnelPort
	j, err := json.MarshalIndent(nc, "    ", "  ")
	if err != nil {
		return nil, fmt.Errorf("cloudinit: marshalling flannel net-conf.json: %w", err)
	}
	var out bytes.Buffer
	err = flannelTemplate.Execute(&out, map[string]string{
		"Version":     FlannelVersion,
		"NetConfJSON": "    " + string(j), // a block scalar, indented under net-conf.json: |
	})
	if err != nil {
		return nil, fmt.Errorf("cloudinit: rendering the flannel manifest: %w", err)
	}
	return out.Bytes(), nil
}

// markerReaderName names the Role and RoleBinding that let the operator read the marker.
const markerReaderName = "labforge-bootstrap-marker-reader"

// serviceWatcherName names the ClusterRole and ClusterRoleBinding that let the operator
// watch the lab's Services and set a LoadBalancer Service's address.
const serviceWatcherName = "labforge-service-exposer"

// serviceWatcherRBAC is what the operator needs to expose the student's Services
// (a claim's status.exposed): list and watch Services in every namespace of the lab, and
// update their status (the address of a LoadBalancer Service, as a cloud provider sets
// it). Nothing else: not a Service's spec, not another kind.
func serviceWatcherRBAC() []any {
	meta := metav1.ObjectMeta{
		Name:   serviceWatcherName,
		Labels: map[string]string{labforgev1alpha1.LabelManagedBy: labforgev1alpha1.ManagedByValue},
	}
	role := rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "ClusterRole"},
		ObjectMeta: meta,
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"list", "watch"}},
			{APIGroups: []string{""}, Resources: []string{"services/status"}, Verbs: []string{"update"}},
		},
	}
	binding := rbacv1.ClusterRoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "ClusterRoleBinding"},
		ObjectMeta: meta,
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: serviceWatcherName},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: lab.OperatorUser}},
	}
	return []any{role, binding}
}

// checksReaderName names the ClusterRole and ClusterRoleBinding that let the operator
// read what the template's solution checks name.
const checksReaderName = "labforge-solution-checks-reader"

// OperatorRBAC renders the RBAC the lab's bootstrap applies for lab.OperatorUser (the
// simulated backend creates the same objects in a lab's real API server): a Role
// and RoleBinding granting `get` on the bootstrap marker ConfigMap, the Services access
// of serviceWatcherRBAC (exposed Services) and, when the template
// has solution checks, a ClusterRole and ClusterRoleBinding granting get, list and watch
// on exactly the resources those checks name (only the named objects, for a check that
// names one), and nothing else.
func OperatorRBAC(checks []labforgev1alpha1.SolutionCheck) ([]byte, error) {
	return operatorRBAC(checks)
}

// checkRules are the rules letting the operator watch what checks read: one per
// resource, with the names of the objects when every check of that resource names one.
// A check naming one object lists and watches it with a metadata.name field selector,
// which the API server authorizes against resourceNames.
func checkRules(checks []labforgev1alpha1.SolutionCheck) []rbacv1.PolicyRule {
	type entry struct {
		gvr   schema.GroupVersionResource
		names []string
		all   bool
	}
	var order []schema.GroupResource
	byResource := map[schema.GroupResource]*entry{}
	for i := range checks {
		gvr := templatecheck.ResourceOf(checks[i].Resource)
		gr := gvr.GroupResource()
		e := byResource[gr]
		if e == nil {
			e = &entry{gvr: gvr}
			byResource[gr] = e
			order = append(order, gr)
		}
		if n := checks[i].Resource.Name; n != "" {
			if !slices.Contains(e.names, n) {
				e.names = append(e.names, n)
			}
		} else {
			e.all = true
		}
	}
	rules := make([]rbacv1.PolicyRule, 0, len(order))
	for _, gr := range order {
		e := byResource[gr]
		rule := rbacv1.PolicyRule{APIGroups: []string{gr.Group}, Resources: []string{gr.Resource}, Verbs: []string{"get", "list", "watch"}}
		if !e.all {
			rule.ResourceNames = e.names
		}
		rules = append(rules, rule)
	}
	return rules
}

// operatorRBAC renders OperatorRBAC.
func operatorRBAC(checks []labforgev1alpha1.SolutionCheck) ([]byte, error) {
	meta := metav1.ObjectMeta{
		Name:      markerReaderName,
		Namespace: lab.MarkerNamespace,
		Labels:    map[string]string{labforgev1alpha1.LabelManagedBy: labforgev1alpha1.ManagedByValue},
	}
	role := rbacv1.Role{
		TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "Role"},
		ObjectMeta: meta,
		Rules: []rbacv1.PolicyRule{{
			APIGroups:     []string{""},
			Resources:     []string{"configmaps"},
			ResourceNames: []string{lab.MarkerConfigMap},
			Verbs:         []string{"get"},
		}},
	}
	binding := rbacv1.RoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "RoleBinding"},
		ObjectMeta: meta,
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: markerReaderName},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: lab.OperatorUser}},
	}
	objs := append([]any{role, binding}, serviceWatcherRBAC()...)
	if len(checks) > 0 {
		clusterMeta := metav1.ObjectMeta{Name: checksReaderName, Labels: meta.Labels}
		objs = append(objs,
			rbacv1.ClusterRole{
				TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "ClusterRole"},
				ObjectMeta: clusterMeta,
				Rules:      checkRules(checks),
			},
			rbacv1.ClusterRoleBinding{
				TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "ClusterRoleBinding"},
				ObjectMeta: clusterMeta,
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: checksReaderName},
				Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: lab.OperatorUser}},
			})
	}
	var docs []string
	for _, obj := range objs {
		y, err := marshalYAML(obj)
		if err != nil {
			return nil, fmt.Errorf("cloudinit: marshalling the operator's RBAC: %w", err)
		}
		docs = append(docs, string(y))
	}
	return []byte(strings.Join(docs, "---\n")), nil
}
