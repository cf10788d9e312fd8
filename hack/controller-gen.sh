#!/usr/bin/env bash
# Regenerates the committed Kubernetes API code of the control plane:
# controlplane/api/** deepcopy methods (zz_generated.deepcopy.go) and the CRD manifests in
# controlplane/config/crd/.
#
# controller-gen is installed from the Go module proxy at a pinned version (v0.19 is the line
# built against k8s.io v0.34, the version in the root go.mod) and cached outside the repository
# (TOOLS_DIR, as in the Makefile) so clean clones reuse it. The version is pinned because
# controller-gen writes it into every CRD it generates: another version would make
# `make check-generated` fail.
set -euo pipefail
cd "$(dirname "$0")/.."

CONTROLLER_TOOLS_VERSION="v0.19.0"
TOOLS_DIR="${TOOLS_DIR:-$HOME/.cache/meltemi/tools}"

controller_gen="$TOOLS_DIR/controller-gen-$CONTROLLER_TOOLS_VERSION"
if [ ! -x "$controller_gen" ]; then
	mkdir -p "$TOOLS_DIR/bin"
	GOWORK=off GOBIN="$TOOLS_DIR/bin" go install "sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_TOOLS_VERSION"
	mv "$TOOLS_DIR/bin/controller-gen" "$controller_gen"
fi

# Stale files must not survive a renamed or removed type.
find controlplane/api -name 'zz_generated.deepcopy.go' -delete
rm -f controlplane/config/crd/*.yaml
"$controller_gen" \
	object \
	crd:allowDangerousTypes=true \
	paths=./controlplane/api/... \
	output:crd:artifacts:config=controlplane/config/crd
