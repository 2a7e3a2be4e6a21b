#!/usr/bin/env bash
# What `make uninstall` runs: deletes labforge's CRDs, and so every lab, while the operator
# tears them down (it must run: docs/operations.md), then the claims' Secrets the garbage
# collector may miss. kubectl returns once the CRDs are gone. Uses $KUBECONFIG.
set -euo pipefail
cd "$(dirname "$0")/.."
kubectl delete --ignore-not-found "$@" -k config/crd
bash hack/sweep-claim-secrets.sh
