# Meltemi: `make test` is the one command CI runs (see .ci/run and README.md).

SHELL := /bin/bash
GO ?= go
# One-time tools live outside the repository so clean clones reuse them.
TOOLS_DIR ?= $(HOME)/.cache/meltemi/tools
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(TOOLS_DIR)/staticcheck-$(STATICCHECK_VERSION)
FUZZTIME ?= 10m
BENCHTIME ?= 1s
# Both modules of the workspace: the product and the test-only e2e module.
PKGS := ./... ./e2e/...

.PHONY: all build run test lint unit scale envtest interop bench bench-e2e fuzz generate check-generated tools clean

all: test

# The plugin: one shared library that stock Envoy (contrib build) loads.
build:
	CGO_ENABLED=1 $(GO) build -buildmode=c-shared -o bin/meltemi.so ./plugin
	$(GO) build -o bin/meltemi-controller ./controlplane/cmd/meltemi-controller

# The demo: the plugin (in the ABI host, or in Envoy when `envoy` is on PATH) between demo
# clients and v1/v2 Thrift and Dubbo servers. Serves until Ctrl-C.
run: build
	hack/run-demo.sh

test: lint check-generated unit scale envtest interop

tools: $(STATICCHECK)

$(STATICCHECK):
	@mkdir -p $(TOOLS_DIR)
	GOBIN=$(TOOLS_DIR)/bin $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(TOOLS_DIR)/bin/staticcheck $@

lint: $(STATICCHECK)
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet -tags envtest $(PKGS)
	$(STATICCHECK) -tags envtest $(PKGS)
	$(GO) vet -tags kind ./e2e/kind/...
	$(STATICCHECK) -tags kind ./e2e/kind/...
	shellcheck -x $$(git ls-files '*.sh')

# Unit tests of the product module, race detector on; fuzz seed corpora run as regression tests.
unit:
	$(GO) test -race -count=1 ./...

# The control plane's scale target (1,000 services x 10 endpoints x 5 routes synced in < 1 s,
# < 500 MiB heap), without the race detector, which multiplies the time.
scale:
	set -o pipefail; $(GO) test -p 1 -count=1 -run 'ScaleTarget|TranslateScale' -v ./controlplane/internal/controller/ ./controlplane/internal/translate/ | grep -E '^(---|ok|FAIL)|services'

# Control-plane tests against a real kube-apiserver and etcd, built once from the Go module
# proxy by hack/envtest-assets.sh and cached in ~/.cache/meltemi/envtest (a cold build takes
# 5-20 minutes and ~8 GB of Go caches; later runs reuse it).
envtest:
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" $(GO) test -count=1 -tags envtest ./controlplane/... ./e2e/deploy/...

# The e2e module: ABI host, codec interop and the plugin .so between real third-party peers
# (apache/thrift Go, python3-thrift, dubbo-go), the demo check.
interop:
	$(GO) test -count=1 -timeout 10m ./e2e/...

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./codecs/... ./plugin/engine/... ./controlplane/...

# End-to-end benchmark: direct vs HAProxy vs the plugin .so in the ABI host, Thrift and Dubbo
# (e2e/bench/README.md; BENCH_DURATION, BENCH_CONNS, BENCH_PERF=1 ... tune it).
bench-e2e:
	hack/bench-e2e.sh

# Every fuzz target of the product module, FUZZTIME each (default 10m).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for target in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
	    echo "== $$pkg $$target ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

# Container images (deploy/docker, deploy/README.md): the controller, and the sidecar =
# Istio's proxyv2 ISTIO_VERSION + Envoy contrib + the plugin. They need Docker with BuildKit.
IMAGE_REGISTRY ?= ghcr.io/meltemi-mesh
IMAGE_TAG ?= 0.1.0
ISTIO_VERSION ?= 1.28.0
CONTROLLER_IMAGE ?= $(IMAGE_REGISTRY)/meltemi-controller:$(IMAGE_TAG)
SIDECAR_IMAGE ?= $(IMAGE_REGISTRY)/meltemi-proxyv2:$(IMAGE_TAG)-istio$(ISTIO_VERSION)
DOCKER ?= docker

.PHONY: images sidecar-so docker-check

images: docker-check
	$(DOCKER) build -f deploy/docker/controller.Dockerfile -t $(CONTROLLER_IMAGE) .
	$(DOCKER) build -f deploy/docker/sidecar.Dockerfile --build-arg ISTIO_VERSION=$(ISTIO_VERSION) -t $(SIDECAR_IMAGE) .

# The plugin .so as the sidecar image carries it (built on the glibc the image allows), in
# bin/sidecar/ with the glibc version it needs.
sidecar-so: docker-check
	$(DOCKER) build -f deploy/docker/sidecar.Dockerfile --target so --output type=local,dest=bin/sidecar .

docker-check:
	@command -v $(DOCKER) >/dev/null 2>&1 || { echo "$(DOCKER) not found: building the images needs Docker (https://docs.docker.com/engine/install/)"; exit 1; }
	@$(DOCKER) info >/dev/null 2>&1 || { echo "$(DOCKER) cannot reach a Docker daemon: start it (or set DOCKER_HOST) and retry"; exit 1; }

GENERATED := 'plugin/api/*.pb.go' e2e/interop/thrift/gen-go e2e/demo/gen-go 'controlplane/api/*zz_generated.deepcopy.go' controlplane/config/crd deploy/manifests deploy/helm/meltemi/crds

# Regenerates committed generated code: the plugin's protobuf API, the controller's CRD types
# (deepcopy + CRD YAML) and the Thrift IDL bindings of the tests.
generate:
	TOOLS_DIR=$(TOOLS_DIR) hack/protoc.sh
	TOOLS_DIR=$(TOOLS_DIR) hack/controller-gen.sh
	cd e2e/interop/thrift && ./generate.sh
	cd e2e/demo && ./generate.sh
	$(GO) run ./e2e/cmd/render-chart

# Fails when committed generated code is stale.
check-generated: generate
	@if [ -n "$$(git status --porcelain -- $(GENERATED))" ]; then \
	  echo "generated code is stale: run 'make generate' and commit"; git status --porcelain -- $(GENERATED); exit 1; fi

clean:
	$(GO) clean -testcache
