package scripts_test

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

// fakeKey is claim A's generated private key in the fake cluster. It is not a real key: the
// fake ssh only hashes it.
const fakeKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nbm90LWEtcmVhbC1rZXk=\n-----END OPENSSH PRIVATE KEY-----\n"

// cluster is the host cluster the fake kubectl serves: two Ready claims (default/alice on
// lab alpha, default/bob on lab bravo), their labs' VMIs and launcher pods, two nodes, the
// kubernetes and kube-dns Services and claim A's key Secret. Every address is on loopback
// (all of 127.0.0.0/8 is local on Linux), so the probes the fake ssh runs here get real
// answers: a port with a listener connects, any other is refused.
type cluster struct {
	claimA, claimB *labforgev1alpha1.LabClaim
	envA, envB     *labforgev1alpha1.LabEnvironment
	vmis           []*kubevirtv1.VirtualMachineInstance
	pods           []*corev1.Pod
	nodes          []*corev1.Node
	services       []*corev1.Service
	slices         []*discoveryv1.EndpointSlice
	secrets        []*corev1.Secret
}

// ports are the ports of the fake cluster's destinations: open ones have a listener,
// closed ones none.
type ports struct {
	worker, dns, allow, internet         int // open
	probe1, probe2, kubernetes, endpoint int // closed
	labAPI, bobSSH, bobAPI, forbid       int // closed
}

// aliceSSH is claim A's SSH NodePort; the fake ssh never dials it.
const aliceSSH = 30022

// listen opens a listener on ip's port 0 that accepts and closes every connection until
// the test ends, and returns its port.
func listen(t *testing.T, ip string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("listen on %s: %v", ip, err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// blackhole returns the port of a listener on ip that never answers a new connection:
// nothing accepts, and one connection fills its accept queue, so the kernel drops every
// later SYN, as a CNI drops a denied packet.
func blackhole(t *testing.T, ip string) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	sa := &syscall.SockaddrInet4{}
	copy(sa.Addr[:], net.ParseIP(ip).To4())
	if err := syscall.Bind(fd, sa); err != nil {
		t.Fatalf("bind %s: %v", ip, err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	name, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := name.(*syscall.SockaddrInet4).Port
	filler, err := net.Dial("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = filler.Close() })
	return port
}

// closedPort returns a port nothing listens on, on any address: one the kernel just handed
// out and that was released again.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	return port
}

func newPorts(t *testing.T) ports {
	return ports{
		worker: listen(t, "127.0.1.2"), dns: listen(t, "127.0.5.10"),
		allow: listen(t, "127.0.7.1"), internet: listen(t, "127.0.7.3"),
		probe1: closedPort(t), probe2: closedPort(t), kubernetes: closedPort(t), endpoint: closedPort(t),
		labAPI: closedPort(t), bobSSH: closedPort(t), bobAPI: closedPort(t), forbid: closedPort(t),
	}
}

func meta(namespace, name string, labels map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels}
}

func readyClaim(name, lab string, sshPort, apiPort int) *labforgev1alpha1.LabClaim {
	return &labforgev1alpha1.LabClaim{
		TypeMeta:   metav1.TypeMeta{APIVersion: "labforge.dev/v1alpha1", Kind: "LabClaim"},
		ObjectMeta: meta("default", name, nil),
		Status: labforgev1alpha1.LabClaimStatus{
			Lab: lab,
			SSH: &labforgev1alpha1.SSHEndpoint{Host: "127.0.0.1", Port: int32(sshPort), User: "ubuntu",
				Command: "ssh -p " + strconv.Itoa(sshPort) + " ubuntu@127.0.0.1"},
			APIServerURL:     "https://127.0.0.1:" + strconv.Itoa(apiPort),
			SSHKeySecretName: name + "-ssh",
			Conditions: []metav1.Condition{
				{Type: "Bound", Status: metav1.ConditionTrue, Reason: "Bound"},
				{Type: "Ready", Status: metav1.ConditionTrue, Reason: "LabReady"},
			},
		},
	}
}

func environment(name string) *labforgev1alpha1.LabEnvironment {
	return &labforgev1alpha1.LabEnvironment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "labforge.dev/v1alpha1", Kind: "LabEnvironment"},
		ObjectMeta: meta("", name, nil),
		Status:     labforgev1alpha1.LabEnvironmentStatus{Namespace: "lab-" + name},
	}
}

