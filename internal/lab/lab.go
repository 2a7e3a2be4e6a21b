// Package lab holds the names every part of labforge agrees on for one lab: where its
// objects live in the host cluster, what its Secrets hold, how its API is reached, and how
// the lab reports that its bootstrap finished. The environment controller writes them, the
// renderers put them into VMs and cloud-init, the readiness probe reads them, and the
// simulated VM backend plays the lab's side of them.
package lab

import "fmt"

// NamespacePrefix starts the name of every lab namespace: lab-<LabEnvironment name>.
const NamespacePrefix = "lab-"

// Namespace returns the namespace of the LabEnvironment named env.
func Namespace(env string) string { return NamespacePrefix + env }

// Node roles, the value of LabelRole.
const (
	RoleControlPlane = "control-plane"
	RoleWorker       = "worker"
)

// Labels labforge puts on a lab's objects (besides labforgev1alpha1.LabelEnvironment).
const (
	// LabelRole is the role of a VM (and of its launcher pod): control-plane or worker.
	LabelRole = "labforge.dev/role"
	// LabelNode is the name of a VM, on the VM's pod template, so Services can select it.
	LabelNode = "labforge.dev/node"
	// LabelUserData marks a cloud-init Secret; its value is the VM's name. The operator
	// never reads these Secrets back, so its cache keeps their metadata only.
	LabelUserData = "labforge.dev/user-data"
)

// ControlPlaneVM is the name of the control-plane VirtualMachine.
const ControlPlaneVM = "control-plane"

// WorkerVM returns the name of the i-th worker VirtualMachine, counting from 1.
func WorkerVM(i int) string { return fmt.Sprintf("worker-%d", i) }

// The PKI Secret holds the lab's key material. The operator creates it once and never
// regenerates it while the lab lives: a second CA would lock every node out.
const (
	PKISecret = "lab-pki"
	// PKICACert and PKICAKey are the lab cluster's CA (PEM), handed to kubeadm.
	PKICACert = "ca.crt"
	PKICAKey  = "ca.key"
	// PKIBootstrapToken is the kubeadm bootstrap token workers join with.
	PKIBootstrapToken = "bootstrap-token"
	// PKIOperatorCert and PKIOperatorKey are the operator's own client credential for the
	// lab API, user OperatorUser.
	PKIOperatorCert = "operator.crt"
	PKIOperatorKey  = "operator.key"
)

// OperatorUser is the user name of the operator's client certificate in every lab. The
// bootstrap grants it read access to the bootstrap marker only.
const OperatorUser = "labforge-operator"

// UserDataSecret returns the name of the cloud-init Secret of the VM named vm; its key
// UserDataKey holds the user-data (KubeVirt's userDataSecretRef).
func UserDataSecret(vm string) string { return "cloud-init-" + vm }

// UserDataKey is the key of the user-data in a cloud-init Secret.
const UserDataKey = "userdata"

// AccessCredentialsSecret holds the students' SSH public keys (one per key of the
// Secret); KubeVirt's guest agent propagates them into every VM.
const AccessCredentialsSecret = "ssh-authorized-keys"

// The data disk of every VM: an emptyDisk the guest finds by its virtio serial, as
// /dev/disk/by-id/virtio-<serial> (udev's name for a virtio-blk disk with a serial), never
// by its /dev/vdX position. A virtio-blk serial holds at most 20 bytes, and KubeVirt
// accepts [A-Za-z0-9_.+-] (kubevirt/kubevirt v1.8, pkg/virt-api/webhooks/
// validating-webhook/admitters/vmi-create-admitter.go); cloud-init reads a "." in a device
// name as a partition number, so the serial has none.
const (
	DataDiskVolume = "datadisk"
	DataDiskSerial = "labforge-data"
)

// The lab API server is reached inside the host cluster through APIService.
const (
	APIService = "lab-api"
	APIPort    = 6443
	SSHPort    = 22
)

// APIServiceHost returns the fully qualified in-cluster DNS name of the lab API Service of
// env in the host's cluster domain (such as cluster.local). Fully qualified, it resolves
// without the pod's search domains (which a guest gets only through DHCP) and sends no
// query upstream first. It is the name the lab API certificate carries and what the
// operator's probe and the students' kubeconfigs (tls-server-name) check.
func APIServiceHost(env, clusterDomain string) string {
	return fmt.Sprintf("%s.%s.svc.%s", APIService, Namespace(env), clusterDomain)
}

// DefaultClusterDomain is the DNS domain of the host clusters labforge runs on locally
// (labforge dev, the simulator, the tests).
const DefaultClusterDomain = "cluster.local"

// The bootstrap marker: a ConfigMap the lab's bootstrap writes into its own kube-system
// namespace as its last step, which the operator reads through the lab API.
const (
	MarkerNamespace = "kube-system"
	MarkerConfigMap = "labforge-bootstrap"
	// MarkerPhase is Complete or Failed.
	MarkerPhase = "phase"
	// MarkerMessage says what failed, in the lab's own words.
	MarkerMessage          = "message"
	MarkerPhaseComplete    = "Complete"
	MarkerPhaseFailed      = "Failed"
	MarkerMaxMessageLength = 1024
)
