package scripts_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/util/jsonpath"
)

// The test binary doubles as kubectl and ssh for the scripts it runs: TestMain dispatches on
// the name it was started under (a symlink on the scripts' PATH). Both fakes append what
// they were asked to the file in logEnv, so tests can assert what the script did.
const (
	// objectsEnv names a JSON file {"items": [...]} holding every object the fake cluster has.
	objectsEnv = "LABFORGE_FAKE_OBJECTS"
	// logEnv names the file the fakes append one line per call to.
	logEnv = "LABFORGE_FAKE_LOG"
	// sshExitEnv makes the fake ssh fail to connect with this exit status.
	sshExitEnv = "LABFORGE_FAKE_SSH_EXIT"
)

// resource is what kubectl knows of a resource name: the object's apiVersion and kind, and
// whether it lives in a namespace.
type resource struct {
	apiVersion, kind string
	namespaced       bool
}

// resources are the resource names the scripts may ask for, spelled as kubectl accepts
// them. Any other name fails like a real kubectl with an unknown type.
var resources = map[string]resource{
	"labclaims.labforge.dev":              {"labforge.dev/v1alpha1", "LabClaim", true},
	"labenvironments.labforge.dev":        {"labforge.dev/v1alpha1", "LabEnvironment", false},
	"virtualmachineinstances.kubevirt.io": {"kubevirt.io/v1", "VirtualMachineInstance", true},
	"pods":                                {"v1", "Pod", true},
	"nodes":                               {"v1", "Node", false},
	"services":                            {"v1", "Service", true},
	"secrets":                             {"v1", "Secret", true},
	"endpointslices.discovery.k8s.io":     {"discovery.k8s.io/v1", "EndpointSlice", true},
}

// appendLog adds one line to the fakes' log.
func appendLog(line string) {
	path := os.Getenv(logEnv)
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake:", err)
		os.Exit(3)
	}
	defer f.Close()
	fmt.Fprintln(f, line)
}

// fakeKubectl answers `kubectl get RESOURCE [NAME] [-n NS] [-l SELECTOR] -o jsonpath=T`
// from the objects file, evaluating the template with client-go's jsonpath the way
// kubectl's printer does (missing keys allowed; a list is printed as a v1 List).
func fakeKubectl(args []string) int {
	appendLog("kubectl " + strings.Join(args, " "))
	var positional []string
	namespace, selector, output := "default", "", ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		value := func() string {
			if k, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(k, "--") {
				return v
			}
			i++
			if i == len(args) {
				fmt.Fprintf(os.Stderr, "error: flag needs an argument: %s\n", a)
				os.Exit(1)
			}
			return args[i]
		}
		switch name, _, _ := strings.Cut(a, "="); name {
		case "-n", "--namespace":
			namespace = value()
		case "-l", "--selector":
			selector = value()
		case "-o", "--output":
			output = value()
		case "--kubeconfig", "--request-timeout":
			value()
		default:
			if strings.HasPrefix(a, "-") {
				fmt.Fprintf(os.Stderr, "error: unknown flag: %s\n", a)
				return 1
			}
			positional = append(positional, a)
		}
	}
	if len(positional) < 2 || len(positional) > 3 || positional[0] != "get" {
		fmt.Fprintf(os.Stderr, "fake kubectl: only `get RESOURCE [NAME]` is supported, got %q\n", positional)
		return 1
	}
	res, ok := resources[positional[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "error: the server doesn't have a resource type %q\n", positional[1])
		return 1
	}
	template, ok := strings.CutPrefix(output, "jsonpath=")
	if !ok {
		fmt.Fprintf(os.Stderr, "fake kubectl: only -o jsonpath=... is supported, got %q\n", output)
		return 1
	}
	sel, err := labels.Parse(selector)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		return 1
	}
	objects, err := loadObjects()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake kubectl:", err)
		return 3
	}
	var matched []any
	for _, o := range objects {
		meta, _ := o["metadata"].(map[string]any)
		objNamespace, _ := meta["namespace"].(string)
		name, _ := meta["name"].(string)
		if o["apiVersion"] != res.apiVersion || o["kind"] != res.kind ||
			(res.namespaced && objNamespace != namespace) ||
			(len(positional) == 3 && name != positional[2]) ||
			!sel.Matches(labels.Set(stringMap(meta["labels"]))) {
			continue
		}
		matched = append(matched, o)
	}
	var data any = map[string]any{"apiVersion": "v1", "kind": "List", "metadata": map[string]any{"resourceVersion": ""}, "items": matched}
	if len(positional) == 3 {
		if len(matched) == 0 {
			fmt.Fprintf(os.Stderr, "Error from server (NotFound): %s %q not found\n", positional[1], positional[2])
			return 1
		}
		data = matched[0]
	}
	j := jsonpath.New("out").AllowMissingKeys(true)
	if err := j.Parse(template); err != nil {
		fmt.Fprintf(os.Stderr, "error: error parsing jsonpath %s, %v\n", template, err)
		return 1
	}
	var out bytes.Buffer
	if err := j.Execute(&out, data); err != nil {
		fmt.Fprintf(os.Stderr, "error: error executing jsonpath %q: %v\n", template, err)
		return 1
	}
	_, _ = os.Stdout.Write(out.Bytes())
	return 0
}

