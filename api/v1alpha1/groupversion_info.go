// Package v1alpha1 contains the labforge.dev/v1alpha1 API: LabTemplate, LabPool,
// LabEnvironment and LabClaim.
//
// +kubebuilder:object:generate=true
// +groupName=labforge.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the API group and version of every labforge kind.
	GroupVersion = schema.GroupVersion{Group: "labforge.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the labforge kinds with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the labforge kinds to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
