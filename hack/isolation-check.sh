#!/usr/bin/env bash
# Packet-level isolation check of two labforge labs on a real KubeVirt cluster whose CNI
# enforces NetworkPolicy. From lab A's control-plane VM, reached over SSH through its
# NodePort, it probes what the lab must reach (its own worker, DNS, optionally the
# internet) and what it must not (lab B's VMs and API, the host's nodes and API server,
# link-local metadata), prints a PASS/FAIL table and exits non-zero on any unexpected
# result. docs/isolation-runbook.md says what each check proves and what to do when one
# fails. Run with --help for the flags.
set -euo pipefail

readonly prog=${0##*/}
if ((BASH_VERSINFO[0] < 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] < 4))); then
	echo "${prog}: needs bash 4.4 or newer (this is ${BASH_VERSION})" >&2
	exit 2
fi

usage() {
	cat <<EOF
Usage: ${prog} [flags] NAMESPACE/CLAIM_A NAMESPACE/CLAIM_B

Checks, from lab A's control-plane VM (SSH through claim A's NodePort), that new
connections to lab B, to the host cluster's nodes, to the host API server and to
link-local metadata fail, and that SSH itself, lab A's own worker, DNS and any --allow
or --internet destination work. Both claims must be Ready. The host cluster is the one
of \$KUBECONFIG (or --kubeconfig); read access to claims, labenvironments, VMIs, pods,
nodes, services, endpointslices and claim A's SSH key Secret is needed.

Flags:
  --key FILE           private key for claim A's SSH user (default: the claim's
                       generated key pair, from its Secret status.sshKeySecretName)
  --ports LIST         ports probed on every forbidden address (default ${ports})
  --timeout SECONDS    connect timeout of one probe, 1-60 (default ${probe_timeout})
  --worker-port PORT   port probed on lab A's workers, which must answer (default ${worker_port})
  --dns-service NS/NAME
                       the host cluster DNS Service; TCP to it must work (default ${dns_service})
  --dns-name NAME      a name that must resolve inside the VM (default ${dns_name})
  --no-dns-lookup      skip the name lookup
  --internet HOST:PORT an internet destination that must connect (none by default)
  --allow HOST:PORT    another destination that must connect (repeatable)
  --forbid HOST:PORT   another destination that must not connect (repeatable), e.g. an
                       address in the template's egressExceptCIDRs
  --metadata-ip IP     the cloud metadata address that must not connect (default ${metadata_ip})
  --ssh-host HOST      connect to this address instead of claim A's status.ssh.host
  --reject-ok          count "connection refused" as blocked (for a CNI configured to
                       reject denied packets); by default a refusal means the packet
                       reached its destination, and the check FAILs
  --kubeconfig FILE    the host cluster's kubeconfig (default: \$KUBECONFIG)
  --plan               print the checks without reading any Secret or running SSH
  -h, --help           show this help

Exit status: 0 every check passed, 1 a check failed, 2 bad usage or setup.
EOF
}

# Defaults; the flags override them.
ports="22,6443,10250,80,443"
probe_timeout=3
worker_port=22
dns_service="kube-system/kube-dns"
dns_name="kubernetes.default.svc.cluster.local"
metadata_ip="169.254.169.254"
key_file=""
ssh_host_override=""
kubeconfig=""
internet=""
plan=false
reject_ok=false
allows=()
forbids=()
# Probes run at once on the VM, at most.
readonly max_jobs=32

die() {
	echo "${prog}: $*" >&2
	exit 2
}

usage_error() {
	echo "${prog}: $*" >&2
	echo "Run ${prog} --help for the flags." >&2
	exit 2
}

warn() { echo "${prog}: warning: $*" >&2; }

# --- validation: every value that reaches ssh, kubectl or the VM is checked first ---------

