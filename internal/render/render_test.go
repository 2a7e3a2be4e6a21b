package render

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/hostcluster"
	"github.com/labforge/labforge/internal/lab"
)

func testLab(workers int32, mutate ...func(*Lab)) Lab {
	env := &labforgev1alpha1.LabEnvironment{
		ObjectMeta: metav1.ObjectMeta{Name: "pool-a-x7k2p", UID: "uid-1"},
		Spec: labforgev1alpha1.LabEnvironmentSpec{
			TemplateRef: labforgev1alpha1.LocalObjectReference{Name: "broken-dns"},
			PoolRef:     &labforgev1alpha1.LocalObjectReference{Name: "pool-a"},
		},
	}
	l := Lab{
		Env: env,
		Template: labforgev1alpha1.LabTemplateSpec{
			KubernetesVersion: "v1.36.3",
			Image:             labforgev1alpha1.LabImage{ContainerDisk: "quay.io/containerdisks/ubuntu:22.04"},
			ControlPlane:      labforgev1alpha1.ControlPlaneSize{Cores: 2, Threads: 1, Memory: resource.MustParse("2Gi"), Disk: resource.MustParse("20Gi")},
			Workers:           labforgev1alpha1.WorkerSpec{Count: workers, NodeSize: labforgev1alpha1.NodeSize{Cores: 1, Threads: 2, Memory: resource.MustParse("1536Mi"), Disk: resource.MustParse("20Gi")}},
			SSHUser:           "ubuntu",
			Network:           labforgev1alpha1.LabNetwork{PodCIDR: "10.200.0.0/16", ServiceCIDR: "10.201.0.0/16", TunnelPort: 8475},
		},
		Host:              testHost(),
		OperatorNamespace: "labforge-system",
	}
	for _, m := range mutate {
		m(&l)
	}
	return l
}

func TestVirtualMachines(t *testing.T) {
	tests := map[string]struct {
		lab             Lab
		wantNames       []string
		wantAnnotations map[string]string
	}{
		"single node": {lab: testLab(0), wantNames: []string{"control-plane"}},
		"one worker":  {lab: testLab(1), wantNames: []string{"control-plane", "worker-1"}},
		"three workers with bandwidth limits": {
			lab: testLab(3, func(l *Lab) {
				in, out := resource.MustParse("50M"), resource.MustParse("10M")
				l.Template.Network.Bandwidth = &labforgev1alpha1.Bandwidth{Ingress: &in, Egress: &out}
			}),
			wantNames:       []string{"control-plane", "worker-1", "worker-2", "worker-3"},
			wantAnnotations: map[string]string{"kubernetes.io/ingress-bandwidth": "50M", "kubernetes.io/egress-bandwidth": "10M"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			vms := VirtualMachines(tc.lab)
			var names []string
			for _, vm := range vms {
				names = append(names, vm.Name)
				if vm.Namespace != "lab-pool-a-x7k2p" {
					t.Errorf("%s: namespace = %q", vm.Name, vm.Namespace)
				}
				spec := vm.Spec.Template.Spec
				if diff := cmp.Diff(tc.wantAnnotations, vm.Spec.Template.ObjectMeta.Annotations); diff != "" {
					t.Errorf("%s: annotations (-want +got):\n%s", vm.Name, diff)
				}
				if got := spec.Domain.Devices.Interfaces[0]; got.Bridge == nil || got.Masquerade != nil {
					t.Errorf("%s: interface %+v, want bridge binding", vm.Name, got)
				}
				if got := spec.Volumes[1].CloudInitNoCloud; got == nil || got.UserDataSecretRef.Name != "cloud-init-"+vm.Name || got.UserData != "" {
					t.Errorf("%s: cloud-init volume %+v, want user-data only from Secret cloud-init-%s", vm.Name, got, vm.Name)
				}
				if got := spec.AccessCredentials[0].SSHPublicKey.PropagationMethod.QemuGuestAgent.Users; !cmp.Equal(got, []string{"ubuntu"}) {
					t.Errorf("%s: access credential users = %v", vm.Name, got)
				}
				wantCores, wantMem := uint32(1), "1536Mi"
				if vm.Name == lab.ControlPlaneVM {
					wantCores, wantMem = 2, "2Gi"
				}
				if spec.Domain.CPU.Cores != wantCores || spec.Domain.Memory.Guest.String() != wantMem {
					t.Errorf("%s: cpu %+v memory %s, want %d cores %s", vm.Name, spec.Domain.CPU, spec.Domain.Memory.Guest, wantCores, wantMem)
				}
				if got := vm.Spec.Template.ObjectMeta.Labels[lab.LabelNode]; got != vm.Name {
					t.Errorf("%s: node label %q", vm.Name, got)
				}
			}
			if diff := cmp.Diff(tc.wantNames, names); diff != "" {
				t.Errorf("VM names (-want +got):\n%s", diff)
			}
		})
	}
}

