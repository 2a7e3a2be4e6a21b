#!/usr/bin/env bash
# Builds the real control-plane binaries labforge tests and runs against, from pinned Go
# modules, into bin/: etcd (v3.6.5), kube-apiserver, kube-controller-manager and kubeadm
# (v1.36.3). A stamp holding the hash of the pins makes a second run a no-op.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out="${LABFORGE_BIN_DIR:-$root/bin}"
tools="$root/hack/tools"
kube_version=v1.36.3
bins=(etcd kube-apiserver kube-controller-manager kubeadm)

stamp_value=$(cat "$tools/go.mod" "$tools/go.sum" "$tools/etcd/go.mod" "$tools/etcd/go.sum" "$0" | sha256sum | cut -d' ' -f1)
stamp="$out/.controlplane.stamp"
up_to_date=true
for b in "${bins[@]}"; do [ -x "$out/$b" ] || up_to_date=false; done
if $up_to_date && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_value" ]; then
	exit 0
fi

mkdir -p "$out"
echo ">> building etcd v3.6.5, kube-apiserver, kube-controller-manager, kubeadm $kube_version into $out (cold: several minutes)"
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=36 \
-X $pkg.gitTreeState=clean -X $pkg.gitCommit=labforge-hack-tools -X $pkg.buildDate=1970-01-01T00:00:00Z"
export CGO_ENABLED=0 GOFLAGS=-mod=readonly

# step WHAT CMD...: runs CMD, saying every 30 s that WHAT is still building and how long it
# has taken: a cold build is silent for minutes otherwise.
step() {
	local what=$1 start=$SECONDS
	shift
	echo ">> building $what"
	(while sleep 30; do echo ">>   still building $what ($((SECONDS - start)) s)"; done) &
	local ticker=$!
	local rc=0
	"$@" || rc=$?
	kill "$ticker" 2>/dev/null || true
	wait "$ticker" 2>/dev/null || true
	[ "$rc" = 0 ] || exit "$rc"
	echo ">> built $what in $((SECONDS - start)) s"
}
step "etcd v3.6.5" bash -c "cd '$tools/etcd' && go build -trimpath -ldflags '-s -w' -o '$out/etcd' ."
for b in kube-apiserver kube-controller-manager kubeadm; do
	step "$b $kube_version" bash -c "cd '$tools' && go build -trimpath -ldflags '$ldflags' -o '$out/$b' k8s.io/kubernetes/cmd/$b"
done
echo "$stamp_value" >"$stamp"
"$out/kube-apiserver" --version
