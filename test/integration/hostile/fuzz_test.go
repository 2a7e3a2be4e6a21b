package hostile_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/test/integration"
)

// fuzzNamespace holds the LabClaims the fuzz targets send; no story uses it, so it must
// stay empty.
const fuzzNamespace = "fuzz"

// requestTimeout bounds the requests of one fuzz input.
const requestTimeout = 30 * time.Second

// FuzzLabClaimSpec sends LabClaims with random specs to the real API server as
// server-side dry-run creates. Each input is a JSON merge patch (RFC 7386) over a valid
// claim spec; strict picks strict field validation or none. The API server must answer
// with success or a 4xx Invalid/BadRequest that says why, never a 5xx or a broken
// connection, and must store nothing.
//
//	go test -run='^FuzzLabClaimSpec$' -fuzz=FuzzLabClaimSpec -fuzztime=60s ./test/integration/hostile
func FuzzLabClaimSpec(f *testing.F) {
	fuzzSpec(f, "LabClaim", fuzzNamespace, map[string]any{
		"poolRef":  map[string]any{"name": "broken-dns"},
		"ssh":      map[string]any{"authorizedKeys": []any{integration.StudentKey}, "generateKeyPair": true},
		"duration": "2h",
	})
}

// FuzzLabPoolSpec is FuzzLabClaimSpec for LabPools.
func FuzzLabPoolSpec(f *testing.F) {
	fuzzSpec(f, "LabPool", "", map[string]any{
		"templateRef": map[string]any{"name": "broken-dns"}, "replicas": int64(2), "maxBooting": int64(5), "maxLabs": int64(10),
		"claimNamespaceSelector": map[string]any{"matchLabels": map[string]any{"labs": "yes"}},
		"updateStrategy":         map[string]any{"type": "RollingUpdate"},
	})
}

// FuzzLabTemplateSpec is FuzzLabClaimSpec for LabTemplates.
func FuzzLabTemplateSpec(f *testing.F) {
	fuzzSpec(f, "LabTemplate", "", map[string]any{
		"kubernetesVersion": "v1.36.3",
		"image":             map[string]any{"containerDisk": "quay.io/containerdisks/ubuntu:22.04"},
		"controlPlane":      map[string]any{"cores": int64(2), "threads": int64(1), "memory": "2Gi"},
		"workers":           map[string]any{"count": int64(1), "cores": int64(1), "memory": "1Gi"},
		"sshUser":           "ubuntu",
		"description":       "Fix the cluster DNS",
		"hints":             []any{"Look at CoreDNS"},
		"scenario":          map[string]any{"script": "#!/bin/sh\nkubectl -n kube-system scale deploy coredns --replicas=0\n"},
		"lifetime":          map[string]any{"default": "2h", "maximum": "8h"},
		"bootTimeout":       "15m",
		"network": map[string]any{
			"podCIDR": "10.200.0.0/16", "serviceCIDR": "10.201.0.0/16", "tunnelPort": int64(8475),
			"egressExceptCIDRs": []any{"192.0.2.0/24"},
			"bandwidth":         map[string]any{"ingress": "50M", "egress": "50M"},
		},
	})
}

// fuzzSpec runs the fuzz target for one kind: seed is a valid spec, the corpus in
// testdata/fuzz/<target> and the fuzzer's mutations are merge patches over it.
func fuzzSpec(f *testing.F, kind, namespace string, seed map[string]any) {
	ctx := context.Background()
	name := "fuzz-" + map[string]string{"LabClaim": "claim", "LabPool": "pool", "LabTemplate": "template"}[kind]
	if namespace != "" {
		err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			f.Fatal(err)
		}
	}
	f.Add([]byte(`{}`), true)

	f.Fuzz(func(t *testing.T, patch []byte, strict bool) {
		// An API server that takes this long over one small object is a finding too.
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		spec, ok := mergePatch(runtime.DeepCopyJSONValue(seed), patch)
		if !ok {
			return // not JSON: the API server's JSON decoder is not what is tested here
		}
		obj := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": labforgev1alpha1.GroupVersion.String(), "kind": kind,
			"metadata": map[string]any{"name": name}, "spec": spec,
		}}
		obj.SetNamespace(namespace)
		validation := "Ignore"
		if strict {
			validation = "Strict"
		}
		err := k8s.Create(ctx, obj, client.DryRunAll, client.FieldValidation(validation))
		if bytes.Equal(bytes.TrimSpace(patch), []byte("{}")) && err != nil {
			t.Fatalf("the valid seed %s was refused, so every other answer means nothing: %v", kind, err)
		}
		if err != nil {
			var status apierrors.APIStatus
			if !errors.As(err, &status) {
				t.Fatalf("dry-run create of %s with spec %s: not an answer from the API server: %v", kind, patch, err)
			}
			code := status.Status().Code
			if !(apierrors.IsInvalid(err) || apierrors.IsBadRequest(err)) || code < 400 || code >= 500 {
				t.Fatalf("dry-run create of %s with spec %s: HTTP %d %s: %v", kind, patch, code, status.Status().Reason, err)
			}
			if status.Status().Message == "" {
				t.Fatalf("dry-run create of %s with spec %s: refused without a message: %#v", kind, patch, status.Status())
			}
			t.Logf("HTTP %d %s: %s", code, status.Status().Reason, status.Status().Message)
		} else {
			t.Logf("accepted")
		}

		// Nothing is stored, whatever the answer.
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(obj.GroupVersionKind())
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(obj), got); !apierrors.IsNotFound(err) {
			t.Fatalf("after a dry-run create of %s with spec %s, reading it back: %v (want NotFound)", kind, patch, err)
		}
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(labforgev1alpha1.GroupVersion.WithKind(kind + "List"))
		var opts []client.ListOption
		if namespace != "" {
			opts = append(opts, client.InNamespace(namespace))
		}
		if err := k8s.List(ctx, list, opts...); err != nil {
			t.Fatalf("listing %s: %v", kind, err)
		}
		for _, item := range list.Items {
			if namespace != "" || item.GetName() == name {
				t.Fatalf("after a dry-run create of %s with spec %s, %s %s/%s is stored", kind, patch, kind, item.GetNamespace(), item.GetName())
			}
		}
	})
}

// mergePatch applies patch, a JSON merge patch (RFC 7386), to doc. It reports false when
// patch is not one JSON value. Numbers keep their literal form (json.Number), so that the
// API server, not this function, decides what 1e400 or 9223372036854775808 means.
func mergePatch(doc any, patch []byte) (any, bool) {
	dec := json.NewDecoder(bytes.NewReader(patch))
	dec.UseNumber()
	var p any
	if err := dec.Decode(&p); err != nil {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false
	}
	return merge(doc, p), true
}

func merge(doc, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	d, ok := doc.(map[string]any)
	if !ok {
		d = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(d, k)
			continue
		}
		d[k] = merge(d[k], v)
	}
	return d
}