func loadObjects() ([]map[string]any, error) {
	raw, err := os.ReadFile(os.Getenv(objectsEnv))
	if err != nil {
		return nil, err
	}
	var list struct {
		Items []map[string]any `json:"items"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, err
	}
	return list.Items, nil
}

func stringMap(v any) map[string]string {
	m, _ := v.(map[string]any)
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k], _ = v.(string)
	}
	return out
}

// fakeSSH stands in for `ssh [opts] -- HOST COMMAND...`: it records the options, the
// identity file's mode and a hash of its content (never the key), then runs the remote
// command here with sh, as sshd would run it with the user's shell. With sshExitEnv set
// it fails like an unreachable host instead.
func fakeSSH(args []string) int {
	var logged []string
	var identity, host string
	var command []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch a {
		case "-i", "-p", "-l", "-o":
			if i+1 == len(args) {
				fmt.Fprintf(os.Stderr, "ssh: option requires an argument -- %s\n", a)
				return 255
			}
			value := args[i+1]
			i++
			switch {
			case a == "-i":
				identity = value
				value = "KEY"
			case strings.HasPrefix(value, "UserKnownHostsFile="):
				value = "UserKnownHostsFile=FILE"
			}
			logged = append(logged, a, value)
		case "-T":
			logged = append(logged, a)
		case "--":
			if i+1 < len(args) {
				host, command = args[i+1], args[i+2:]
			}
			i = len(args)
		default:
			fmt.Fprintf(os.Stderr, "fake ssh: unexpected argument %q (destination must follow --)\n", a)
			return 255
		}
	}
	appendLog(fmt.Sprintf("ssh %s -- %s %s", strings.Join(logged, " "), host, strings.Join(command, " ")))
	if identity != "" {
		key, err := os.ReadFile(identity)
		info, statErr := os.Stat(identity)
		if err != nil || statErr != nil {
			appendLog(fmt.Sprintf("ssh identity unreadable: %v", errors.Join(err, statErr)))
		} else {
			appendLog(fmt.Sprintf("ssh identity path=%s mode=%v sha256=%x", identity, info.Mode().Perm(), sha256.Sum256(key)))
		}
	}
	if code := os.Getenv(sshExitEnv); code != "" {
		fmt.Fprintf(os.Stderr, "ssh: connect to host %s: Connection refused\n", host)
		var n int
		_, _ = fmt.Sscan(code, &n)
		return n
	}
	cmd := exec.Command("sh", "-c", strings.Join(command, " "))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "fake ssh:", err)
		return 255
	}
	return 0
}
