package controlplane

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// crdFieldManager owns the fields of the CRDs that Start applies.
const crdFieldManager = "labforge-controlplane"

// crdDoc is one CustomResourceDefinition document read from CRDPaths.
type crdDoc struct {
	name   string
	source string // the file it came from, for error messages
	json   []byte
}

// readAllCRDs reads the CRDs in paths. Start does so before starting
// anything, so that a mistake in CRDPaths fails fast.
func readAllCRDs(paths []string) ([]crdDoc, error) {
	var docs []crdDoc
	for _, path := range paths {
		found, err := readCRDs(path)
		if err != nil {
			return nil, fmt.Errorf("CRDs: %w", err)
		}
		docs = append(docs, found...)
	}
	return docs, nil
}

// installCRDs server-side applies docs, so that a reused StateDir picks up
// changed definitions, and waits until every one is Established and its
// resources are served by discovery: only then will clients and informers
// that start right after find them.
func installCRDs(ctx context.Context, cfg *rest.Config, docs []crdDoc) error {
	if len(docs) == 0 {
		return nil
	}
	client, err := apiextensionsclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	crds := client.ApiextensionsV1().CustomResourceDefinitions()
	force := true
	for _, doc := range docs {
		if _, err := crds.Patch(ctx, doc.name, types.ApplyPatchType, doc.json,
			metav1.PatchOptions{FieldManager: crdFieldManager, Force: &force}); err != nil {
			return fmt.Errorf("CRDs: applying %s from %s: %w", doc.name, doc.source, err)
		}
	}

	pending := map[string]crdDoc{}
	for _, doc := range docs {
		pending[doc.name] = doc
	}
	var lastErr error
	err = wait.PollUntilContextTimeout(ctx, pollInterval, readyTimeout, true, func(ctx context.Context) (bool, error) {
		for name, doc := range pending {
			crd, err := crds.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				lastErr = err
				return false, nil
			}
			if err := crdNotReady(crd); err != nil {
				if errors.Is(err, errNamesRejected) {
					return false, fmt.Errorf("%s from %s: %w", name, doc.source, err)
				}
				lastErr = fmt.Errorf("%s: %w", name, err)
				return false, nil
			}
			if err := servedByDiscovery(client, crd); err != nil {
				lastErr = fmt.Errorf("%s: %w", name, err)
				return false, nil
			}
			delete(pending, name)
		}
		return true, nil
	})
	if err != nil {
		if lastErr != nil && !errors.Is(err, errNamesRejected) {
			err = fmt.Errorf("%w; last: %v", err, lastErr)
		}
		return fmt.Errorf("CRDs: waiting for %d of %d to be established: %w", len(pending), len(docs), err)
	}
	return nil
}

// errNamesRejected means the apiserver will never serve a CRD as defined, for
// instance because its names clash with another one's; waiting is pointless.
var errNamesRejected = errors.New("names not accepted")

func crdNotReady(crd *apiextensionsv1.CustomResourceDefinition) error {
	established := false
	for _, cond := range crd.Status.Conditions {
		switch {
		case cond.Type == apiextensionsv1.NamesAccepted && cond.Status == apiextensionsv1.ConditionFalse:
			return fmt.Errorf("%w: %s", errNamesRejected, cond.Message)
		case cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue:
			established = true
		}
	}
	if !established {
		return errors.New("not Established yet")
	}
	return nil
}

// servedByDiscovery checks that every served version of crd lists its
// resource in discovery. Established alone is not enough: discovery, and so
// every RESTMapper, is updated asynchronously after it.
func servedByDiscovery(client apiextensionsclient.Interface, crd *apiextensionsv1.CustomResourceDefinition) error {
	for _, v := range crd.Spec.Versions {
		if !v.Served {
			continue
		}
		gv := crd.Spec.Group + "/" + v.Name
		list, err := client.Discovery().ServerResourcesForGroupVersion(gv)
		if err != nil {
			return fmt.Errorf("discovery of %s: %w", gv, err)
		}
		if !slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == crd.Spec.Names.Plural }) {
			return fmt.Errorf("%s not yet in discovery of %s", crd.Spec.Names.Plural, gv)
		}
	}
	return nil
}

// readCRDs returns the CRDs in the file path or, if path is a directory, in
// its *.yaml, *.yml and *.json files. Subdirectories are not searched: in a
// kubebuilder layout they hold kustomize patches, which look like CRDs but
// are fragments. Finding no CRD at all is an error, as it is surely a
// mistake in CRDPaths.
func readCRDs(path string) ([]crdDoc, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	files := []string{path}
	if fi.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, err
		}
		files = files[:0]
		for _, e := range entries {
			switch strings.ToLower(filepath.Ext(e.Name())) {
			case ".yaml", ".yml", ".json":
				if !e.IsDir() {
					files = append(files, filepath.Join(path, e.Name()))
				}
			}
		}
	}
	var docs []crdDoc
	for _, file := range files {
		found, err := readCRDFile(file)
		if err != nil {
			return nil, err
		}
		docs = append(docs, found...)
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("no CustomResourceDefinition in %s", path)
	}
	return docs, nil
}

func readCRDFile(file string) ([]crdDoc, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var docs []crdDoc
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 1; ; i++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		js, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("%s, document %d: %w", file, i, err)
		}
		var head struct {
			APIVersion string            `json:"apiVersion"`
			Kind       string            `json:"kind"`
			Metadata   metav1.ObjectMeta `json:"metadata"`
		}
		if err := json.Unmarshal(js, &head); err != nil {
			// A null or scalar document, such as one left empty between
			// separators; it cannot be a CRD.
			continue
		}
		if head.Kind != "CustomResourceDefinition" {
			continue
		}
		if head.APIVersion != apiextensionsv1.SchemeGroupVersion.String() {
			return nil, fmt.Errorf("%s, document %d: CRD %s has apiVersion %q, want %q",
				file, i, head.Metadata.Name, head.APIVersion, apiextensionsv1.SchemeGroupVersion)
		}
		if head.Metadata.Name == "" {
			return nil, fmt.Errorf("%s, document %d: CRD without metadata.name", file, i)
		}
		docs = append(docs, crdDoc{name: head.Metadata.Name, source: file, json: js})
	}
}
