package scripts_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// result is one run of hack/isolation-check.sh against a fake cluster.
type result struct {
	stdout, stderr string
	code           int
	// log holds one line per call of the fake kubectl and ssh, plus what ssh saw of the key.
	log []string
}

// runCheck runs the script with c as the cluster and this test binary as kubectl and ssh.
func runCheck(t *testing.T, c *cluster, env []string, args ...string) result {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the probes need all of 127.0.0.0/8 on loopback, as on Linux")
	}
	dir := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"kubectl", "ssh"} {
		if err := os.Symlink(self, filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	logPath := filepath.Join(dir, "calls.log")
	cmd := exec.Command("bash", append([]string{filepath.Join(repoRoot(), "hack", "isolation-check.sh")}, args...)...)
	cmd.Env = append([]string{
		"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"),
		"HOME=" + dir,
		"LC_ALL=C",
		// A real kubectl would find no cluster here.
		"KUBECONFIG=" + filepath.Join(dir, "no-such-kubeconfig"),
		objectsEnv + "=" + c.write(t, dir),
		logEnv + "=" + logPath,
	}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	code := 0
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	r := result{stdout: stdout.String(), stderr: stderr.String(), code: code}
	if raw, err := os.ReadFile(logPath); err == nil {
		r.log = strings.Split(strings.TrimSpace(string(raw)), "\n")
	}
	return r
}

// called reports whether a logged call starts with prefix.
func (r result) called(prefix string) bool {
	for _, l := range r.log {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// readSecret reports whether the script asked kubectl for any Secret.
func (r result) readSecret() bool {
	for _, l := range r.log {
		if strings.HasPrefix(l, "kubectl ") && (strings.Contains(l, " secrets ") || strings.Contains(l, " secret ")) {
			return true
		}
	}
	return false
}

var cellSeparator = regexp.MustCompile(`\s{2,}`)

// table returns the rows of the script's table, header included, split into cells.
func table(stdout string) [][]string {
	var rows [][]string
	in := false
	for _, line := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(line, "CHECK ") {
			in = true
		}
		if in && line == "" {
			break
		}
		if in {
			rows = append(rows, cellSeparator.Split(strings.TrimRight(line, " "), -1))
		}
	}
	return rows
}

// check is one expected row: the plan's four columns, then what the probe got and the
// verdict.
type check struct{ name, target, destination, expect, got, verdict string }

func addr(ip string, port int) string { return ip + ":" + strconv.Itoa(port) }

// isolated are the checks on the fake cluster when it behaves like an isolated lab whose
// CNI rejects denied packets: everything allowed connects, everything forbidden is refused.
func isolated(p ports) []check {
	pass := func(name, target, destination, expect, got string) check {
		return check{name, target, destination, expect, got, "PASS"}
	}
	blocked := func(name, target, destination string) check {
		return pass(name, target, destination, "blocked", "refused")
	}
	checks := []check{
		pass("ssh-nodeport", "claim default/alice", addr("127.0.0.1", aliceSSH), "connect", "open"),
		pass("lab-internal", "lab-alpha/worker-1", addr("127.0.1.2", p.worker), "connect", "open"),
		pass("dns-tcp", "service kube-system/kube-dns", addr("127.0.5.10", p.dns), "connect", "open"),
		pass("dns-lookup", "the VM's resolver", "localhost", "resolve", "resolved"),
		pass("internet", "--internet", addr("127.0.7.3", p.internet), "connect", "open"),
		pass("allow", "--allow", addr("127.0.7.1", p.allow), "connect", "open"),
	}
	for _, vm := range []struct{ name, ip string }{{"control-plane", "127.0.2.1"}, {"worker-1", "127.0.2.2"}} {
		for _, port := range []int{p.probe1, p.probe2} {
			checks = append(checks, blocked("other-lab-vm", "lab-bravo/"+vm.name, addr(vm.ip, port)))
		}
	}
	checks = append(checks, blocked("other-lab-api", "service lab-bravo/lab-api", addr("127.0.2.10", p.labAPI)))
	for _, n := range []struct{ name, ip string }{{"node-1", "127.0.3.1"}, {"node-2", "127.0.3.2"}, {"node-2", "127.0.3.102"}} {
		checks = append(checks,
			blocked("node", "node/"+n.name, addr(n.ip, p.probe1)),
			blocked("node", "node/"+n.name, addr(n.ip, p.probe2)),
			blocked("other-lab-nodeport", "node/"+n.name+", claim default/bob ssh", addr(n.ip, p.bobSSH)),
			blocked("other-lab-nodeport", "node/"+n.name+", claim default/bob api", addr(n.ip, p.bobAPI)))
	}
	return append(checks,
		blocked("host-api-service", "service default/kubernetes", addr("127.0.4.1", p.kubernetes)),
		blocked("host-api-endpoint", "endpointslice default/kubernetes", addr("127.0.4.2", p.endpoint)),
		blocked("metadata", "link-local metadata", addr("127.0.6.254", p.probe1)),
		blocked("metadata", "link-local metadata", addr("127.0.6.254", p.probe2)),
		blocked("forbid", "--forbid", addr("127.0.7.2", p.forbid)))
}

// rows renders checks as the script's table, with the GOT and RESULT columns when ran.
func rows(checks []check, ran bool) [][]string {
	header := []string{"CHECK", "TARGET", "DESTINATION", "EXPECT"}
	if ran {
		header = append(header, "GOT", "RESULT")
	}
	out := [][]string{header}
	for _, c := range checks {
		row := []string{c.name, c.target, c.destination, c.expect}
		if ran {
			row = append(row, c.got, c.verdict)
		}
		out = append(out, row)
	}
	return out
}

// flags are the flags every run passes: the fake cluster's ports and loopback stand-ins for
// the metadata address and the extra destinations.
func flags(p ports, extra ...string) []string {
	return append([]string{
		"--ports", fmt.Sprintf("%d,%d", p.probe1, p.probe2), "--timeout", "2",
		"--worker-port", strconv.Itoa(p.worker), "--dns-name", "localhost",
		"--internet", addr("127.0.7.3", p.internet), "--allow", addr("127.0.7.1", p.allow),
		"--forbid", addr("127.0.7.2", p.forbid), "--metadata-ip", "127.0.6.254",
	}, extra...)
}

const (
	headerA = "lab A: claim default/alice, lab alpha in lab-alpha, via: ssh -p 30022 -l ubuntu -- 127.0.0.1 (key: Secret default/alice-ssh)"
	headerB = "lab B: claim default/bob, lab bravo in lab-bravo"
)

func TestIsolationCheckHelp(t *testing.T) {
	r := runCheck(t, newCluster(newPorts(t)), nil, "--help")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "Usage: isolation-check.sh [flags] NAMESPACE/CLAIM_A NAMESPACE/CLAIM_B\n") {
		t.Fatalf("--help: exit %d, stdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for _, flag := range []string{"--key", "--ports", "--timeout", "--worker-port", "--dns-service", "--dns-name",
		"--no-dns-lookup", "--internet", "--allow", "--forbid", "--metadata-ip", "--ssh-host", "--reject-ok",
		"--kubeconfig", "--plan", "(default 22,6443,10250,80,443)"} {
		if !strings.Contains(r.stdout, flag) {
			t.Errorf("--help does not mention %s", flag)
		}
	}
	if len(r.log) != 0 {
		t.Errorf("--help called %v", r.log)
	}
}

func TestIsolationCheckPlanReadsTheClusterButNoSecretAndRunsNoSSH(t *testing.T) {
	p := newPorts(t)
	c := newCluster(p)
	c.nodes = append(c.nodes, node("node-3", corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "fd00::13"}))
	r := runCheck(t, c, nil, flags(p, "--plan", "default/alice", "default/bob")...)
	if r.code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	want := isolated(p)
	// node-3 is IPv6-only: its rows come after the other nodes', its address bracketed.
	var node3 []check
	for _, port := range []string{strconv.Itoa(p.probe1), strconv.Itoa(p.probe2)} {
		node3 = append(node3, check{name: "node", target: "node/node-3", destination: "[fd00::13]:" + port, expect: "blocked"})
	}
	node3 = append(node3,
		check{name: "other-lab-nodeport", target: "node/node-3, claim default/bob ssh", destination: "[fd00::13]:" + strconv.Itoa(p.bobSSH), expect: "blocked"},
		check{name: "other-lab-nodeport", target: "node/node-3, claim default/bob api", destination: "[fd00::13]:" + strconv.Itoa(p.bobAPI), expect: "blocked"})
	lastNode := 0
	for i, w := range want {
		if strings.HasPrefix(w.target, "node/") {
			lastNode = i
		}
	}
	want = append(want[:lastNode+1], append(node3, want[lastNode+1:]...)...)
	if diff := cmp.Diff(rows(want, false), table(r.stdout)); diff != "" {
		t.Errorf("plan table (-want +got):\n%s\nstdout:\n%s", diff, r.stdout)
	}
	lines := strings.Split(r.stdout, "\n")
	if diff := cmp.Diff([]string{headerA, headerB}, lines[:2]); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}
	if wantSummary := fmt.Sprintf("%d checks planned (--plan: no Secret read, no SSH)\n", len(want)); !strings.HasSuffix(r.stdout, wantSummary) {
		t.Errorf("stdout does not end with %q:\n%s", wantSummary, r.stdout)
	}
	if r.readSecret() || r.called("ssh") {
		t.Errorf("--plan read a Secret or ran ssh:\n%s", strings.Join(r.log, "\n"))
	}
	if !strings.Contains(r.stderr, "warning: ignored an invalid address reported for lab-bravo/worker-1") {
		t.Errorf("the garbage address lab B's guest reported was not flagged; stderr:\n%s", r.stderr)
	}
}

