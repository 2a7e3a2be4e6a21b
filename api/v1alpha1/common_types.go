package v1alpha1

// Condition types shared by the labforge kinds. Ready follows the Kubernetes convention:
// Unknown while work is in progress, False only for a real failure. Stalled is True when
// retrying cannot help without a change from a person.
const (
	// ConditionReady says whether the object does what its spec asks.
	ConditionReady = "Ready"
	// ConditionStalled is True when the controller has stopped retrying and needs a person.
	ConditionStalled = "Stalled"
)

// Label and annotation keys. The labforge.dev/ prefix is reserved for the operator: it is
// never copied from user input, and objects are selected by it only together with an
// owner check.
const (
	// LabelPrefix is the reserved prefix of every label and annotation labforge sets.
	LabelPrefix = "labforge.dev/"
	// LabelEnvironment names the LabEnvironment an object belongs to.
	LabelEnvironment = LabelPrefix + "environment"
	// LabelPool names the LabPool a LabEnvironment was created for.
	LabelPool = LabelPrefix + "pool"
	// LabelTemplate names the LabTemplate a LabEnvironment was built from.
	LabelTemplate = LabelPrefix + "template"
	// LabelManagedBy marks objects created by labforge.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of LabelManagedBy on labforge's objects.
	ManagedByValue = "labforge"
)

// LocalObjectReference names an object of a known kind in the same scope.
type LocalObjectReference struct {
	// Name of the referenced object.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +required
	Name string `json:"name"`
}
