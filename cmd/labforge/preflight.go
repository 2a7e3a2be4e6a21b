package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/labforge/labforge/internal/preflight"
)

// preflightCmd runs the checklist of internal/preflight against the host cluster of
// --kubeconfig and exits non-zero when a check fails (docs/host-prerequisites.md).
func preflightCmd(args []string) int {
	fs := flag.NewFlagSet("labforge preflight", flag.ExitOnError)
	var kubeconfig, template string
	var opts preflight.Options
	var timeout time.Duration
	fs.StringVar(&kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "Kubeconfig of the host cluster to check (default $KUBECONFIG).")
	fs.StringVar(&template, "template", "", "A YAML file holding a LabTemplate whose network to check against the host's (default: the template defaults, 10.200.0.0/16, 10.201.0.0/16, UDP 8475).")
	fs.StringVar(&opts.NodePortRange, "node-port-range", "", `The host's NodePort range, such as "30000-32767"; when empty, preflight reads it from a kube-apiserver Pod, else from the API server's refusal of a NodePort Service on port 1.`)
	fs.StringVar(&opts.ProbeNamespace, "probe-namespace", "default", "Namespace of the NodePort Service create, refused, that learns the NodePort range.")
	fs.DurationVar(&timeout, "timeout", 30*time.Second, "How long all the reads may take.")
	_ = fs.Parse(args)
	if kubeconfig == "" {
		fmt.Fprintln(os.Stderr, "labforge preflight: --kubeconfig is required")
		return 2
	}
	if template != "" {
		lab, err := preflight.LoadTemplateNetwork(template)
		if err != nil {
			fmt.Fprintf(os.Stderr, "labforge preflight: --template: %v\n", err)
			return 2
		}
		opts.Lab = lab
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		fmt.Fprintf(os.Stderr, "labforge preflight: %v\n", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	report, err := preflight.Run(ctx, cfg, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "labforge preflight: %v\n", err)
		return 1
	}
	if err := report.Write(os.Stdout); err != nil {
		return 1
	}
	if report.Failed() {
		return 1
	}
	return 0
}