func TestIsolationCheckRun(t *testing.T) {
	verdicts := func(checks []check, f func(*check)) []check {
		for i := range checks {
			f(&checks[i])
		}
		return checks
	}
	for name, tc := range map[string]struct {
		// ports and cluster change the isolated lab: a port first, then objects.
		ports    func(p *ports, t *testing.T)
		cluster  func(c *cluster)
		args     []string
		env      []string
		want     func(p ports) []check
		wantCode int
		// wantSummary is the line after the table.
		wantSummary string
		wantStderr  string
	}{
		"an isolated lab behind a rejecting CNI passes": {
			args:        []string{"--reject-ok"},
			want:        isolated,
			wantSummary: "28 checks: 28 PASS, 0 FAIL, 0 SKIP",
		},
		"a refused connection reached its destination, so it fails unless --reject-ok": {
			want: func(p ports) []check {
				return verdicts(isolated(p), func(c *check) {
					if c.expect == "blocked" {
						c.verdict = "FAIL"
					}
				})
			},
			wantCode:    1,
			wantSummary: "28 checks: 6 PASS, 22 FAIL, 0 SKIP",
		},
		"a host API server that accepts the connection fails the check": {
			ports: func(p *ports, t *testing.T) { p.endpoint = listen(t, "127.0.4.2") },
			args:  []string{"--reject-ok"},
			want: func(p ports) []check {
				return verdicts(isolated(p), func(c *check) {
					if c.name == "host-api-endpoint" {
						c.got, c.verdict = "open", "FAIL"
					}
				})
			},
			wantCode:    1,
			wantSummary: "28 checks: 27 PASS, 1 FAIL, 0 SKIP",
		},
		"a destination that drops the connection is blocked": {
			ports: func(p *ports, t *testing.T) { p.forbid = blackhole(t, "127.0.7.2") },
			want: func(p ports) []check {
				return verdicts(isolated(p), func(c *check) {
					if c.name == "forbid" {
						c.got = "timeout"
					}
				})
			},
			args:        []string{"--reject-ok"},
			wantSummary: "28 checks: 28 PASS, 0 FAIL, 0 SKIP",
		},
		"an own worker that does not answer fails the check": {
			ports: func(p *ports, t *testing.T) { p.worker = closedPort(t) },
			args:  []string{"--reject-ok"},
			want: func(p ports) []check {
				return verdicts(isolated(p), func(c *check) {
					if c.name == "lab-internal" {
						c.got, c.verdict = "refused", "FAIL"
					}
				})
			},
			wantCode:    1,
			wantSummary: "28 checks: 27 PASS, 1 FAIL, 0 SKIP",
		},
		"a lab without workers skips the lab-internal check": {
			cluster: func(c *cluster) {
				c.vmis = append(c.vmis[:1], c.vmis[2:]...)
				c.pods = append(c.pods[:1], c.pods[2:]...)
			},
			args: []string{"--reject-ok"},
			want: func(p ports) []check {
				return verdicts(isolated(p), func(c *check) {
					if c.name == "lab-internal" {
						*c = check{"lab-internal", "lab-alpha has no worker", "-", "skip", "-", "SKIP"}
					}
				})
			},
			wantSummary: "28 checks: 27 PASS, 0 FAIL, 1 SKIP",
		},
		"SSH that fails fails every check": {
			env:  []string{sshExitEnv + "=255"},
			args: []string{"--reject-ok"},
			want: func(p ports) []check {
				return verdicts(isolated(p), func(c *check) {
					c.got, c.verdict = "none", "FAIL"
					if c.name == "ssh-nodeport" {
						c.got = "failed(255)"
					}
				})
			},
			wantCode:    1,
			wantSummary: "28 checks: 0 PASS, 28 FAIL, 0 SKIP",
			wantStderr:  "The probes did not finish (ssh exit status 255)",
		},
	} {
		t.Run(name, func(t *testing.T) {
			p := newPorts(t)
			if tc.ports != nil {
				tc.ports(&p, t)
			}
			c := newCluster(p)
			if tc.cluster != nil {
				tc.cluster(c)
			}
			r := runCheck(t, c, tc.env, flags(p, append(tc.args, "default/alice", "default/bob")...)...)
			if r.code != tc.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", r.code, tc.wantCode, r.stderr)
			}
			if diff := cmp.Diff(rows(tc.want(p), true), table(r.stdout)); diff != "" {
				t.Errorf("table (-want +got):\n%s\nstdout:\n%s\nstderr:\n%s", diff, r.stdout, r.stderr)
			}
			if !strings.HasSuffix(r.stdout, "\n"+tc.wantSummary+"\n") {
				t.Errorf("stdout does not end with %q:\n%s", tc.wantSummary, r.stdout)
			}
			if !strings.Contains(r.stderr, tc.wantStderr) {
				t.Errorf("stderr does not contain %q:\n%s", tc.wantStderr, r.stderr)
			}
		})
	}
}

