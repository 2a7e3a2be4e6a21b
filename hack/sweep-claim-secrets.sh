#!/usr/bin/env bash
# Deletes the Secrets labforge gave to claims (kubeconfigs and generated SSH keys, labelled
# labforge.dev/claim) once the LabClaim CRD is gone: the last step of an uninstall. Each is
# owned by its claim, but the garbage collector cannot always tell: when a CRD is deleted, its
# objects and then its API go, and a dependent the collector had not processed before the API
# went keeps an owner of a kind it can no longer look up, for good (kubernetes#102641).
# Does nothing while the CRD exists: live claims keep their Secrets. Uses $KUBECONFIG.
set -euo pipefail
if kubectl get customresourcedefinition labclaims.labforge.dev >/dev/null 2>&1; then
	echo "LabClaims are still served, so their Secrets stay; run $0 again once the CRD is gone" >&2
	exit 0
fi
kubectl delete secrets --all-namespaces --ignore-not-found \
	-l 'app.kubernetes.io/managed-by=labforge,labforge.dev/claim'
