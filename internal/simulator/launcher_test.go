package simulator

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
)

func TestRenderLauncherPod(t *testing.T) {
	mem := resource.MustParse("2Gi")
	spec := kubevirtv1.VirtualMachineInstanceSpec{
		Hostname: "worker-1",
		Domain: kubevirtv1.DomainSpec{
			CPU:       &kubevirtv1.CPU{Sockets: 1, Cores: 2, Threads: 1},
			Memory:    &kubevirtv1.Memory{Guest: &mem},
			Resources: kubevirtv1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: mem}},
			Devices:   kubevirtv1.Devices{Interfaces: []kubevirtv1.Interface{{Name: "default"}}},
		},
		Networks: []kubevirtv1.Network{{Name: "default", NetworkSource: kubevirtv1.NetworkSource{Pod: &kubevirtv1.PodNetwork{}}}},
		Volumes: []kubevirtv1.Volume{
			{Name: "rootdisk", VolumeSource: kubevirtv1.VolumeSource{ContainerDisk: &kubevirtv1.ContainerDiskSource{Image: "quay.io/containerdisks/ubuntu:22.04"}}},
			{Name: "cloudinit", VolumeSource: kubevirtv1.VolumeSource{CloudInitNoCloud: &kubevirtv1.CloudInitNoCloudSource{}}},
		},
	}
	vmi := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{
		Name: "worker-1", Namespace: "lab-a", UID: "vmi-uid",
		Labels: map[string]string{"labforge.dev/environment": "a"},
		Annotations: map[string]string{
			"kubernetes.io/egress-bandwidth":                   "100M",
			"kubectl.kubernetes.io/last-applied-configuration": "{}",
		},
	}}
	type want struct {
		cpu, memory string
		limits      map[corev1.ResourceName]string
	}
	tests := map[string]struct {
		cfg  launcherConfig
		want want
	}{
		"KubeVirt's default ratio of 10": {cfg: launcherConfig{cpuAllocationRatio: 10}, want: want{
			cpu: "200m", memory: "2328Mi",
			limits: map[corev1.ResourceName]string{resourceKVM: "1", resourceTun: "1", resourceVhostNet: "1"},
		}},
		"ratio 1": {cfg: launcherConfig{cpuAllocationRatio: 1}, want: want{
			cpu: "2", memory: "2328Mi",
			limits: map[corev1.ResourceName]string{resourceKVM: "1", resourceTun: "1", resourceVhostNet: "1"},
		}},
		"a quota with limits.cpu and limits.memory": {cfg: launcherConfig{cpuAllocationRatio: 10, autoCPULimit: true, autoMemoryLimit: true}, want: want{
			cpu: "200m", memory: "2328Mi",
			limits: map[corev1.ResourceName]string{"cpu": "2", "memory": "4656Mi", resourceKVM: "1", resourceTun: "1", resourceVhostNet: "1"},
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			pod := renderLauncherPod(vmi, &spec, tc.cfg)
			if pod.GenerateName != "virt-launcher-worker-1-" || pod.Namespace != "lab-a" {
				t.Errorf("name %q in %q", pod.GenerateName, pod.Namespace)
			}
			if !metav1.IsControlledBy(pod, vmi) {
				t.Errorf("owners %+v", pod.OwnerReferences)
			}
			wantLabels := map[string]string{
				"labforge.dev/environment": "a", "kubevirt.io": "virt-launcher", "kubevirt.io/created-by": "vmi-uid",
				"vm.kubevirt.io/name": "worker-1", "vmi.kubevirt.io/id": "worker-1",
			}
			if diff := cmp.Diff(wantLabels, pod.Labels); diff != "" {
				t.Errorf("labels (-want +got):\n%s", diff)
			}
			if pod.Annotations["kubernetes.io/egress-bandwidth"] != "100M" || pod.Annotations["kubevirt.io/domain"] != "worker-1" {
				t.Errorf("annotations %v", pod.Annotations)
			}
			if _, ok := pod.Annotations["kubectl.kubernetes.io/last-applied-configuration"]; ok {
				t.Errorf("kubectl's annotation reached the pod")
			}
			var names []string
			for _, c := range pod.Spec.Containers {
				names = append(names, c.Name)
			}
			for _, c := range pod.Spec.InitContainers {
				names = append(names, "init:"+c.Name)
			}
			if diff := cmp.Diff([]string{"compute", "volumerootdisk", "init:container-disk-binary", "init:volumerootdisk-init"}, names); diff != "" {
				t.Errorf("containers (-want +got):\n%s", diff)
			}
			compute := pod.Spec.Containers[0].Resources
			if got := compute.Requests.Cpu().String(); got != tc.want.cpu {
				t.Errorf("compute CPU request %s, want %s", got, tc.want.cpu)
			}
			if got, want := compute.Requests[corev1.ResourceMemory], resource.MustParse(tc.want.memory); got.Cmp(want) != 0 {
				t.Errorf("compute memory request %s, want %s", got.String(), tc.want.memory)
			}
			if got := compute.Requests[corev1.ResourceEphemeralStorage]; got.String() != "50M" {
				t.Errorf("compute ephemeral-storage request %s", got.String())
			}
			gotLimits := map[corev1.ResourceName]string{}
			for k, v := range compute.Limits {
				q := v
				if k == corev1.ResourceMemory {
					gotLimits[k] = resource.NewQuantity(q.Value(), resource.BinarySI).String()
					continue
				}
				gotLimits[k] = q.String()
			}
			if diff := cmp.Diff(tc.want.limits, gotLimits); diff != "" {
				t.Errorf("compute limits (-want +got):\n%s", diff)
			}
			disk := pod.Spec.Containers[1].Resources
			if disk.Requests.Cpu().String() != "1m" || disk.Limits.Memory().String() != "40M" {
				t.Errorf("containerDisk container resources %+v", disk)
			}
			sc := pod.Spec.SecurityContext
			if *sc.RunAsUser != 107 || !*sc.RunAsNonRoot || *sc.FSGroup != 107 {
				t.Errorf("pod security context %+v", sc)
			}
			csc := pod.Spec.Containers[0].SecurityContext
			if *csc.AllowPrivilegeEscalation || *csc.Privileged || strings.Join(capNames(csc.Capabilities.Drop), ",") != "ALL" ||
				strings.Join(capNames(csc.Capabilities.Add), ",") != "NET_BIND_SERVICE" {
				t.Errorf("compute security context %+v", csc)
			}
			if pod.Spec.NodeSelector[kubevirtv1.NodeSchedulable] != "true" || *pod.Spec.TerminationGracePeriodSeconds != 60 {
				t.Errorf("node selector %v, grace %d", pod.Spec.NodeSelector, *pod.Spec.TerminationGracePeriodSeconds)
			}
		})
	}
}

func capNames(cs []corev1.Capability) []string {
	var out []string
	for _, c := range cs {
		out = append(out, string(c))
	}
	return out
}

// The launcher's CPU request is formatted as KubeVirt formats it, rounding quirks
// included: the API server then rounds it the same way.
func TestCPURequest(t *testing.T) {
	for _, tc := range []struct {
		vcpus int64
		ratio int
		want  string
	}{{1, 10, "100m"}, {2, 10, "200m"}, {4, 1, "4"}, {32, 10, "3200m"}, {3, 2, "1500m"}} {
		if got := cpuRequest(tc.vcpus, tc.ratio); got.Cmp(resource.MustParse(tc.want)) != 0 {
			t.Errorf("cpuRequest(%d, %d) = %s, want %s", tc.vcpus, tc.ratio, got.String(), tc.want)
		}
	}
}
