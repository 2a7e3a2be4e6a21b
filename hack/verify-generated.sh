#!/usr/bin/env bash
# Regenerates every generated file (deepcopy, CRDs, RBAC, KubeVirt test CRDs) and fails if
# any of them changed, so that a stale generated file can never be committed unnoticed.
set -euo pipefail
cd "$(dirname "$0")/.."
generated=(api/v1alpha1/zz_generated.deepcopy.go config/crd/bases config/rbac/role.yaml config/kubevirt)
before=$(mktemp -d)
trap 'rm -rf "$before"' EXIT
for p in "${generated[@]}"; do
	[ -e "$p" ] && mkdir -p "$before/$(dirname "$p")" && cp -r "$p" "$before/$p"
done
make -s generate manifests kubevirt-crds >/dev/null
stale=0
for p in "${generated[@]}"; do
	if ! diff -ru "$before/$p" "$p" >/dev/null 2>&1; then
		echo "generated file out of date: $p"
		diff -ru "$before/$p" "$p" | head -40 || true
		stale=1
	fi
done
if [ "$stale" = 1 ]; then
	echo "The files above were regenerated in place: review and commit them."
	exit 1
fi
