// Package config embeds the CRDs, so that `labforge dev` installs exactly the manifests
// this checkout generated, from any working directory.
package config

import "embed"

// CRDs holds labforge's CRDs (crd/bases) and the KubeVirt CRDs (kubevirt).
//
//go:embed crd/bases/*.yaml kubevirt/*.yaml
var CRDs embed.FS
