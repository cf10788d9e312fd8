#!/usr/bin/env bash
# The kind-cluster end-to-end test of Meltemi in an Istio mesh (see e2e/kind/README.md):
# creates a kind cluster, installs Istio, builds and loads the controller, sidecar and demo
# images, installs the CRDs and the Helm chart, deploys the Thrift and Dubbo demo apps with
# their MetaRouters, runs the Go tests (build tag kind), collects logs when something fails,
# and deletes the cluster unless KEEP_CLUSTER=1. Needs Docker and internet access; run it
# from anywhere:
#
#   e2e/kind/run.sh
#
# Knobs (environment): CLUSTER_NAME, ISTIO_VERSION, ISTIO_PROFILE, KIND_NODE_IMAGE,
# KEEP_CLUSTER, SKIP_BUILD, ARTIFACTS, E2E_TIMEOUT, GO_TEST_RUN, HELM_EXTRA_ARGS,
# SIDECAR_BUILD_ARGS; the README describes each.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source e2e/kind/lib.sh

CLUSTER_NAME=${CLUSTER_NAME:-meltemi-e2e}
# The Istio release of the cluster and of the sidecar image's base (proxyv2): by default the
# one deploy/docker/sidecar.Dockerfile pins, whose Envoy minor version its Envoy contrib build
# matches (a different Istio needs ENVOY_VERSION to match too: see that Dockerfile).
ISTIO_VERSION=${ISTIO_VERSION:-$(sed -n 's/^ARG ISTIO_VERSION=//p' deploy/docker/sidecar.Dockerfile 2>/dev/null)}
[[ -n $ISTIO_VERSION ]] || die "ISTIO_VERSION unset and not found in deploy/docker/sidecar.Dockerfile"
# Extra build arguments of the sidecar image, e.g. "--build-arg ENVOY_VERSION=v1.37.0".
read -r -a sidecar_build_args <<<"${SIDECAR_BUILD_ARGS:-}"
ISTIO_PROFILE=${ISTIO_PROFILE:-minimal}
KIND_NODE_IMAGE=${KIND_NODE_IMAGE:-}
KEEP_CLUSTER=${KEEP_CLUSTER:-0}
SKIP_BUILD=${SKIP_BUILD:-0}
ARTIFACTS=${ARTIFACTS:-${TMPDIR:-/tmp}/meltemi-e2e-kind}
E2E_TIMEOUT=${E2E_TIMEOUT:-20m}
GO_TEST_RUN=${GO_TEST_RUN:-.}
read -r -a helm_extra_args <<<"${HELM_EXTRA_ARGS:-}"

# Fixed image names: the manifests in e2e/kind/manifests name them (no templating), and
# `kind load` makes them available on the nodes without a registry.
CONTROLLER_IMAGE=meltemi/controller:e2e
SIDECAR_IMAGE=meltemi/proxyv2:e2e
DEMO_IMAGE=meltemi/demo:e2e

NAMESPACE=meltemi-e2e
SYSTEM_NAMESPACE=meltemi-system
CHART=deploy/helm/meltemi
CONTROLLER_DOCKERFILE=deploy/docker/controller.Dockerfile
SIDECAR_DOCKERFILE=deploy/docker/sidecar.Dockerfile
DEMO_DOCKERFILE=e2e/kind/docker/demo.Dockerfile
AERAKI_CRD=controlplane/test/envtest/testdata/aeraki-metarouter-crd.yaml

mkdir -p "$ARTIFACTS"
# A kubeconfig of its own: the user's ~/.kube/config and current context stay untouched.
export KUBECONFIG=$ARTIFACTS/kubeconfig
started=$SECONDS