// vm returns a VM's VMI, reporting the given addresses (as a guest agent does), and its
// launcher pod at podIP ("" for none).
func vm(namespace, name string, reported []string, podIP string) (*kubevirtv1.VirtualMachineInstance, *corev1.Pod) {
	vmi := &kubevirtv1.VirtualMachineInstance{
		TypeMeta:   metav1.TypeMeta{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachineInstance"},
		ObjectMeta: meta(namespace, name, map[string]string{"labforge.dev/node": name}),
		Status:     kubevirtv1.VirtualMachineInstanceStatus{Phase: kubevirtv1.Running},
	}
	if len(reported) > 0 {
		vmi.Status.Interfaces = []kubevirtv1.VirtualMachineInstanceNetworkInterface{{Name: "default", IP: reported[0], IPs: reported}}
	}
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: meta(namespace, "virt-launcher-"+name+"-x7k2p", map[string]string{"labforge.dev/node": name, "kubevirt.io": "virt-launcher"}),
	}
	if podIP != "" {
		pod.Status.PodIP = podIP
		pod.Status.PodIPs = []corev1.PodIP{{IP: podIP}}
	}
	return vmi, pod
}

func node(name string, addresses ...corev1.NodeAddress) *corev1.Node {
	return &corev1.Node{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: meta("", name, nil),
		Status: corev1.NodeStatus{Addresses: append([]corev1.NodeAddress{
			{Type: corev1.NodeHostName, Address: name}}, addresses...)},
	}
}

func service(namespace, name string, clusterIP string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: meta(namespace, name, nil),
		Spec:       corev1.ServiceSpec{ClusterIP: clusterIP, ClusterIPs: []string{clusterIP}, Ports: ports},
	}
}

func newCluster(p ports) *cluster {
	c := &cluster{
		claimA: readyClaim("alice", "alpha", aliceSSH, 30443),
		claimB: readyClaim("bob", "bravo", p.bobSSH, p.bobAPI),
		envA:   environment("alpha"),
		envB:   environment("bravo"),
	}
	for _, v := range []struct {
		namespace, name string
		reported        []string
		podIP           string
	}{
		{"lab-alpha", "control-plane", []string{"127.0.1.1"}, "127.0.1.1"},
		{"lab-alpha", "worker-1", []string{"127.0.1.2"}, "127.0.1.2"},
		// Lab B's guest agents lie: the control plane reports nothing, the worker garbage
		// and a link-local address. The launcher pods' addresses still count.
		{"lab-bravo", "control-plane", nil, "127.0.2.1"},
		{"lab-bravo", "worker-1", []string{"127.0.2.2", "fe80::1", "127.0.2.2;id"}, "127.0.2.2"},
	} {
		vmi, pod := vm(v.namespace, v.name, v.reported, v.podIP)
		c.vmis = append(c.vmis, vmi)
		c.pods = append(c.pods, pod)
	}
	c.nodes = []*corev1.Node{
		node("node-1", corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "127.0.3.1"}),
		node("node-2", corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "127.0.3.2"},
			corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "127.0.3.102"}),
	}
	c.services = []*corev1.Service{
		service("default", "kubernetes", "127.0.4.1", corev1.ServicePort{Name: "https", Protocol: corev1.ProtocolTCP, Port: int32(p.kubernetes)}),
		service("kube-system", "kube-dns", "127.0.5.10",
			corev1.ServicePort{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53},
			corev1.ServicePort{Name: "dns-tcp", Protocol: corev1.ProtocolTCP, Port: int32(p.dns)}),
		service("lab-bravo", "lab-api", "127.0.2.10", corev1.ServicePort{Name: "api", Protocol: corev1.ProtocolTCP, Port: int32(p.labAPI)}),
		service("lab-alpha", "lab-api", "127.0.1.10", corev1.ServicePort{Name: "api", Protocol: corev1.ProtocolTCP, Port: 6443}),
	}
	c.slices = []*discoveryv1.EndpointSlice{{
		TypeMeta:    metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
		ObjectMeta:  meta("default", "kubernetes", map[string]string{discoveryv1.LabelServiceName: "kubernetes"}),
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"127.0.4.2"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(int32(p.endpoint))}},
	}}
	c.secrets = []*corev1.Secret{{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: meta("default", "alice-ssh", nil),
		Type:       corev1.SecretTypeSSHAuth,
		Data:       map[string][]byte{corev1.SSHAuthPrivateKey: []byte(fakeKey), "ssh-publickey": []byte("ssh-ed25519 AAAAC3Nza alice")},
	}}
	return c
}

// write stores the cluster's objects where the fake kubectl reads them.
func (c *cluster) write(t *testing.T, dir string) string {
	t.Helper()
	var items []any
	for _, o := range []any{c.claimA, c.claimB, c.envA, c.envB} {
		items = append(items, o)
	}
	for _, o := range c.vmis {
		items = append(items, o)
	}
	for _, o := range c.pods {
		items = append(items, o)
	}
	for _, o := range c.nodes {
		items = append(items, o)
	}
	for _, o := range c.services {
		items = append(items, o)
	}
	for _, o := range c.slices {
		items = append(items, o)
	}
	for _, o := range c.secrets {
		items = append(items, o)
	}
	raw, err := json.Marshal(map[string]any{"items": items})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "objects.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