func TestResourceQuota(t *testing.T) {
	tests := map[string]struct {
		workers, maxExposed int32
		want                map[corev1.ResourceName]string
	}{
		// Control plane: 2 vCPUs + 100m; 2Gi + KubeVirt's overhead (4Mi of page tables,
		// 220Mi of processes, 2*8Mi per vCPU, 8Mi IOThread, 32Mi video) + 256Mi.
		"single node": {workers: 0, want: map[corev1.ResourceName]string{
			"pods": "2", "requests.cpu": "2100m", "requests.memory": "2584Mi", "services.nodeports": "4",
			"services.loadbalancers": "0", "persistentvolumeclaims": "0",
		}},
		"three workers": {workers: 3, want: map[corev1.ResourceName]string{
			// 2 + 3*2 vCPUs + 4*100m; 2584Mi + 3*(1536Mi + 3+220+16+8+32Mi + 256Mi).
			"pods": "8", "requests.cpu": "8400m", "requests.memory": "8797Mi", "services.nodeports": "4",
			"services.loadbalancers": "0", "persistentvolumeclaims": "0",
		}},
		// Twice the SSH and API ports and one port per Service the student may expose.
		"three exposed Services": {workers: 0, maxExposed: 3, want: map[corev1.ResourceName]string{
			"pods": "2", "requests.cpu": "2100m", "requests.memory": "2584Mi", "services.nodeports": "10",
			"services.loadbalancers": "0", "persistentvolumeclaims": "0",
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			q := ResourceQuota(testLab(tc.workers, func(l *Lab) { l.Template.Network.MaxExposedServices = tc.maxExposed }))
			got := map[corev1.ResourceName]string{}
			for k, v := range q.Spec.Hard {
				got[k] = v.String()
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("quota (-want +got):\n%s", diff)
			}
		})
	}
}

// testHost is a kubeadm-built host's network with NodeLocal DNSCache.
func testHost() hostcluster.Network {
	return hostcluster.Network{
		PodCIDRs:      []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")},
		ServiceCIDRs:  []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")},
		ClusterDomain: "cluster.local",
	}
}

// TestNoSharedMaps guards against a renderer handing out a map another object (or the
// input) also holds: a later edit of one object would silently change the other.
func TestNoSharedMaps(t *testing.T) {
	l := testLab(2)
	vms := VirtualMachines(l)
	vms[0].Labels["x"] = "y"
	vms[0].Spec.Template.ObjectMeta.Labels["x"] = "y"
	if _, ok := vms[1].Labels["x"]; ok {
		t.Error("two VMs share their labels map")
	}
	if _, ok := l.Labels()["x"]; ok {
		t.Error("a VM shares the lab's labels map")
	}
	if _, ok := vms[1].Spec.Template.ObjectMeta.Labels["x"]; ok {
		t.Error("two VM templates share their labels map")
	}
	pki := PKI{CACert: []byte("ca"), CAKey: []byte("key"), BootstrapToken: "t", OperatorCert: []byte("c"), OperatorKey: []byte("k")}
	s := PKISecret(l, pki)
	s.Data[lab.PKICACert][0] = 'X'
	if string(pki.CACert) != "ca" {
		t.Error("the PKI Secret aliases the input's bytes")
	}
}