check_tools() {
  log "checking tools"
  need_tool docker "install Docker (https://docs.docker.com/engine/install/) and start its daemon" \
    docker version --format 'client {{.Client.Version}}, server {{.Server.Version}}'
  need_tool kind "go install sigs.k8s.io/kind@v0.30.0 (https://kind.sigs.k8s.io)" kind version
  need_tool kubectl "https://kubernetes.io/docs/tasks/tools/" kubectl version --client
  need_tool helm "https://helm.sh/docs/intro/install/ (v3.14 or later)" helm version --short
  need_tool go "https://go.dev/dl/ (the version in go.mod)" go version
  need_tool istioctl "curl -sL https://istio.io/downloadIstio | ISTIO_VERSION=$ISTIO_VERSION sh -, then put istio-$ISTIO_VERSION/bin on PATH" \
    istioctl version --remote=false
  # Releases print "1.28.0" or "client version: 1.28.0": the version is the last word.
  local have
  have=$(istioctl version --remote=false 2>/dev/null | head -n 1)
  have=${have##* }
  [[ $have == "$ISTIO_VERSION" ]] ||
    die "istioctl is $have, want $ISTIO_VERSION (set ISTIO_VERSION=$have to use it, or install $ISTIO_VERSION)"
  local file
  for file in "$CHART/Chart.yaml" "$CONTROLLER_DOCKERFILE" "$SIDECAR_DOCKERFILE" "$DEMO_DOCKERFILE" "$AERAKI_CRD"; do
    [[ -f $file ]] || die "$file is missing: this checkout cannot build or install Meltemi"
  done
}

create_cluster() {
  if kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
    log "reusing kind cluster $CLUSTER_NAME"
    kind export kubeconfig --name "$CLUSTER_NAME" --kubeconfig "$KUBECONFIG"
    return
  fi
  log "creating kind cluster $CLUSTER_NAME"
  local args=(--name "$CLUSTER_NAME" --config e2e/kind/kind-config.yaml --kubeconfig "$KUBECONFIG" --wait 5m)
  [[ -n $KIND_NODE_IMAGE ]] && args+=(--image "$KIND_NODE_IMAGE")
  kind create cluster "${args[@]}"
}

install_istio() {
  log "installing Istio $ISTIO_VERSION (profile $ISTIO_PROFILE)"
  # Access logs on stdout: the collected sidecar logs then show every connection.
  istioctl install -y --set profile="$ISTIO_PROFILE" --set meshConfig.accessLogFile=/dev/stdout
  kubectl -n istio-system rollout status deployment/istiod --timeout=5m
}

build_images() {
  if [[ $SKIP_BUILD == 1 ]]; then
    log "SKIP_BUILD=1: using the images already in Docker"
  else
    log "building $CONTROLLER_IMAGE"
    docker build -f "$CONTROLLER_DOCKERFILE" -t "$CONTROLLER_IMAGE" .
    log "building $SIDECAR_IMAGE (on Istio $ISTIO_VERSION's proxyv2)"
    docker build -f "$SIDECAR_DOCKERFILE" --build-arg ISTIO_VERSION="$ISTIO_VERSION" \
      "${sidecar_build_args[@]}" -t "$SIDECAR_IMAGE" .
    log "building $DEMO_IMAGE"
    docker build -f "$DEMO_DOCKERFILE" -t "$DEMO_IMAGE" .
  fi
  local image
  for image in "$CONTROLLER_IMAGE" "$SIDECAR_IMAGE" "$DEMO_IMAGE"; do
    log "loading $image into kind"
    kind load docker-image --name "$CLUSTER_NAME" "$image"
  done
}

install_meltemi() {
  log "installing the CRDs (Meltemi's, and the stand-in for Aeraki's MetaRouter)"
  kubectl apply --server-side -f controlplane/config/crd/
  kubectl apply --server-side -f "$AERAKI_CRD"
  kubectl wait --for=condition=Established --timeout=60s \
    crd/metarouters.metaprotocol.meltemi.io crd/applicationprotocols.metaprotocol.meltemi.io \
    crd/metarouters.metaprotocol.aeraki.io
  log "installing the chart $CHART"
  helm upgrade --install meltemi "$CHART" --namespace "$SYSTEM_NAMESPACE" --create-namespace \
    --set image.repository="${CONTROLLER_IMAGE%:*}" --set image.tag="${CONTROLLER_IMAGE##*:}" \
    --set image.pullPolicy=Never --wait --timeout 5m "${helm_extra_args[@]}"
  kubectl -n "$SYSTEM_NAMESPACE" rollout status deployment/meltemi-controller --timeout=5m
}

deploy_demo() {
  log "deploying the demo apps and MetaRouters (e2e/kind/manifests)"
  kubectl apply -f e2e/kind/manifests/
  kubectl -n "$NAMESPACE" wait --for=condition=Available deployment --all --timeout=5m
  # The annotation must have replaced Istio's sidecar image, or nothing below tests Meltemi.
  local image
  image=$(kubectl -n "$NAMESPACE" get pod -l app=client \
    -o jsonpath='{.items[0].spec.containers[?(@.name=="istio-proxy")].image}')
  [[ $image == "$SIDECAR_IMAGE" ]] ||
    die "the client's sidecar runs '$image', want $SIDECAR_IMAGE (is istio-injection on and the annotation honoured?)"
  log "waiting for the MetaRouters to be Programmed (a sidecar's plugin ACKed their routes)"
  retry 30 1 routers_programmed ||
    die "the MetaRouters of $NAMESPACE are not Programmed after 30 rounds of calls (see the controller log)"
}

# routers_programmed makes one call to each demo service (the plugin may fetch a listener's
# routes only once a connection arrives; failures are expected until it has them), then
# waits up to 10s for every MetaRouter of ours to be Programmed.
routers_programmed() {
  local target
  for target in thrift:thrift-echo:9090 thrift:thrift-echo-aeraki:9090 dubbo:dubbo-echo:20880 dubbo:dubbo-echo-aeraki:20880; do
    kubectl -n "$NAMESPACE" exec deploy/client -c client -- \
      meltemi-demo call -protocol "${target%%:*}" -addr "${target#*:}" >/dev/null 2>&1 || true
  done
  kubectl -n "$NAMESPACE" wait --for=condition=Programmed --timeout=10s \
    metarouters.metaprotocol.meltemi.io --all >/dev/null 2>&1
}

run_tests() {
  log "running the Go tests (go test -tags kind ./e2e/kind/, -run '$GO_TEST_RUN')"
  MELTEMI_E2E_NAMESPACE=$NAMESPACE go test -tags kind -count=1 -v -timeout "$E2E_TIMEOUT" \
    -run "$GO_TEST_RUN" ./e2e/kind/
}

# collect_logs writes what explains a failure into $ARTIFACTS; every step is best effort.
collect_logs() {
  log "collecting logs into $ARTIFACTS"
  local ns pod
  kubectl get nodes,pods,services,endpointslices -A -o wide >"$ARTIFACTS/resources.txt" 2>&1 || true
  kubectl get metarouters.metaprotocol.meltemi.io,metarouters.metaprotocol.aeraki.io,applicationprotocols,destinationrules,serviceentries,envoyfilters \
    -A -o yaml >"$ARTIFACTS/istio-meltemi-objects.yaml" 2>&1 || true
  for ns in "$SYSTEM_NAMESPACE" "$NAMESPACE" istio-system; do
    kubectl -n "$ns" describe pods >"$ARTIFACTS/describe-$ns.txt" 2>&1 || true
    kubectl -n "$ns" get events --sort-by=.lastTimestamp >"$ARTIFACTS/events-$ns.txt" 2>&1 || true
    for pod in $(kubectl -n "$ns" get pods -o name 2>/dev/null); do
      kubectl -n "$ns" logs "$pod" --all-containers --prefix --timestamps \
        >"$ARTIFACTS/logs-$ns-${pod#pod/}.txt" 2>&1 || true
    done
  done
  istioctl proxy-config listeners -n "$NAMESPACE" deploy/client -o yaml \
    >"$ARTIFACTS/client-listeners.yaml" 2>&1 || true
  istioctl proxy-config clusters -n "$NAMESPACE" deploy/client >"$ARTIFACTS/client-clusters.txt" 2>&1 || true
  kind export logs --name "$CLUSTER_NAME" "$ARTIFACTS/kind" >/dev/null 2>&1 || true
}

finish() {
  local rc=$?
  trap - EXIT
  if ((rc != 0)); then
    collect_logs
    log "FAILED (exit $rc) after $((SECONDS - started))s; logs in $ARTIFACTS"
  else
    log "passed in $((SECONDS - started))s"
  fi
  if [[ $KEEP_CLUSTER == 1 ]]; then
    log "KEEP_CLUSTER=1: cluster $CLUSTER_NAME kept (KUBECONFIG=$KUBECONFIG)"
  elif kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
    log "deleting kind cluster $CLUSTER_NAME"
    kind delete cluster --name "$CLUSTER_NAME" || true
  fi
  exit "$rc"
}

check_tools
trap finish EXIT
create_cluster
install_istio
build_images
install_meltemi
deploy_demo
run_tests
