// Package render turns one LabEnvironment, the template snapshot it was built from and
// what the operator knows of the host cluster into the complete Kubernetes objects of
// the lab: its namespace, quota, limit range, network policies, Secrets, Service and
// VirtualMachines. Every function is pure: no client calls, nothing shared between the
// objects it returns, and the same input always gives the same output.
package render

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/hostcluster"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/ownership"
)

// Lab is what every renderer takes.
type Lab struct {
	// Env is the lab instance; its name, UID and pool are used.
	Env *labforgev1alpha1.LabEnvironment
	// Template is the snapshot of the template the lab is built from.
	Template labforgev1alpha1.LabTemplateSpec
	// Host is the host cluster's network.
	Host hostcluster.Network
	// NamespaceProof is the value of the namespace's ownership.AnnotationProof, which
	// the controller computes with the operator's key; none when empty.
	NamespaceProof string
	// OperatorNamespace is where the operator runs; only it may reach the lab API from
	// inside the host cluster.
	OperatorNamespace string
}

// Namespace returns the name of the lab's namespace.
func (l Lab) Namespace() string { return lab.Namespace(l.Env.Name) }

// Labels returns the labels every object of the lab carries.
func (l Lab) Labels() map[string]string {
	labels := map[string]string{
		labforgev1alpha1.LabelManagedBy:   labforgev1alpha1.ManagedByValue,
		labforgev1alpha1.LabelEnvironment: l.Env.Name,
		labforgev1alpha1.LabelTemplate:    l.Env.Spec.TemplateRef.Name,
	}
	if l.Env.Spec.PoolRef != nil {
		labels[labforgev1alpha1.LabelPool] = l.Env.Spec.PoolRef.Name
	}
	return labels
}

// OwnerReference makes the LabEnvironment the controlling owner, so that garbage
// collection removes anything the namespace deletion did not.
func (l Lab) OwnerReference() metav1.OwnerReference {
	return ownership.ControllerReference("LabEnvironment", l.Env)
}

// objectMeta returns the metadata of a namespaced object of the lab.
func (l Lab) objectMeta(name string, extraLabels map[string]string) metav1.ObjectMeta {
	labels := l.Labels()
	for k, v := range extraLabels {
		labels[k] = v
	}
	return metav1.ObjectMeta{
		Name:            name,
		Namespace:       l.Namespace(),
		Labels:          labels,
		OwnerReferences: []metav1.OwnerReference{l.OwnerReference()},
	}
}

// Nodes returns the lab's VM names and roles, control plane first.
func (l Lab) Nodes() []Node {
	nodes := []Node{{Name: lab.ControlPlaneVM, Role: lab.RoleControlPlane, Size: labforgev1alpha1.NodeSize(l.Template.ControlPlane)}}
	for i := 1; i <= int(l.Template.Workers.Count); i++ {
		nodes = append(nodes, Node{Name: lab.WorkerVM(i), Role: lab.RoleWorker, Size: l.Template.Workers.NodeSize})
	}
	return nodes
}

// Node is one VM of a lab.
type Node struct {
	Name string
	Role string
	Size labforgev1alpha1.NodeSize
}
