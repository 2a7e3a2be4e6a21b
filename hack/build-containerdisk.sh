#!/usr/bin/env bash
# Builds a prebaked, resized KubeVirt containerDisk for labforge labs: the Ubuntu 22.04
# cloud image with its root filesystem grown to --size, containerd configured the way the
# bootstrap configures it (systemd cgroups, kubeadm's pause image), kubelet, kubeadm and
# kubectl of one Kubernetes version (held), cri-tools and qemu-guest-agent installed. A
# template using it sets image.prebaked: true, and its labs skip the package step of the
# bootstrap. Control-plane images are not pre-pulled: that needs a running containerd,
# which virt-customize's appliance has not, and they land on the node's data disk anyway.
#
# It needs a Linux host with network access, libguestfs (virt-resize, virt-customize,
# virt-sparsify), qemu-img, curl, sha256sum, and podman, docker or buildah to build the
# image. It CANNOT run on labforge's development machines (no container engine, no
# network), and it was never run there: run it on a build host, then boot a lab from the
# image on a real KubeVirt host before using it in a pool.
#
# Usage:
#   hack/build-containerdisk.sh --kubernetes-version v1.36.3 --image registry.example.com/labs/ubuntu-k8s:v1.36.3 \
#     [--size 10G] [--base-url URL] [--workdir DIR] [--push]
set -euo pipefail

usage() {
  sed -n '/^# Usage:/,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

die() {
  echo "build-containerdisk: $*" >&2
  exit 1
}

KUBERNETES_VERSION=""
IMAGE=""
SIZE="10G"
BASE_URL="https://cloud-images.ubuntu.com/jammy/current"
BASE_FILE="jammy-server-cloudimg-amd64.img"
WORKDIR=""
PUSH=false

while (($# > 0)); do
  case "$1" in
    --kubernetes-version) KUBERNETES_VERSION=${2-}; shift 2 || die "--kubernetes-version needs a value" ;;
    --image) IMAGE=${2-}; shift 2 || die "--image needs a value" ;;
    --size) SIZE=${2-}; shift 2 || die "--size needs a value" ;;
    --base-url) BASE_URL=${2-}; shift 2 || die "--base-url needs a value" ;;
    --workdir) WORKDIR=${2-}; shift 2 || die "--workdir needs a value" ;;
    --push) PUSH=true; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument $1" ;;
  esac
done

# The same pattern the LabTemplate CRD enforces on kubernetesVersion.
[[ "${KUBERNETES_VERSION}" =~ ^v1\.([0-9]{1,2})\.([0-9]{1,3})$ ]] \
  || { usage >&2; die "--kubernetes-version must look like v1.36.3, got '${KUBERNETES_VERSION}'"; }
MINOR=${BASH_REMATCH[1]}
[[ -n "${IMAGE}" ]] || { usage >&2; die "--image is required (the containerDisk reference to build)"; }
# The root filesystem only holds the OS, the packages and logs: containerd's and the
# kubelet's state go to the node's data disk (LabTemplate nodes' disk).
if ! [[ "${SIZE}" =~ ^[0-9]+G$ ]] || ((${SIZE%G} < 4 || ${SIZE%G} > 64)); then
  die "--size must be 4G to 64G, got '${SIZE}'"
fi

missing=()
for tool in curl sha256sum qemu-img virt-resize virt-customize virt-sparsify; do
  command -v "${tool}" >/dev/null || missing+=("${tool}")
done
BUILDER=""
for candidate in podman docker buildah; do
  if command -v "${candidate}" >/dev/null; then
    BUILDER=${candidate}
    break
  fi
