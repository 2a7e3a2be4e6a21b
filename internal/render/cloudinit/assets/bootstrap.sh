
# ---------------------------------------------------------------------------------------
# Fixed code from here on: every lab-specific value is one of the quoted assignments above.
# Safe to re-run: finished steps are recorded under $STATE_DIR and skipped or repeated
# idempotently. Log: $LOG. On failure the control plane records the failing step and the
# last lines of this log in the marker ConfigMap $MARKER_NAMESPACE/$MARKER_CONFIGMAP.
# ---------------------------------------------------------------------------------------

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive
export LC_ALL=C.UTF-8
umask 022

if [[ "${EUID}" -ne 0 ]]; then
  echo "labforge-bootstrap must run as root" >&2
  exit 1
fi
echo "labforge-bootstrap: logging to ${LOG}" >&2
exec >>"${LOG}" 2>&1

# One bootstrap at a time (cloud-init's run and a person's re-run could overlap).
exec 9>/run/labforge-bootstrap.lock
if ! flock --nonblock 9; then
  echo "another labforge-bootstrap is running; not starting a second one"
  exit 1
fi

CURRENT_STEP=start

# step names the work that follows; a failure is reported against the current step.
step() {
  CURRENT_STEP=$1
  echo "==> $(date -u +%Y-%m-%dT%H:%M:%SZ) ${CURRENT_STEP}"
}

log() {
  echo "    $*"
}

# fail reports the failure of the current step and exits. It is the ERR trap, and die
# calls it for failures the script detects itself.
fail() {
  local rc=$1
  trap - ERR
  set +e
  if [[ "${BASHPID}" != "$$" ]]; then
    # A subshell (e.g. a command substitution): the main shell sees the failure and
    # reports it once.
    exit "${rc}"
  fi
  local output
  output=$(tail -n 25 "${LOG}" 2>/dev/null)
  echo "!!! $(date -u +%Y-%m-%dT%H:%M:%SZ) step ${CURRENT_STEP} failed (exit ${rc})"
  if [[ "${ROLE}" == control-plane ]]; then
    report_failure "${output}"
  fi
  exit "${rc}"
}
trap 'fail $?' ERR

die() {
  echo "ERROR: $*"
  fail 1
}