func TestDeterministic(t *testing.T) {
	render := func() string {
		l := testLab(3)
		objs := []any{Namespace(l), ResourceQuota(l), LimitRange(l), APIService(l), NetworkPolicies(l), VirtualMachines(l)}
		b, err := json.Marshal(objs)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if first, second := render(), render(); first != second {
		t.Error("two renders of the same lab differ")
	}
}

func TestTemplateSnapshotRoundTrip(t *testing.T) {
	l := testLab(2)
	l.Template.Scenario = &labforgev1alpha1.Scenario{Script: "#!/bin/bash\nkubectl delete deploy coredns -n kube-system\n"}
	cm, err := TemplateSnapshotConfigMap(l, 7)
	if err != nil {
		t.Fatal(err)
	}
	spec, gen, err := TemplateFromSnapshot(cm)
	if err != nil {
		t.Fatal(err)
	}
	if gen != 7 {
		t.Errorf("generation = %d, want 7", gen)
	}
	if diff := cmp.Diff(l.Template, spec); diff != "" {
		t.Errorf("snapshot round trip (-want +got):\n%s", diff)
	}
}

// A VM reads its user-data once: the Secret is immutable and labelled so that the
// operator's cache can keep its metadata only.
func TestUserDataSecret(t *testing.T) {
	l := testLab(1)
	in := []byte("#cloud-config\n")
	s := UserDataSecret(l, "worker-1", in)
	if s.Name != "cloud-init-worker-1" || s.Namespace != l.Namespace() {
		t.Errorf("name = %s/%s, want %s/cloud-init-worker-1", s.Namespace, s.Name, l.Namespace())
	}
	if s.Immutable == nil || !*s.Immutable {
		t.Error("the user-data Secret is not immutable")
	}
	if got := s.Labels[lab.LabelUserData]; got != "worker-1" {
		t.Errorf("label %s = %q, want worker-1", lab.LabelUserData, got)
	}
	if got := s.Labels[labforgev1alpha1.LabelManagedBy]; got != labforgev1alpha1.ManagedByValue {
		t.Errorf("label %s = %q, want %s", labforgev1alpha1.LabelManagedBy, got, labforgev1alpha1.ManagedByValue)
	}
	in[0] = 'X'
	if string(s.Data[lab.UserDataKey]) != "#cloud-config\n" {
		t.Error("the Secret aliases the input's bytes")
	}
}

// The student's address must reach the VM unchanged: the lab's policies admit SSH and
// the API from outside the host's ranges only, and a masqueraded source is a node's.
// The exposed Service is the warm lab's API Service with only NodePort fields added, so
// that exposing a lab changes no field the LabEnvironment controller applied.
func TestExposedAPIService(t *testing.T) {
	l := testLab(1)
	svc := ExposedAPIService(l)
	if svc.Namespace != l.Namespace() || svc.Name != lab.APIService || svc.Spec.Type != corev1.ServiceTypeNodePort {
		t.Fatalf("service %s/%s of type %s, want the NodePort Service %s/%s", svc.Namespace, svc.Name, svc.Spec.Type, l.Namespace(), lab.APIService)
	}
	warm := APIService(l)
	if diff := cmp.Diff(warm.Spec.Ports, svc.Spec.Ports[:len(warm.Spec.Ports)]); diff != "" {
		t.Errorf("the warm Service's ports are not kept first, unchanged (-warm +exposed):\n%s", diff)
	}
	if !svc.Spec.PublishNotReadyAddresses || !cmp.Equal(warm.Spec.Selector, svc.Spec.Selector) {
		t.Errorf("selector %v, publishNotReadyAddresses %v: want the warm Service's", svc.Spec.Selector, svc.Spec.PublishNotReadyAddresses)
	}
	if svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		t.Errorf("externalTrafficPolicy = %s, want Local", svc.Spec.ExternalTrafficPolicy)
	}
	var ports []string
	for _, p := range svc.Spec.Ports {
		ports = append(ports, fmt.Sprintf("%s:%d", p.Name, p.Port))
	}
	if diff := cmp.Diff([]string{"api:6443", "ssh:22"}, ports); diff != "" {
		t.Errorf("ports (-want +got):\n%s", diff)
	}
	if got := svc.Spec.Selector[lab.LabelNode]; got != lab.ControlPlaneVM {
		t.Errorf("selector %v does not pick the control-plane VM", svc.Spec.Selector)
	}
}

// TestKubeconfigSecretAnnotations: a claim's kubeconfig Secret says which lab, which build
// of it, which expiry and which server it was minted for, so the claim controller mints it
// again when any of them changes (the server does when the lab's control plane moves).
func TestKubeconfigSecretAnnotations(t *testing.T) {
	claim := &labforgev1alpha1.LabClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "students", Name: "alice", UID: "c-1"}}
	expires := metav1.NewTime(time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC))
	tests := map[string]struct {
		namespaceUID, server string
		want                 map[string]string
	}{
		"node address": {namespaceUID: "ns-1", server: "https://192.168.1.11:31443", want: map[string]string{
			AnnotationExpiresAt: "2026-12-06T04:00:00Z", AnnotationLab: "lab-a", AnnotationLabNamespaceUID: "ns-1",
			AnnotationServer: "https://192.168.1.11:31443",
		}},
		"namespace unknown, IPv6 node": {server: "https://[fd00::11]:31443", want: map[string]string{
			AnnotationExpiresAt: "2026-12-06T04:00:00Z", AnnotationLab: "lab-a", AnnotationServer: "https://[fd00::11]:31443",
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := KubeconfigSecret(claim, "lab-a", tc.namespaceUID, tc.server, expires, []byte("kubeconfig"))
			if diff := cmp.Diff(tc.want, s.Annotations); diff != "" {
				t.Errorf("annotations (-want +got):\n%s", diff)
			}
			if s.Name != "alice-kubeconfig" || string(s.Data[KubeconfigKey]) != "kubeconfig" {
				t.Errorf("secret %s holds %q", s.Name, s.Data[KubeconfigKey])
			}
		})
	}
}

// TestClaimSecretLabels: both of a claim's Secrets name the claim and its namespace, which
// is what the operator-bounds admission policy checks against the namespace they are
// written to (config/policy/operator-bounds.yaml).
func TestClaimSecretLabels(t *testing.T) {
	claim := &labforgev1alpha1.LabClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "students", Name: "alice", UID: "c-1"}}
	want := map[string]string{
		labforgev1alpha1.LabelManagedBy: labforgev1alpha1.ManagedByValue,
		LabelClaim:                      "alice",
		LabelClaimNamespace:             "students",
	}
	secrets := map[string]*corev1.Secret{
		"kubeconfig": KubeconfigSecret(claim, "lab-a", "", "https://192.168.1.11:31443", metav1.Now(), nil),
		"key pair":   SSHKeySecret(claim, []byte("private"), "ssh-ed25519 AAAA"),
	}
	for name, s := range secrets {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(want, s.Labels); diff != "" {
				t.Errorf("labels (-want +got):\n%s", diff)
			}
			if s.Namespace != "students" {
				t.Errorf("namespace %q, want students", s.Namespace)
			}
		})
	}
}