done
[[ -n "${BUILDER}" ]] || missing+=("podman, docker or buildah")
if ((${#missing[@]} > 0)); then
  die "missing tools: ${missing[*]} (Debian: apt-get install curl coreutils qemu-utils libguestfs-tools podman)"
fi

if [[ -z "${WORKDIR}" ]]; then
  WORKDIR=$(mktemp -d)
  trap 'rm -rf "${WORKDIR}"' EXIT
fi
mkdir -p "${WORKDIR}"
cd "${WORKDIR}"

echo "==> downloading ${BASE_URL}/${BASE_FILE} and checking it against SHA256SUMS"
curl -fsSL --retry 5 -o SHA256SUMS "${BASE_URL}/SHA256SUMS"
if [[ ! -f "${BASE_FILE}" ]] || ! grep -F " *${BASE_FILE}" SHA256SUMS | sha256sum -c --status; then
  curl -fSL --retry 5 -o "${BASE_FILE}" "${BASE_URL}/${BASE_FILE}"
fi
grep -F " *${BASE_FILE}" SHA256SUMS | sha256sum -c

echo "==> growing the root partition and filesystem to ${SIZE}"
# A containerDisk keeps its image's virtual size and growpart in the guest has nothing to
# grow (kubevirt/kubevirt#10368): the room has to be in the image.
rm -f resized.qcow2
qemu-img create -f qcow2 resized.qcow2 "${SIZE}"
virt-resize --expand /dev/sda1 "${BASE_FILE}" resized.qcow2

echo "==> installing containerd, kubelet, kubeadm, kubectl ${KUBERNETES_VERSION}, cri-tools"
repo="https://pkgs.k8s.io/core:/stable:/v1.${MINOR}/deb/"
cat >install.sh <<SCRIPT
#!/bin/bash
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends ca-certificates curl gpg containerd conntrack socat qemu-guest-agent
install -d -m 0755 /etc/apt/keyrings
curl -fsSL '${repo}Release.key' | gpg --batch --yes --dearmor -o /etc/apt/keyrings/labforge-kubernetes.gpg
chmod 0644 /etc/apt/keyrings/labforge-kubernetes.gpg
echo 'deb [signed-by=/etc/apt/keyrings/labforge-kubernetes.gpg] ${repo} /' >/etc/apt/sources.list.d/labforge-kubernetes.list
apt-get update
version=\$(apt-cache madison kubeadm | awk -v want='${KUBERNETES_VERSION#v}-' 'index(\$3, want) == 1 && !found { print \$3; found = 1 }')
[[ -n "\${version}" ]] || { echo 'kubeadm ${KUBERNETES_VERSION} is not in ${repo}' >&2; exit 1; }
apt-get install -y --no-install-recommends "kubelet=\${version}" "kubeadm=\${version}" "kubectl=\${version}" cri-tools
apt-mark hold kubelet kubeadm kubectl
pause=\$(kubeadm config images list --kubernetes-version '${KUBERNETES_VERSION}' | awk '/\/pause:/ && !found { print; found = 1 }')
install -d -m 0755 /etc/containerd
containerd config default >/etc/containerd/config.toml
sed -i -E -e 's/^([[:space:]]*SystemdCgroup[[:space:]]*=[[:space:]]*)false/\1true/' \
  -e "s|^([[:space:]]*sandbox_image[[:space:]]*=[[:space:]]*).*|\\\\1\"\${pause}\"|" \
  -e "s|^([[:space:]]*sandbox[[:space:]]*=[[:space:]]*).*|\\\\1\"\${pause}\"|" /etc/containerd/config.toml
grep -Eq '^[[:space:]]*SystemdCgroup[[:space:]]*=[[:space:]]*true' /etc/containerd/config.toml
systemctl enable containerd kubelet qemu-guest-agent || true
apt-get clean
rm -rf /var/lib/apt/lists/*
# Every VM booted from the image must get its own identity and run cloud-init afresh.
cloud-init clean --logs
truncate -s 0 /etc/machine-id
SCRIPT
virt-customize -a resized.qcow2 --network --run install.sh

echo "==> compressing the disk"
rm -f disk.qcow2
virt-sparsify --compress resized.qcow2 disk.qcow2

echo "==> building the containerDisk ${IMAGE} with ${BUILDER}"
# KubeVirt's containerDisk layout: the disk under /disk/, readable by the qemu user (107).
cat >Containerfile <<'CONTAINERFILE'
FROM scratch
ADD --chown=107:107 disk.qcow2 /disk/
CONTAINERFILE
case "${BUILDER}" in
  buildah) buildah bud -f Containerfile -t "${IMAGE}" . ;;
  *) "${BUILDER}" build -f Containerfile -t "${IMAGE}" . ;;
esac
if [[ "${PUSH}" == true ]]; then
  "${BUILDER}" push "${IMAGE}"
fi
echo "==> built ${IMAGE}: use it in a LabTemplate with image.containerDisk: ${IMAGE} and image.prebaked: true"