# failure_message is "<step>: <last lines of output>", printable ASCII, at most
# MARKER_MAX_MESSAGE bytes (the end of the output is kept: it says what failed).
failure_message() {
  local prefix="${CURRENT_STEP}: "
  local budget=$((MARKER_MAX_MESSAGE - ${#prefix}))
  local tail_text
  tail_text=$(printf '%s' "$1" | tr -cd '\11\12\40-\176' | tail -c "${budget}")
  printf '%s%s' "${prefix}" "${tail_text}"
}

kubectl_admin() {
  kubectl --kubeconfig "${ADMIN_KUBECONFIG}" "$@"
}

api_up() {
  [[ -s "${ADMIN_KUBECONFIG}" ]] && kubectl_admin --request-timeout=5s get --raw=/readyz >/dev/null 2>&1
}

apply_file() {
  kubectl_admin apply --server-side --force-conflicts --field-manager=labforge-bootstrap -f "$1"
}

# write_marker PHASE [MESSAGE] creates or replaces the bootstrap marker. Server-side apply
# by one field manager drops a message left by an earlier failed run.
write_marker() {
  local phase=$1 message=${2-}
  local args=(create configmap "${MARKER_CONFIGMAP}" --namespace "${MARKER_NAMESPACE}"
    "--from-literal=${MARKER_PHASE_KEY}=${phase}" --dry-run=client --output=yaml)
  local message_file=""
  if [[ -n "${message}" ]]; then
    message_file=$(mktemp)
    printf '%s' "${message}" >"${message_file}"
    args+=("--from-file=${MARKER_MESSAGE_KEY}=${message_file}")
  fi
  local rc=0
  kubectl_admin "${args[@]}" | kubectl_admin apply --server-side --force-conflicts \
    --field-manager=labforge-bootstrap -f - || rc=$?
  if [[ -n "${message_file}" ]]; then
    rm -f "${message_file}"
  fi
  return "${rc}"
}

# report_failure records phase=Failed in the marker, if the lab API is up to take it.
report_failure() {
  if ! api_up; then
    echo "the lab API is not up: the failure is only in this log"
    return 0
  fi
  apply_file "${OPERATOR_RBAC}" || echo "could not grant the operator access to the marker"
  if write_marker "${MARKER_PHASE_FAILED}" "$(failure_message "$1")"; then
    echo "recorded the failure in ${MARKER_NAMESPACE}/${MARKER_CONFIGMAP}"
  else
    echo "could not record the failure in ${MARKER_NAMESPACE}/${MARKER_CONFIGMAP}"
  fi
}

apt_get() {
  apt-get -q -y -o DPkg::Lock::Timeout=600 -o Acquire::Retries=5 \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}

# wait_until SECONDS WHAT COMMAND... retries COMMAND every 5 seconds until it succeeds.
wait_until() {
  local timeout=$1 what=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      die "timed out after ${timeout}s waiting for ${what}"
    fi
    sleep 5
  done
}

ready_nodes() {
  kubectl_admin get nodes \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' \
    2>/dev/null | grep -c '^True$' || true
}

all_nodes_ready() {
  local ready
  ready=$(ready_nodes)
  log "${ready:-0} of ${EXPECTED_NODES} nodes Ready"
  [[ "${ready:-0}" -ge "${EXPECTED_NODES}" ]]
}

# reset_keeping_ca undoes a kubeadm init that did not finish. kubeadm reset empties
# /etc/kubernetes/pki, so the lab CA is held in memory and written back.
reset_keeping_ca() {
  local ca_cert ca_key
  ca_cert=$(cat "${CA_CERT}")
  ca_key=$(cat "${CA_KEY}")
  kubeadm reset --force
  install -d -m 0755 "$(dirname "${CA_CERT}")"
  printf '%s\n' "${ca_cert}" >"${CA_CERT}"
  chmod 0644 "${CA_CERT}"
  (umask 077 && printf '%s\n' "${ca_key}" >"${CA_KEY}")
}

version_of() {
  # The third field of `containerd --version`, without a leading v.
  local v
  v=$(containerd --version | awk '{ print $3 }')
  echo "${v#v}"
}

# bind_to_data_disk DIR puts DIR (containerd's or the kubelet's state) on the data disk:
# DATA_MOUNT/<name of DIR> bind-mounted onto DIR, in /etc/fstab for later boots. What DIR
# already holds (a prebaked image's pulled images) is copied over first, once.
bind_to_data_disk() {
  local dir=$1 src
  src="${DATA_MOUNT}/$(basename "${dir}")"
  if mountpoint -q "${dir}"; then
    log "${dir} is mounted already"
    return 0
  fi
  if [[ ! -d "${src}" ]]; then
    install -d -m 0711 "${src}.labforge"
    if [[ -d "${dir}" ]]; then
      chmod --reference="${dir}" "${src}.labforge"
      cp -a "${dir}/." "${src}.labforge/"
    fi
    mv "${src}.labforge" "${src}"
  fi
  install -d -m 0711 "${dir}"
  if ! awk -v d="${dir}" '$2 == d { found = 1 } END { exit !found }' /etc/fstab; then
    # fstab has no end-of-line comments: the comment is a line of its own.
    printf '# labforge: %s on the data disk\n%s %s none bind,nofail,x-systemd.requires-mounts-for=%s 0 0\n' \
      "${dir}" "${src}" "${dir}" "${DATA_MOUNT}" >>/etc/fstab
  fi
  systemctl daemon-reload
  mount "${dir}"
  log "${dir} is on the data disk ($(df -h --output=size "${dir}" | tail -n 1 | tr -d ' '))"
}

echo "labforge bootstrap of ${ROLE} ${NODE_NAME}: Kubernetes ${KUBERNETES_VERSION}, prebaked image: ${PREBAKED}"
install -d -m 0700 "${STATE_DIR}"

step data-disk
# The container disk the VM boots from keeps its image's size; containerd's images and
# the kubelet's pods go to the data disk cloud-init formatted and mounted, before
# containerd or the kubelet are installed or started.
data_source=$(findmnt --noheadings --output SOURCE --mountpoint "${DATA_MOUNT}" || true)
[[ -n "${data_source}" ]] \
  || die "the data disk ${DATA_DISK} is not mounted at ${DATA_MOUNT}: see disk_setup, fs_setup and mounts in /var/log/cloud-init.log"
disk_name=$(basename "$(readlink -f "${DATA_DISK}")")
[[ "$(lsblk --noheadings --nodeps --output PKNAME "${data_source}")" == "${disk_name}" ]] \
  || die "${DATA_MOUNT} holds ${data_source}, which is not on the data disk ${DATA_DISK} (${disk_name})"
# A prebaked image may have started them at boot, on the root disk, before the mount.
for unit in kubelet containerd; do
  if systemctl is-active --quiet "${unit}.service"; then
    log "stopping ${unit}, started before its state moved to the data disk"
    systemctl stop "${unit}.service"
  fi
done
bind_to_data_disk /var/lib/containerd
bind_to_data_disk /var/lib/kubelet

step kernel
cat >/etc/modules-load.d/labforge.conf <<'CONF'
overlay
br_netfilter
CONF
modprobe overlay
modprobe br_netfilter
cat >/etc/sysctl.d/90-labforge.conf <<'CONF'
net.ipv4.ip_forward = 1
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
CONF
sysctl --system >/dev/null
[[ "$(sysctl -n net.ipv4.ip_forward)" == 1 ]] || die "net.ipv4.ip_forward is not 1"
[[ "$(sysctl -n net.bridge.bridge-nf-call-iptables)" == 1 ]] || die "net.bridge.bridge-nf-call-iptables is not 1"

step swap
swapoff -a
sed -i -E 's|^([^#].*[[:space:]]swap[[:space:]].*)$|# disabled by labforge: \1|' /etc/fstab

step ssh
install -d -m 0755 /run/sshd # sshd -t needs it; socket-activated sshd may not have made it yet
sshd -t
systemctl try-reload-or-restart ssh.service 2>/dev/null || systemctl try-reload-or-restart sshd.service 2>/dev/null || true

if [[ "${PREBAKED}" == true ]]; then
  step verify-prebaked
  for tool in containerd kubeadm kubelet kubectl; do
    command -v "${tool}" >/dev/null || die "prebaked image: ${tool} is not installed; build the image with containerd, kubeadm, kubelet and kubectl ${KUBERNETES_VERSION}, or set image.prebaked to false"
  done
  # crictl is for people debugging the node, not for the lab to work: a warning only.
  command -v crictl >/dev/null || log "WARNING: prebaked image without crictl (package cri-tools): students cannot debug containers with it"
  have=$(kubeadm version -o short)
  [[ "${have}" == "${KUBERNETES_VERSION}" ]] || die "prebaked image: kubeadm is ${have}, the template wants ${KUBERNETES_VERSION}"
  have=$(kubelet --version | awk '{ print $2 }')
  [[ "${have}" == "${KUBERNETES_VERSION}" ]] || die "prebaked image: kubelet is ${have}, the template wants ${KUBERNETES_VERSION}"
  have=$(kubectl version --client 2>/dev/null | awk '/^Client Version:/ { print $3 }')
  [[ "${have}" == "${KUBERNETES_VERSION}" ]] || die "prebaked image: kubectl is ${have:-unknown}, the template wants ${KUBERNETES_VERSION}"
  log "containerd $(version_of), kubeadm, kubelet and kubectl ${KUBERNETES_VERSION}"
else
  step packages
  apt_get update
  apt_get install --no-install-recommends ca-certificates curl gpg containerd conntrack socat qemu-guest-agent
  install -d -m 0755 /etc/apt/keyrings
  curl -fsSL --retry 5 --retry-connrefused "${K8S_APT_URL}Release.key" \
    | gpg --batch --yes --dearmor -o /etc/apt/keyrings/labforge-kubernetes.gpg
  chmod 0644 /etc/apt/keyrings/labforge-kubernetes.gpg
  printf 'deb [signed-by=/etc/apt/keyrings/labforge-kubernetes.gpg] %s /\n' "${K8S_APT_URL}" \
    >/etc/apt/sources.list.d/labforge-kubernetes.list
  apt_get update
  # awk reads to the end: an early exit would fail the pipeline with SIGPIPE (pipefail).
  pkg_version=$(apt-cache madison kubeadm | awk -v want="${KUBERNETES_VERSION#v}-" 'index($3, want) == 1 && !found { print $3; found = 1 }')
  [[ -n "${pkg_version}" ]] || die "kubeadm ${KUBERNETES_VERSION} is not in ${K8S_APT_URL}"
  log "installing kubeadm, kubelet and kubectl ${pkg_version}"
  apt-mark unhold kubelet kubeadm kubectl >/dev/null 2>&1 || true
  # cri-tools (crictl) comes from the same repository, built for the same minor.
  apt_get install --no-install-recommends --allow-downgrades \
    "kubelet=${pkg_version}" "kubeadm=${pkg_version}" "kubectl=${pkg_version}" cri-tools
  apt-mark hold kubelet kubeadm kubectl
  # The root disk is the container disk's few free hundred MB: keep no .deb files.
  apt_get clean

  step containerd-config
  images=$(kubeadm config images list --kubernetes-version "${KUBERNETES_VERSION}")
  pause_image=$(awk '/\/pause:/ && !found { print; found = 1 }' <<<"${images}")
  [[ -n "${pause_image}" ]] || die "kubeadm ${KUBERNETES_VERSION} names no pause image"
  install -d -m 0755 /etc/containerd
  containerd config default >/etc/containerd/config.toml.labforge
  # containerd 1.x calls the sandbox image sandbox_image, 2.x sandbox.
  sed -i -E \
    -e 's/^([[:space:]]*SystemdCgroup[[:space:]]*=[[:space:]]*)false/\1true/' \
    -e "s|^([[:space:]]*sandbox_image[[:space:]]*=[[:space:]]*).*|\\1\"${pause_image}\"|" \
    -e "s|^([[:space:]]*sandbox[[:space:]]*=[[:space:]]*).*|\\1\"${pause_image}\"|" \
    /etc/containerd/config.toml.labforge
  grep -Eq '^[[:space:]]*SystemdCgroup[[:space:]]*=[[:space:]]*true' /etc/containerd/config.toml.labforge \
    || die "could not turn on SystemdCgroup in containerd's default configuration"
  grep -Fq "\"${pause_image}\"" /etc/containerd/config.toml.labforge \
    || die "could not set containerd's sandbox image to ${pause_image}"
  mv /etc/containerd/config.toml.labforge /etc/containerd/config.toml
  systemctl enable containerd
  systemctl restart containerd
  log "containerd $(version_of): systemd cgroups, sandbox image ${pause_image}"
fi

step containerd
systemctl enable --now containerd
containerd_version=$(version_of)
if ((KUBERNETES_MINOR >= 37)) && [[ "${containerd_version%%.*}" -lt 2 ]]; then
  die "Kubernetes ${KUBERNETES_VERSION} needs containerd 2.0 or later, this image has ${containerd_version}: use a newer image or a prebaked one"
fi
if [[ "${PREBAKED}" == true ]]; then
  containerd_config=$(containerd config dump)
  grep -Eq '^[[:space:]]*SystemdCgroup[[:space:]]*=[[:space:]]*true' <<<"${containerd_config}" \
    || die "prebaked image: containerd does not use the systemd cgroup driver (SystemdCgroup = true)"
fi
systemctl enable kubelet
if command -v crictl >/dev/null; then
  log "crictl $(crictl --version | awk '{ print $NF }'), configured for containerd in /etc/crictl.yaml"
fi

step guest-agent
# KubeVirt pushes the students' SSH keys at claim time through the guest agent.
if ! command -v qemu-ga >/dev/null; then
  apt_get update
  apt_get install --no-install-recommends qemu-guest-agent
fi
systemctl enable qemu-guest-agent.service 2>/dev/null || true # static on Ubuntu: udev starts it
systemctl start qemu-guest-agent.service
systemctl is-active --quiet qemu-guest-agent.service || die "qemu-guest-agent is not running"

if [[ "${ROLE}" == control-plane ]]; then
  step api-host
  # The control plane reaches its own API locally: no dependence on the host cluster's
  # DNS and no hairpin through the lab API Service while kubeadm init runs.
  if ! awk -v h="${API_HOST}" '$1 == "127.0.0.1" { for (i = 2; i <= NF; i++) if ($i == h) found = 1 } END { exit !found }' /etc/hosts; then
    printf '127.0.0.1 %s # labforge: this node serves the lab API\n' "${API_HOST}" >>/etc/hosts
  fi

  step kubeadm-init
  if [[ -f "${STATE_DIR}/kubeadm-init.done" ]]; then
    log "kubeadm init finished before"
  else
    if [[ -e /etc/kubernetes/manifests/kube-apiserver.yaml || -e "${ADMIN_KUBECONFIG}" ]]; then
      log "an earlier kubeadm init did not finish: resetting (the lab CA is kept)"
      reset_keeping_ca
    fi
    kubeadm init --config "${KUBEADM_CONFIG}" --skip-token-print
    touch "${STATE_DIR}/kubeadm-init.done"
  fi
  wait_until "${BOOT_TIMEOUT_SECONDS}" "the lab API" api_up

  step operator-rbac
  apply_file "${OPERATOR_RBAC}"

  step cni
  apply_file "${CNI_MANIFEST}"

  step nodes-ready
  wait_until "${BOOT_TIMEOUT_SECONDS}" "${EXPECTED_NODES} Ready nodes" all_nodes_ready

  step scenario
  if [[ "${HAS_SCENARIO}" != true ]]; then
    log "the template has no scenario"
  elif [[ -f "${STATE_DIR}/scenario.done" ]]; then
    log "the scenario ran before"
  else
    if [[ "$(head -c 2 "${SCENARIO}")" == '#!' ]]; then
      runner=("${SCENARIO}")
    else
      runner=(bash "${SCENARIO}")
    fi
    env --chdir=/root HOME=/root KUBECONFIG="${ADMIN_KUBECONFIG}" \
      timeout --kill-after=30s "${BOOT_TIMEOUT_SECONDS}s" "${runner[@]}" </dev/null
    touch "${STATE_DIR}/scenario.done"
  fi

  step marker
  apply_file "${OPERATOR_RBAC}"
  write_marker "${MARKER_PHASE_COMPLETE}"
else
  step resolve-api
  wait_until "${BOOT_TIMEOUT_SECONDS}" "DNS to resolve ${API_HOST}" getent hosts "${API_HOST}"

  step kubeadm-join
  if [[ -f "${STATE_DIR}/kubeadm-join.done" ]]; then
    log "kubeadm join finished before"
  else
    if [[ -e /etc/kubernetes/kubelet.conf ]]; then
      log "an earlier kubeadm join did not finish: resetting"
      kubeadm reset --force
    fi
    kubeadm join --config "${KUBEADM_CONFIG}"
    touch "${STATE_DIR}/kubeadm-join.done"
  fi
fi

step finished
echo "labforge bootstrap of ${NODE_NAME} complete"
