// Package index registers every field index labforge's controllers list by, in one place
// (Cluster API's util/index, Kueue's indexer.Setup): the manager calls Setup once, before
// any controller, so no controller depends on another having registered an index first.
package index

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

// The indexes, by the kind they index and what they index it by. An index's name is only
// a key for client.MatchingFields: where it reads like a field path, the value it indexes
// by is the one its comment gives, not necessarily that field's.
const (
	// LabByClaimUID indexes LabEnvironments by the UID of the claim they are bound to.
	LabByClaimUID = "spec.claimRef.uid"
	// LabByClaimName indexes LabEnvironments by the namespace/name of the claim they are
	// bound to (client.ObjectKey.String(), not the name alone): what is left to find a lab
	// by once its claim is gone.
	LabByClaimName = "spec.claimRef.name"
	// LabByTemplate indexes LabEnvironments by the template they name.
	LabByTemplate = "spec.templateRef.name"
	// ClaimByPool indexes LabClaims by the pool they name.
	ClaimByPool = "spec.poolRef.name"
	// ClaimByTemplate indexes LabClaims by the template they name (spec.templateRef).
	ClaimByTemplate = "spec.templateRef.name"
	// ClaimWaitingForNodePorts indexes the LabClaims waiting for NodePorts, so that a
	// freed port wakes exactly those: "true" for a claim whose Ready condition's reason is
	// NodePortsExhausted. LabClaim's status has no waitingForNodePorts field.
	ClaimWaitingForNodePorts = "status.waitingForNodePorts"
	// PoolByTemplate indexes LabPools by their template.
	PoolByTemplate = "spec.templateRef.name"
)

// Setup registers every index with indexer.
func Setup(ctx context.Context, indexer client.FieldIndexer) error {
	for _, i := range []struct {
		obj   client.Object
		field string
		fn    client.IndexerFunc
	}{
		{&labforgev1alpha1.LabEnvironment{}, LabByClaimUID, LabClaimUID},
		{&labforgev1alpha1.LabEnvironment{}, LabByClaimName, LabClaimName},
		{&labforgev1alpha1.LabEnvironment{}, LabByTemplate, LabTemplate},
		{&labforgev1alpha1.LabClaim{}, ClaimByPool, ClaimPool},
		{&labforgev1alpha1.LabClaim{}, ClaimByTemplate, ClaimTemplate},
		{&labforgev1alpha1.LabClaim{}, ClaimWaitingForNodePorts, ClaimWaiting},
		{&labforgev1alpha1.LabPool{}, PoolByTemplate, PoolTemplate},
	} {
		if err := indexer.IndexField(ctx, i.obj, i.field, i.fn); err != nil {
			return fmt.Errorf("indexing %T by %s: %w", i.obj, i.field, err)
		}
	}
	return nil
}

// LabClaimUID is the LabByClaimUID extractor.
func LabClaimUID(o client.Object) []string {
	if ref := o.(*labforgev1alpha1.LabEnvironment).Spec.ClaimRef; ref != nil {
		return []string{string(ref.UID)}
	}
	return nil
}

// LabClaimName is the LabByClaimName extractor.
func LabClaimName(o client.Object) []string {
	if ref := o.(*labforgev1alpha1.LabEnvironment).Spec.ClaimRef; ref != nil {
		return []string{client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}.String()}
	}
	return nil
}

// LabTemplate is the LabByTemplate extractor.
func LabTemplate(o client.Object) []string {
	return []string{o.(*labforgev1alpha1.LabEnvironment).Spec.TemplateRef.Name}
}

// ClaimPool is the ClaimByPool extractor.
func ClaimPool(o client.Object) []string {
	if ref := o.(*labforgev1alpha1.LabClaim).Spec.PoolRef; ref != nil {
		return []string{ref.Name}
	}
	return nil
}

// ClaimTemplate is the ClaimByTemplate extractor.
func ClaimTemplate(o client.Object) []string {
	if ref := o.(*labforgev1alpha1.LabClaim).Spec.TemplateRef; ref != nil {
		return []string{ref.Name}
	}
	return nil
}

// ClaimWaiting is the ClaimWaitingForNodePorts extractor: "true" for a claim whose Ready
// condition says the host ran out of NodePorts.
func ClaimWaiting(o client.Object) []string {
	c := meta.FindStatusCondition(o.(*labforgev1alpha1.LabClaim).Status.Conditions, labforgev1alpha1.ConditionReady)
	if c != nil && c.Reason == labforgev1alpha1.ReasonNodePortsExhausted {
		return []string{"true"}
	}
	return nil
}

// PoolTemplate is the PoolByTemplate extractor.
func PoolTemplate(o client.Object) []string {
	return []string{o.(*labforgev1alpha1.LabPool).Spec.TemplateRef.Name}
}