func TestIsolationCheckKeepsTheKeyPrivate(t *testing.T) {
	p := newPorts(t)
	keyHash := fmt.Sprintf("sha256=%x", sha256.Sum256([]byte(fakeKey)))
	identity := regexp.MustCompile(`^ssh identity path=(\S+) mode=(\S+) (sha256=\S+)$`)
	wantSSH := "ssh -T -i KEY -p 30022 -l ubuntu -o BatchMode=yes -o IdentitiesOnly=yes -o ConnectTimeout=15 " +
		"-o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=FILE -o ServerAliveInterval=5 " +
		"-o ServerAliveCountMax=3 -o LogLevel=ERROR -- 127.0.0.1 bash -s"

	ownKey := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(ownKey, []byte(fakeKey), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		args        []string
		wantSecret  bool
		wantKeyPath func(string) bool
	}{
		"from the claim's Secret, into a private file removed afterwards": {
			wantSecret: true,
			wantKeyPath: func(path string) bool {
				_, err := os.Stat(path)
				return errors.Is(err, os.ErrNotExist) && strings.HasSuffix(path, "/id")
			},
		},
		"from --key, with no Secret read": {
			args:        []string{"--key", ownKey},
			wantKeyPath: func(path string) bool { return path == ownKey },
		},
	} {
		t.Run(name, func(t *testing.T) {
			r := runCheck(t, newCluster(p), nil, flags(p, append(tc.args, "--reject-ok", "default/alice", "default/bob")...)...)
			if r.code != 0 {
				t.Fatalf("exit %d, stderr:\n%s\nstdout:\n%s", r.code, r.stderr, r.stdout)
			}
			if got := r.called("kubectl --request-timeout=30s get -n default secrets alice-ssh -o jsonpath={.data.ssh-privatekey}"); got != tc.wantSecret {
				t.Errorf("read the Secret: %v, want %v; calls:\n%s", got, tc.wantSecret, strings.Join(r.log, "\n"))
			}
			var sshCalls, identities []string
			for _, l := range r.log {
				if strings.HasPrefix(l, "ssh -") {
					sshCalls = append(sshCalls, l)
				}
				if strings.HasPrefix(l, "ssh identity") {
					identities = append(identities, l)
				}
			}
			if diff := cmp.Diff([]string{wantSSH}, sshCalls); diff != "" {
				t.Errorf("ssh calls (-want +got):\n%s", diff)
			}
			if len(identities) != 1 {
				t.Fatalf("ssh saw identities %q, want one", identities)
			}
			m := identity.FindStringSubmatch(identities[0])
			if m == nil || m[2] != "-rw-------" || m[3] != keyHash || !tc.wantKeyPath(m[1]) {
				t.Errorf("ssh identity %q: want mode -rw-------, %s, and the right path (removed when it was a copy)", identities[0], keyHash)
			}
			out := r.stdout + r.stderr
			for _, secret := range []string{"bm90LWEtcmVhbC1rZXk", base64.StdEncoding.EncodeToString([]byte(fakeKey))[:40]} {
				if strings.Contains(out, secret) {
					t.Errorf("the output holds key material %q:\n%s", secret, out)
				}
			}
		})
	}
}

