#!/usr/bin/env bash
# Installs what `make test` needs beyond Go, gcc, git, make and kubectl, from Debian's
# packages, and only what is missing: a fresh machine gets everything, a warm one nothing.
set -euo pipefail

# command -> Debian package providing it
declare -A need=(
	[diff]=diffutils
	[flock]=util-linux
	# internal/render/cloudinit checks the generated user-data and bootstrap scripts with these.
	[cloud-init]=cloud-init
	[shellcheck]=shellcheck
	# internal/pki checks generated SSH keys with the real OpenSSH.
	[ssh-keygen]=openssh-client
)

missing=()
for cmd in "${!need[@]}"; do
	command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
if [ "${#missing[@]}" -gt 0 ]; then
	echo ">> installing ${missing[*]}"
	sudo_cmd=""
	[ "$(id -u)" = 0 ] || sudo_cmd=sudo
	$sudo_cmd apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
for tool in go gcc make kubectl; do
	command -v "$tool" >/dev/null 2>&1 || { echo "required tool not found: $tool" >&2; exit 1; }
done