is_ipv4() {
	local IFS=. octet
	[[ $1 =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || return 1
	for octet in $1; do
		((10#${octet} <= 255)) || return 1
	done
}

is_ipv6() {
	[[ $1 =~ ^[0-9A-Fa-f:.]{2,45}$ && $1 == *:*:* ]]
}

is_ip() { is_ipv4 "$1" || is_ipv6 "$1"; }

# A DNS name or an IP address; never starts with a dash, so it cannot pass as a flag.
is_host() {
	is_ip "$1" || [[ ${#1} -le 253 && $1 =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]]
}

is_port() { [[ $1 =~ ^[0-9]{1,5}$ ]] && ((10#$1 >= 1 && 10#$1 <= 65535)); }

# A Kubernetes object name (DNS subdomain).
is_name() { [[ ${#1} -le 253 && $1 =~ ^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$ ]]; }

is_user() { [[ $1 =~ ^[a-z_][a-z0-9_-]{0,31}$ ]]; }

# split_ref NS/NAME: sets ref_ns and ref_name.
split_ref() {
	[[ $1 == */* ]] || return 1
	ref_ns=${1%%/*}
	ref_name=${1#*/}
	is_name "${ref_ns}" && is_name "${ref_name}"
}

# split_hostport HOST:PORT or [IPV6]:PORT: sets hp_host and hp_port.
split_hostport() {
	if [[ $1 =~ ^\[([0-9A-Fa-f:.]+)\]:([0-9]+)$ ]]; then
		hp_host=${BASH_REMATCH[1]}
		hp_port=${BASH_REMATCH[2]}
		is_ipv6 "${hp_host}" || return 1
	elif [[ $1 =~ ^([^:]+):([0-9]+)$ ]]; then
		hp_host=${BASH_REMATCH[1]}
		hp_port=${BASH_REMATCH[2]}
		is_host "${hp_host}" || return 1
	else
		return 1
	fi
	is_port "${hp_port}"
}

# dest HOST PORT prints HOST:PORT, bracketing an IPv6 address.
dest() {
	if is_ipv6 "$1"; then printf '[%s]:%s' "$1" "$2"; else printf '%s:%s' "$1" "$2"; fi
}

# --- flags ---------------------------------------------------------------------------------

set_flag() {
	local flag=$1 value=$2
	case ${flag} in
	--key) key_file=${value} ;;
	--ports) ports=${value} ;;
	--timeout) probe_timeout=${value} ;;
	--worker-port) worker_port=${value} ;;
	--dns-service) dns_service=${value} ;;
	--dns-name) dns_name=${value} ;;
	--internet) internet=${value} ;;
	--allow) allows+=("${value}") ;;
	--forbid) forbids+=("${value}") ;;
	--metadata-ip) metadata_ip=${value} ;;
	--ssh-host) ssh_host_override=${value} ;;
	--kubeconfig) kubeconfig=${value} ;;
	*) usage_error "unknown flag ${flag}" ;;
	esac
}

positional=()
while (($# > 0)); do
	case $1 in
	-h | --help)
		usage
		exit 0
		;;
	--plan) plan=true ;;
	--reject-ok) reject_ok=true ;;
	--no-dns-lookup) dns_name="" ;;
	--key | --ports | --timeout | --worker-port | --dns-service | --dns-name | --internet | \
		--allow | --forbid | --metadata-ip | --ssh-host | --kubeconfig)
		(($# >= 2)) || usage_error "$1 needs a value"
		set_flag "$1" "$2"
		shift
		;;
	--*=*) set_flag "${1%%=*}" "${1#*=}" ;;
	--)
		shift
		positional+=("$@")
		break
		;;
	-*) usage_error "unknown flag $1" ;;
	*) positional+=("$1") ;;
	esac
	shift
done