func TestIsolationCheckRefusesBadInputBeforeAnySSH(t *testing.T) {
	notReady := []metav1.Condition{{Type: "Ready", Status: metav1.ConditionFalse, Reason: "WaitingForLab"}}
	for name, tc := range map[string]struct {
		change     func(c *cluster)
		args       []string
		wantStderr []string
	}{
		"a claim that is not Ready": {
			change:     func(c *cluster) { c.claimB.Status.Conditions = notReady },
			wantStderr: []string{"labclaim default/bob is not Ready (Ready=False): wait for it first"},
		},
		"an SSH host that would pass as an ssh option": {
			change:     func(c *cluster) { c.claimA.Status.SSH.Host = "-oProxyCommand=touch pwned" },
			wantStderr: []string{"labclaim default/alice has an invalid status.ssh.host"},
		},
		"an SSH user with shell syntax": {
			change:     func(c *cluster) { c.claimA.Status.SSH.User = "ubuntu;id" },
			wantStderr: []string{"labclaim default/alice has an invalid status.ssh.user"},
		},
		"a claim that does not exist": {
			args: []string{"default/nobody", "default/bob"},
			wantStderr: []string{`Error from server (NotFound): labclaims.labforge.dev "nobody" not found`,
				"could not read labclaim default/nobody"},
		},
		"two claims on one lab": {
			change:     func(c *cluster) { c.claimB.Status.Lab = "alpha" },
			wantStderr: []string{"both claims hold lab alpha: give two different labs"},
		},
		"a lab B with no address to probe": {
			change: func(c *cluster) {
				c.vmis, c.pods = c.vmis[:2], c.pods[:2]
			},
			wantStderr: []string{"found no address of lab B's VMs in lab-bravo"},
		},
		"no key Secret and no --key": {
			change:     func(c *cluster) { c.secrets = nil },
			wantStderr: []string{"could not read the private key from Secret default/alice-ssh: pass --key FILE"},
		},
		"one claim":                 {args: []string{"default/alice"}, wantStderr: []string{"expected two claims"}},
		"a claim without namespace": {args: []string{"alice", "default/bob"}, wantStderr: []string{"claim alice is not NAMESPACE/NAME"}},
		"port 0":                    {args: []string{"--ports", "22,0", "default/alice", "default/bob"}, wantStderr: []string{"--ports: 0 is not a port"}},
		"a timeout too long":        {args: []string{"--timeout", "61", "default/alice", "default/bob"}, wantStderr: []string{"--timeout must be 1 to 60 seconds"}},
		"an --allow without port": {
			args:       []string{"--allow", "example.com", "default/alice", "default/bob"},
			wantStderr: []string{"--allow/--forbid: example.com is not HOST:PORT"},
		},
		"an unknown flag": {args: []string{"--frobnicate", "default/alice", "default/bob"}, wantStderr: []string{"unknown flag --frobnicate"}},
	} {
		t.Run(name, func(t *testing.T) {
			c := newCluster(newPorts(t))
			if tc.change != nil {
				tc.change(c)
			}
			args := tc.args
			if args == nil {
				args = []string{"default/alice", "default/bob"}
			}
			r := runCheck(t, c, nil, args...)
			if r.code != 2 {
				t.Errorf("exit %d, want 2; stdout:\n%s", r.code, r.stdout)
			}
			for _, want := range tc.wantStderr {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr does not contain %q:\n%s", want, r.stderr)
				}
			}
			if r.called("ssh") {
				t.Errorf("ran ssh:\n%s", strings.Join(r.log, "\n"))
			}
		})
	}
}
