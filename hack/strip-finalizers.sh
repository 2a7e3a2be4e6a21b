#!/usr/bin/env bash
# Removes labforge's finalizers from every LabPool and LabEnvironment (and LabClaim, which
# labforge versions before decision 17 gave one), for when the
# operator is gone and cannot finish deleting them (an uninstall in the wrong order: see
# docs/operations.md). Without the operator nothing else would: CRD deletion waits on them
# forever. Once they are gone, kube-controller-manager's garbage collector removes each lab
# namespace (owned by its LabEnvironment); the claims' Secrets, which it may miss, go here.
# Uses kubectl's current context, or $KUBECONFIG.
set -euo pipefail
patch='{"metadata":{"finalizers":null}}'
# A kind whose CRD is already gone (claims carry no finalizer, so theirs goes at once)
# has nothing left to patch.
served() { kubectl get "$1" --all-namespaces --ignore-not-found -o name >/dev/null 2>&1; }
served labclaims.labforge.dev && kubectl get labclaims.labforge.dev --all-namespaces --ignore-not-found \
	-o jsonpath='{range .items[*]}{.metadata.namespace}{" "}{.metadata.name}{"\n"}{end}' |
	while read -r ns name; do
		[ -n "$name" ] && kubectl patch labclaims.labforge.dev -n "$ns" "$name" --type=merge -p "$patch"
	done
for kind in labpools.labforge.dev labenvironments.labforge.dev; do
	served "$kind" || continue
	kubectl get "$kind" --ignore-not-found -o name | while read -r obj; do
		kubectl patch "$obj" --type=merge -p "$patch"
	done
done
# The claims' CRD went with the uninstall (claims have no finalizer): sweep their Secrets.
bash "$(dirname "$0")/sweep-claim-secrets.sh"