((${#positional[@]} == 2)) || usage_error "expected two claims, NAMESPACE/CLAIM_A NAMESPACE/CLAIM_B"

probe_ports=()
IFS=, read -ra port_list <<<"${ports}"
for p in "${port_list[@]}"; do
	is_port "${p}" || usage_error "--ports: ${p} is not a port"
	probe_ports+=("$((10#${p}))")
done
((${#probe_ports[@]} > 0)) || usage_error "--ports is empty"
if ! [[ ${probe_timeout} =~ ^[0-9]{1,2}$ ]] || ((10#${probe_timeout} < 1 || 10#${probe_timeout} > 60)); then
	usage_error "--timeout must be 1 to 60 seconds"
fi
probe_timeout=$((10#${probe_timeout}))
is_port "${worker_port}" || usage_error "--worker-port: ${worker_port} is not a port"
split_ref "${dns_service}" || usage_error "--dns-service must be NAMESPACE/NAME"
[[ -z ${dns_name} ]] || is_host "${dns_name}" || usage_error "--dns-name: ${dns_name} is not a DNS name"
is_ip "${metadata_ip}" || usage_error "--metadata-ip: ${metadata_ip} is not an IP address"
[[ -z ${ssh_host_override} ]] || is_host "${ssh_host_override}" || usage_error "--ssh-host: not a host name or address"
[[ -z ${internet} ]] || split_hostport "${internet}" || usage_error "--internet must be HOST:PORT"
for hp in "${allows[@]}" "${forbids[@]}"; do
	split_hostport "${hp}" || usage_error "--allow/--forbid: ${hp} is not HOST:PORT"
done
if [[ -n ${key_file} && ! -r ${key_file} ]]; then
	die "--key: cannot read ${key_file}"
fi

command -v kubectl >/dev/null 2>&1 || die "kubectl not found on PATH"
if ! ${plan}; then
	for tool in ssh base64 timeout mktemp; do
		command -v "${tool}" >/dev/null 2>&1 || die "${tool} not found on PATH"
	done
fi

kubectl_args=(--request-timeout=30s)
[[ -z ${kubeconfig} ]] || kubectl_args+=(--kubeconfig "${kubeconfig}")

kc() { kubectl "${kubectl_args[@]}" "$@"; }

# query WHAT ARGS...: runs kubectl get with a jsonpath template ending in an "end" line and
# sets the array rows to the output lines before it. The sentinel keeps trailing empty
# fields, which command substitution would otherwise strip.
query() {
	local what=$1 out
	shift
	if ! out=$(kc get "$@"); then
		die "could not read ${what}"
	fi
	mapfile -t rows <<<"${out}"
	[[ ${#rows[@]} -gt 0 && ${rows[-1]} == end ]] || die "unexpected kubectl output for ${what}"
	unset 'rows[-1]'
}

# --- what the cluster says -------------------------------------------------------------------

# Facts about the two claims, keyed side.field with side a or b.
declare -A claim=()

# load_claim SIDE NS/NAME: reads a claim's status and its lab's namespace.
load_claim() {
	local side=$1 ref=$2 ns name
	split_ref "${ref}" || usage_error "claim ${ref} is not NAMESPACE/NAME"
	ns=${ref_ns}
	name=${ref_name}
	query "labclaim ${ns}/${name}" -n "${ns}" labclaims.labforge.dev "${name}" -o \
		'jsonpath={.status.lab}{"\n"}{.status.ssh.host}{"\n"}{.status.ssh.port}{"\n"}{.status.ssh.user}{"\n"}{.status.sshKeySecretName}{"\n"}{.status.apiServerURL}{"\n"}{.status.conditions[?(@.type=="Ready")].status}{"\n"}end'
	((${#rows[@]} == 7)) || die "unexpected status of labclaim ${ns}/${name}"
	local lab=${rows[0]} host=${rows[1]} port=${rows[2]} user=${rows[3]} keysecret=${rows[4]} url=${rows[5]} ready=${rows[6]}
	[[ ${ready} == True ]] || die "labclaim ${ns}/${name} is not Ready (Ready=${ready:-unset}): wait for it first"
	is_name "${lab}" || die "labclaim ${ns}/${name} has no valid status.lab"
	is_host "${host}" || die "labclaim ${ns}/${name} has an invalid status.ssh.host"
	is_port "${port}" || die "labclaim ${ns}/${name} has an invalid status.ssh.port"
	is_user "${user}" || die "labclaim ${ns}/${name} has an invalid status.ssh.user"
	[[ -z ${keysecret} ]] || is_name "${keysecret}" || die "labclaim ${ns}/${name} has an invalid status.sshKeySecretName"
	local apiport=""
	if [[ ${url} =~ ^https://[^/]+:([0-9]+)/?$ ]]; then
		apiport=${BASH_REMATCH[1]}
		is_port "${apiport}" || apiport=""
	fi
	query "labenvironment ${lab}" labenvironments.labforge.dev "${lab}" -o 'jsonpath={.status.namespace}{"\n"}end'
	is_name "${rows[0]:-}" || die "labenvironment ${lab} of claim ${ns}/${name} has no status.namespace yet"
	claim[${side}.ref]=${ns}/${name}
	claim[${side}.ns]=${ns}
	claim[${side}.name]=${name}
	claim[${side}.lab]=${lab}
	claim[${side}.labns]=${rows[0]}
	claim[${side}.host]=${host}
	claim[${side}.port]=${port}
	claim[${side}.user]=${user}
	claim[${side}.keysecret]=${keysecret:-${name}-ssh}
	claim[${side}.apiport]=${apiport}
}

# vm_ips LABNS: sets the array vm_rows to "VM IP" lines, one per address of each VM: what
# KubeVirt reports on the VMI (its guest agent, which the lab's student controls) and the
# launcher pod's addresses (the CNI's), so a guest cannot hide its address.
vm_ips() {
	local labns=$1 line vm ips ip addrs
	local -A seen=()
	vm_rows=()
	query "VMIs of ${labns}" -n "${labns}" virtualmachineinstances.kubevirt.io -o \
		'jsonpath={range .items[*]}{.metadata.name}|{.status.interfaces[*].ipAddress} {.status.interfaces[*].ipAddresses[*]}{"\n"}{end}end'
	local -a lines=("${rows[@]}")
	query "VM pods of ${labns}" -n "${labns}" pods -l labforge.dev/node -o \
		'jsonpath={range .items[*]}{.metadata.labels.labforge\.dev/node}|{.status.podIPs[*].ip}{"\n"}{end}end'
	lines+=("${rows[@]}")
	for line in "${lines[@]}"; do
		vm=${line%%|*}
		ips=${line#*|}
		is_name "${vm}" || continue
		read -ra addrs <<<"${ips}"
		for ip in "${addrs[@]}"; do
			if ! is_ip "${ip}"; then
				warn "ignored an invalid address reported for ${labns}/${vm}"
				continue
			fi
			# IPv6 link-local addresses need a zone and never leave the node.
			[[ ${ip,,} != fe80:* ]] || continue
			[[ -z ${seen[${vm} ${ip}]:-} ]] || continue
			seen[${vm} ${ip}]=1
			vm_rows+=("${vm} ${ip}")
		done
	done
	# Stable output: sorted by VM, then address.
	if ((${#vm_rows[@]} > 0)); then
		mapfile -t vm_rows < <(printf '%s\n' "${vm_rows[@]}" | LC_ALL=C sort -u)
	fi
}

# --- the checks --------------------------------------------------------------------------------

# One check per index: what it is called, what it targets, how it is probed, what must
# happen. kind is ssh (the session itself), tcp (connect), lookup (resolve) or skip.
chk_name=() chk_target=() chk_kind=() chk_host=() chk_port=() chk_expect=()

add_check() {
	chk_name+=("$1")
	chk_target+=("$2")
	chk_kind+=("$3")
	chk_host+=("$4")
	chk_port+=("$5")
	chk_expect+=("$6")
}

# add_tcp NAME TARGET IP PORT EXPECT: a connection check, when the cluster's address and
# port are well-formed (they are skipped with a warning otherwise).
add_tcp() {
	if is_ip "$3" && is_port "$4"; then
		add_check "$1" "$2" tcp "$3" "$4" "$5"
	else
		warn "ignored a malformed address for $1 ($2)"
	fi
}

# add_blocked NAME TARGET HOST: HOST must not accept a connection on any probed port.
add_blocked() {
	local p
	for p in "${probe_ports[@]}"; do
		add_check "$1" "$2" tcp "$3" "${p}" blocked
	done
}

load_claim a "${positional[0]}"
load_claim b "${positional[1]}"
[[ ${claim[a.lab]} != "${claim[b.lab]}" ]] || die "both claims hold lab ${claim[a.lab]}: give two different labs"
[[ -z ${ssh_host_override} ]] || claim[a.host]=${ssh_host_override}

vm_ips "${claim[a.labns]}"
a_rows=("${vm_rows[@]}")
vm_ips "${claim[b.labns]}"
b_rows=("${vm_rows[@]}")
((${#b_rows[@]} > 0)) || die "found no address of lab B's VMs in ${claim[b.labns]}"

query "nodes" nodes -o \
	'jsonpath={range .items[*]}{.metadata.name}|{.status.addresses[?(@.type=="InternalIP")].address} {.status.addresses[?(@.type=="ExternalIP")].address}{"\n"}{end}end'
node_rows=()
for line in "${rows[@]}"; do
	node=${line%%|*}
	read -ra addrs <<<"${line#*|}"
	for ip in "${addrs[@]}"; do
		if is_name "${node}" && is_ip "${ip}"; then
			node_rows+=("${node} ${ip}")
		fi
	done
done
((${#node_rows[@]} > 0)) || die "found no node address"

query "service default/kubernetes" -n default services kubernetes -o \
	'jsonpath={.spec.clusterIPs[*]}|{.spec.ports[*].port}{"\n"}end'
read -ra api_svc_ips <<<"${rows[0]%%|*}"
read -ra api_svc_ports <<<"${rows[0]#*|}"

query "endpointslices of default/kubernetes" -n default endpointslices.discovery.k8s.io \
	-l kubernetes.io/service-name=kubernetes -o \
	'jsonpath={range .items[*]}{.endpoints[*].addresses[*]}|{.ports[*].port}{"\n"}{end}end'
api_ep_rows=("${rows[@]}")

split_ref "${dns_service}"
query "service ${dns_service}" -n "${ref_ns}" services "${ref_name}" -o \
	'jsonpath={.spec.clusterIPs[*]}|{.spec.ports[?(@.protocol=="TCP")].port}{"\n"}end'
read -ra dns_ips <<<"${rows[0]%%|*}"
read -ra dns_ports <<<"${rows[0]#*|}"
((${#dns_ips[@]} > 0 && ${#dns_ports[@]} > 0)) || die "service ${dns_service} has no cluster IP or TCP port: pass --dns-service"

query "service ${claim[b.labns]}/lab-api" -n "${claim[b.labns]}" services lab-api -o \
	'jsonpath={.spec.clusterIPs[*]}|{.spec.ports[*].port}{"\n"}end'
read -ra b_api_ips <<<"${rows[0]%%|*}"
read -ra b_api_ports <<<"${rows[0]#*|}"

# What must work.
add_check ssh-nodeport "claim ${claim[a.ref]}" ssh "${claim[a.host]}" "${claim[a.port]}" connect
workers=0
for row in "${a_rows[@]}"; do
	# row is "VM IP"; only the workers, the probes run on the control plane.
	read -r vm ip <<<"${row}"
	[[ ${vm} == worker-* ]] || continue
	add_check lab-internal "${claim[a.labns]}/${vm}" tcp "${ip}" "${worker_port}" connect
	workers=$((workers + 1))
done
((workers > 0)) || add_check lab-internal "${claim[a.labns]} has no worker" skip - - skip
for ip in "${dns_ips[@]}"; do
	for p in "${dns_ports[@]}"; do
		add_tcp dns-tcp "service ${dns_service}" "${ip}" "${p}" connect
	done
done
[[ -z ${dns_name} ]] || add_check dns-lookup "the VM's resolver" lookup "${dns_name}" - resolve
if [[ -n ${internet} ]]; then
	split_hostport "${internet}"
	add_check internet "--internet" tcp "${hp_host}" "${hp_port}" connect
fi
for hp in "${allows[@]}"; do
	split_hostport "${hp}"
	add_check allow "--allow" tcp "${hp_host}" "${hp_port}" connect
done

# What must not.
for row in "${b_rows[@]}"; do
	read -r vm ip <<<"${row}"
	add_blocked other-lab-vm "${claim[b.labns]}/${vm}" "${ip}"
done
for ip in "${b_api_ips[@]}"; do
	for p in "${b_api_ports[@]}"; do
		add_tcp other-lab-api "service ${claim[b.labns]}/lab-api" "${ip}" "${p}" blocked
	done
done
for row in "${node_rows[@]}"; do
	read -r node ip <<<"${row}"
	add_blocked node "node/${node}" "${ip}"
	add_check other-lab-nodeport "node/${node}, claim ${claim[b.ref]} ssh" tcp "${ip}" "${claim[b.port]}" blocked
	if [[ -n ${claim[b.apiport]} ]]; then
		add_check other-lab-nodeport "node/${node}, claim ${claim[b.ref]} api" tcp "${ip}" "${claim[b.apiport]}" blocked
	fi
done
for ip in "${api_svc_ips[@]}"; do
	for p in "${api_svc_ports[@]}"; do
		add_tcp host-api-service "service default/kubernetes" "${ip}" "${p}" blocked
	done
done
for row in "${api_ep_rows[@]}"; do
	read -ra ep_ips <<<"${row%%|*}"
	read -ra ep_ports <<<"${row#*|}"
	for ip in "${ep_ips[@]}"; do
		for p in "${ep_ports[@]}"; do
			add_tcp host-api-endpoint "endpointslice default/kubernetes" "${ip}" "${p}" blocked
		done
	done
done
add_blocked metadata "link-local metadata" "${metadata_ip}"
for hp in "${forbids[@]}"; do
	split_hostport "${hp}"
	add_check forbid "--forbid" tcp "${hp_host}" "${hp_port}" blocked
done

# --- the probes, run on lab A's control-plane VM ------------------------------------------------
# These functions are sent to the VM with `declare -f`, so shellcheck and bash -n check them
# like the rest of the script. They print one "ID RESULT" line per probe.

# probe_tcp ID HOST PORT: opens a TCP connection with bash's /dev/tcp within probe_timeout.
probe_tcp() {
	local connect err rc=0 got
	printf -v connect 'exec 3<>/dev/tcp/%q/%q' "$2" "$3"
	err=$(timeout "${probe_timeout}" bash -c "${connect}" 2>&1 >/dev/null) || rc=$?
	if ((rc == 0)); then
		got=open
	elif ((rc == 124)); then
		got=timeout
	else
		case ${err} in
		*refused*) got=refused ;;
		*"No route"* | *nreachable*) got=unreachable ;;
		*"not known"* | *"name resolution"* | *"No address"*) got=noresolve ;;
		*) got=error ;;
		esac
	fi
	printf '%s %s\n' "$1" "${got}"
}

# probe_lookup ID NAME: resolves NAME through the VM's own resolver.
probe_lookup() {
	local got=unresolved
	if timeout "${probe_timeout}" getent hosts "$2" >/dev/null 2>&1; then
		got=resolved
	fi
	printf '%s %s\n' "$1" "${got}"
}

# run_probes: reads "ID KIND HOST PORT" lines and runs up to max_jobs probes at once.
run_probes() {
	local id kind host port running=0
	while read -r id kind host port; do
		if ((running >= max_jobs)); then
			wait -n || true
			running=$((running - 1))
		fi
		case ${kind} in
		tcp) probe_tcp "${id}" "${host}" "${port}" & ;;
		lookup) probe_lookup "${id}" "${host}" & ;;
		*) continue ;;
		esac
		running=$((running + 1))
	done
	wait
	echo LABFORGE_PROBES_DONE
}

# remote_script: the whole program the VM runs, probe list included.
remote_script() {
	local i
	declare -p probe_timeout max_jobs
	declare -f probe_tcp probe_lookup run_probes
	echo "run_probes <<'LABFORGE_PROBES'"
	for i in "${!chk_kind[@]}"; do
		case ${chk_kind[i]} in
		tcp | lookup) printf '%s %s %s %s\n' "${i}" "${chk_kind[i]}" "${chk_host[i]}" "${chk_port[i]}" ;;
		*) ;;
		esac
	done
	echo LABFORGE_PROBES
}

# --- the table --------------------------------------------------------------------------------

# print_table COLUMNS...: prints the checks with the given columns, aligned.
print_table() {
	local -a cols=("$@") widths=() cells=()
	local i c n=${#chk_name[@]} row line cell
	local -a table=()
	table+=("$(printf '%s\t' CHECK TARGET DESTINATION EXPECT "${cols[@]}")")
	for ((i = 0; i < n; i++)); do
		local destination=-
		case ${chk_kind[i]} in
		ssh | tcp) destination=$(dest "${chk_host[i]}" "${chk_port[i]}") ;;
		lookup) destination=${chk_host[i]} ;;
		*) ;;
		esac
		row=$(printf '%s\t' "${chk_name[i]}" "${chk_target[i]}" "${destination}" "${chk_expect[i]}")
		for c in "${cols[@]}"; do
			case ${c} in
			GOT) row+="${got[i]}"$'\t' ;;
			RESULT) row+="${result[i]}"$'\t' ;;
			*) ;;
			esac
		done
		table+=("${row}")
	done
	for line in "${table[@]}"; do
		IFS=$'\t' read -ra cells <<<"${line}"
		for c in "${!cells[@]}"; do
			((${#cells[c]} <= ${widths[c]:-0})) || widths[c]=${#cells[c]}
		done
	done
	for line in "${table[@]}"; do
		IFS=$'\t' read -ra cells <<<"${line}"
		row=""
		for c in "${!cells[@]}"; do
			if ((c == ${#cells[@]} - 1)); then
				row+=${cells[c]}
			else
				printf -v cell '%-*s  ' "${widths[c]}" "${cells[c]}"
				row+=${cell}
			fi
		done
		printf '%s\n' "${row}"
	done
}

ssh_line="ssh -p ${claim[a.port]} -l ${claim[a.user]} -- ${claim[a.host]}"
key_source="Secret ${claim[a.ns]}/${claim[a.keysecret]}"
[[ -z ${key_file} ]] || key_source=${key_file}
echo "lab A: claim ${claim[a.ref]}, lab ${claim[a.lab]} in ${claim[a.labns]}, via: ${ssh_line} (key: ${key_source})"
echo "lab B: claim ${claim[b.ref]}, lab ${claim[b.lab]} in ${claim[b.labns]}"

if ${plan}; then
	echo
	print_table
	echo
	echo "${#chk_name[@]} checks planned (--plan: no Secret read, no SSH)"
	exit 0
fi

# --- run ---------------------------------------------------------------------------------------

workdir=$(mktemp -d)
trap 'rm -rf "${workdir}"' EXIT
if [[ -z ${key_file} ]]; then
	key_file=${workdir}/id
	# The key goes from the API straight into a file only this user can read; it is never
	# printed or held in a variable.
	if ! (umask 077 && kc get -n "${claim[a.ns]}" secrets "${claim[a.keysecret]}" \
		-o 'jsonpath={.data.ssh-privatekey}' | base64 -d >"${key_file}"); then
		die "could not read the private key from Secret ${claim[a.ns]}/${claim[a.keysecret]}: pass --key FILE"
	fi
	[[ -s ${key_file} ]] || die "Secret ${claim[a.ns]}/${claim[a.keysecret]} holds no ssh-privatekey: pass --key FILE"
fi

ssh_args=(-T -i "${key_file}" -p "${claim[a.port]}" -l "${claim[a.user]}"
	-o BatchMode=yes -o IdentitiesOnly=yes -o ConnectTimeout=15
	-o StrictHostKeyChecking=accept-new -o "UserKnownHostsFile=${workdir}/known_hosts"
	-o ServerAliveInterval=5 -o ServerAliveCountMax=3 -o LogLevel=ERROR
	-- "${claim[a.host]}" bash -s)
probes=0
for kind in "${chk_kind[@]}"; do
	[[ ${kind} != tcp && ${kind} != lookup ]] || probes=$((probes + 1))
done
# Every batch of probes ends within its timeout; the rest is SSH's own setup.
session_timeout=$(((probes / max_jobs + 1) * (probe_timeout + 2) + 60))

echo "running ${probes} probes on ${claim[a.labns]}/control-plane (at most ${session_timeout}s)"
ssh_rc=0
output=$(remote_script | timeout "${session_timeout}" ssh "${ssh_args[@]}") || ssh_rc=$?

# The VM belongs to a student: accept only well-formed result lines for known probes.
reported=()
done_seen=false
while read -r id value extra; do
	if [[ ${id} == LABFORGE_PROBES_DONE && -z ${value} ]]; then
		done_seen=true
	elif [[ ${id} =~ ^[0-9]{1,6}$ && -z ${extra} && ${value} =~ ^(open|refused|unreachable|timeout|noresolve|error|resolved|unresolved)$ ]]; then
		id=$((10#${id}))
		if ((id < ${#chk_kind[@]})); then
			reported[id]=${value}
		fi
	fi
done <<<"${output}"

# verdict EXPECT GOT: PASS, FAIL or SKIP.
verdict() {
	case $1:$2 in
	skip:*) echo SKIP ;;
	connect:open | resolve:resolved | blocked:timeout | blocked:unreachable) echo PASS ;;
	blocked:refused) if ${reject_ok}; then echo PASS; else echo FAIL; fi ;;
	*) echo FAIL ;;
	esac
}

got=() result=()
failed=0 passed=0 skipped=0
for i in "${!chk_kind[@]}"; do
	case ${chk_kind[i]} in
	ssh) if ${done_seen}; then got[i]=open; else got[i]="failed(${ssh_rc})"; fi ;;
	skip) got[i]=- ;;
	*) got[i]=${reported[i]:-none} ;;
	esac
	result[i]=$(verdict "${chk_expect[i]}" "${got[i]}")
	case ${result[i]} in
	PASS) passed=$((passed + 1)) ;;
	FAIL) failed=$((failed + 1)) ;;
	*) skipped=$((skipped + 1)) ;;
	esac
done

echo
print_table GOT RESULT
echo
echo "${#chk_name[@]} checks: ${passed} PASS, ${failed} FAIL, ${skipped} SKIP"
if ! ${done_seen}; then
	echo "The probes did not finish (ssh exit status ${ssh_rc}): see docs/isolation-runbook.md, \"SSH fails\"." >&2
fi
((failed == 0)) || exit 1
