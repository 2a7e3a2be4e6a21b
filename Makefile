# labforge — see README.md. `make dev` runs it locally; `make test` tests it.

# Image the deploy targets use.
IMG ?= ghcr.io/labforge/labforge:latest

ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
BIN ?= $(ROOT)/bin
export LABFORGE_BIN_DIR := $(BIN)
GO ?= go
CONTROLLER_GEN ?= $(GO) tool controller-gen
# Tests run one package at a time: each integration package starts its own real control
# plane, and two at once would fight over the machine's two cores.
TEST_FLAGS ?= -p 1 -count=1 -timeout 30m
STATE_DIR ?= .labforge

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  %-18s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: ## Generate the CRDs and the manager's RBAC from the markers.
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	$(GO) run ./hack/crd-descriptions config/crd/bases/*.yaml
	$(CONTROLLER_GEN) rbac:roleName=manager-role paths=./internal/... output:rbac:artifacts:config=config/rbac

.PHONY: generate
generate: ## Generate the API's deepcopy code.
	$(CONTROLLER_GEN) object paths=./api/...

.PHONY: kubevirt-crds
kubevirt-crds: ## Generate the KubeVirt CRDs (VirtualMachine, VirtualMachineInstance, KubeVirt; real schemas) the tests install.
	$(GO) run ./hack/kubevirt-crdgen -out config/kubevirt

.PHONY: verify-generated
verify-generated: ## Fail when a generated file differs from what the generators write now.
	bash hack/verify-generated.sh

.PHONY: fmt
fmt: ## Run gofmt on the code.
	gofmt -l -w api cmd internal hack test

.PHONY: verify-fmt
verify-fmt:
	@out=$$(gofmt -l api cmd internal hack test); if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

.PHONY: vet
vet: ## Run go vet.
	$(GO) vet ./...

.PHONY: controlplane
controlplane: ## Build etcd, kube-apiserver, kube-controller-manager and kubeadm into bin/ (cached).
	bash hack/build-controlplane.sh

.PHONY: deps
deps: ## Install the Debian packages the tests need (cloud-init, shellcheck, ...), if missing.
	bash hack/install-deps.sh

.PHONY: test
test: deps verify-generated verify-fmt vet controlplane ## Unit and integration tests on a real control plane.
	$(GO) test $(TEST_FLAGS) ./...

.PHONY: test-reliability
test-reliability: controlplane ## The integration suites' long variants (a crash after every write of a claim...).
	LABFORGE_RELIABILITY=1 $(GO) test -p 1 -count=1 -timeout 90m ./test/integration/...

.PHONY: bench
bench: controlplane ## Run the benchmarks (BENCH=<scenario> for one); results and images in bench/.
	$(GO) build -o $(BIN)/labforge ./cmd/labforge
	$(GO) run ./test/bench -out bench/results.json -labforge $(BIN)/labforge $(if $(BENCH),-scenario $(BENCH))

.PHONY: dev
dev: controlplane ## Run labforge locally on an embedded control plane with simulated VMs.
	$(GO) build -o $(BIN)/labforge ./cmd/labforge
	$(BIN)/labforge dev --state-dir $(STATE_DIR)

##@ Build

.PHONY: build
build: ## Build the manager and the labforge command into bin/.
	$(GO) build -o $(BIN)/manager ./cmd/manager
	$(GO) build -o $(BIN)/labforge ./cmd/labforge

.PHONY: run
run: ## Run the manager against the cluster of the current kubeconfig.
	$(GO) run ./cmd/manager

.PHONY: docker-build
docker-build: ## Build the manager image (needs a Docker engine).
	docker build -t $(IMG) .

.PHONY: docker-push
docker-push: ## Push the manager image.
	docker push $(IMG)

##@ Deployment

.PHONY: install
install: ## Install the CRDs into the cluster of the current kubeconfig.
	kubectl apply --server-side -k config/crd

.PHONY: uninstall
uninstall: ## Remove the CRDs and every lab with them; the operator must run (docs/operations.md).
	bash hack/uninstall.sh

.PHONY: deploy
deploy: ## Deploy the operator (CRDs, RBAC, manager) with image IMG (make deploy IMG=...).
	cd config/manager && kubectl kustomize . >/dev/null && kubectl apply --server-side -k ../default
	kubectl -n labforge-system set image deployment/labforge-controller-manager manager=$(IMG)

.PHONY: undeploy
undeploy: uninstall ## Remove every lab, then the operator: its finalizers need it running.
	kubectl delete --ignore-not-found -k config/default

.PHONY: build-installer
build-installer: ## Write dist/install.yaml: every manifest of the operator in one file.
	mkdir -p dist
	kubectl kustomize config/default > dist/install.yaml
