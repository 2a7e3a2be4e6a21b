package render

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
)

func TestLauncherMemory(t *testing.T) {
	spec := func(mem string, cores, threads uint32, mutate ...func(*kubevirtv1.VirtualMachineInstanceSpec)) *kubevirtv1.VirtualMachineInstanceSpec {
		q := resource.MustParse(mem)
		s := &kubevirtv1.VirtualMachineInstanceSpec{Domain: kubevirtv1.DomainSpec{
			CPU:       &kubevirtv1.CPU{Sockets: 1, Cores: cores, Threads: threads},
			Memory:    &kubevirtv1.Memory{Guest: &q},
			Resources: kubevirtv1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: q}},
		}}
		for _, m := range mutate {
			m(s)
		}
		return s
	}
	tests := map[string]struct {
		spec         *kubevirtv1.VirtualMachineInstanceSpec
		wantOverhead string
		wantRequest  string
	}{
		// 1Mi of page tables, 220Mi of processes, 8Mi per vCPU, 8Mi IOThread, 32Mi video.
		"smallest the CRD allows": {spec: spec("512Mi", 1, 1), wantOverhead: "269Mi", wantRequest: "781Mi"},
		"sample control plane":    {spec: spec("2Gi", 2, 1), wantOverhead: "280Mi", wantRequest: "2328Mi"},
		// 128Mi of page tables and 32 vCPUs: more than the 512Mi the quota once assumed.
		"largest the CRD allows": {spec: spec("64Gi", 16, 2), wantOverhead: "644Mi", wantRequest: "66180Mi"},
		"no graphics device": {spec: spec("2Gi", 2, 1, func(s *kubevirtv1.VirtualMachineInstanceSpec) {
			s.Domain.Devices.AutoattachGraphicsDevice = ptr.To(false)
		}), wantOverhead: "248Mi", wantRequest: "2296Mi"},
		"guest memory only, no request": {spec: spec("2Gi", 2, 1, func(s *kubevirtv1.VirtualMachineInstanceSpec) {
			s.Domain.Resources.Requests = nil
		}), wantOverhead: "276Mi", wantRequest: "2324Mi"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			overhead := LauncherMemoryOverhead(tc.spec)
			if want := resource.MustParse(tc.wantOverhead); overhead.Cmp(want) != 0 {
				t.Errorf("overhead %s (%d bytes), want %s", overhead.String(), overhead.Value(), tc.wantOverhead)
			}
			request := LauncherMemoryRequest(tc.spec)
			if want := resource.MustParse(tc.wantRequest); request.Cmp(want) != 0 {
				t.Errorf("request %s (%d bytes), want %s", request.String(), request.Value(), tc.wantRequest)
			}
		})
	}
}

// A launcher pod's compute container has a memory request and no memory limit: the
// lab's LimitRange must neither copy a default limit below that request nor require a
// limit through a maximum.
func TestLimitRangeNeverLimitsALauncher(t *testing.T) {
	lr := LimitRange(testLab(2))
	if len(lr.Spec.Limits) != 1 {
		t.Fatalf("limits %+v", lr.Spec.Limits)
	}
	item := lr.Spec.Limits[0]
	if len(item.Default) != 0 || len(item.Max) != 0 || len(item.Min) != 0 || len(item.MaxLimitRequestRatio) != 0 {
		t.Errorf("LimitRange item %+v: want only defaultRequest", item)
	}
	if got := item.DefaultRequest.Memory().String(); got != "16Mi" {
		t.Errorf("default memory request %s", got)
	}
}
