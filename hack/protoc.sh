#!/usr/bin/env bash
# Regenerates the committed Go bindings of the plugin's configuration API
# (plugin/api/**/*.proto -> *.pb.go next to each file).
#
# protoc comes from Debian (protobuf-compiler, with the well-known types of libprotobuf-dev).
# Its version is checked because protoc-gen-go writes it into every generated file: another
# version would make `make check-generated` fail. protoc-gen-go is installed from the Go module
# proxy at the version of the google.golang.org/protobuf runtime in the root go.mod, so the
# generated code always matches the runtime it is compiled with; it is cached outside the
# repository (TOOLS_DIR, as in the Makefile) so clean clones reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."

PROTOC_VERSION="libprotoc 3.21.12"
TOOLS_DIR="${TOOLS_DIR:-$HOME/.cache/meltemi/tools}"

if ! command -v protoc >/dev/null; then
	echo "protoc not found: apt-get install protobuf-compiler libprotobuf-dev" >&2
	exit 1
fi
if [ "$(protoc --version)" != "$PROTOC_VERSION" ]; then
	echo "protoc is '$(protoc --version)', want '$PROTOC_VERSION' (Debian 12's protobuf-compiler):" >&2
	echo "the generated files record the protoc version" >&2
	exit 1
fi
wkt_include=/usr/include
if [ ! -f "$wkt_include/google/protobuf/duration.proto" ]; then
	echo "well-known types not found in $wkt_include: apt-get install libprotobuf-dev" >&2
	exit 1
fi

gen_go_version="$(GOWORK=off go list -m -f '{{.Version}}' google.golang.org/protobuf)"
protoc_gen_go="$TOOLS_DIR/protoc-gen-go-$gen_go_version"
if [ ! -x "$protoc_gen_go" ]; then
	mkdir -p "$TOOLS_DIR/bin"
	GOBIN="$TOOLS_DIR/bin" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$gen_go_version"
	mv "$TOOLS_DIR/bin/protoc-gen-go" "$protoc_gen_go"
fi

# Paths relative to the repository root name the files in the protobuf registry
# ("plugin/api/v1alpha1/filter.proto"), which keeps them unique in any binary.
mapfile -t protos < <(git ls-files --cached --others --exclude-standard 'plugin/api/*.proto')
if ((${#protos[@]} == 0)); then
	echo "no .proto files under plugin/api" >&2
	exit 1
fi
find plugin/api -name '*.pb.go' -delete
protoc -I . -I "$wkt_include" \
	--plugin=protoc-gen-go="$protoc_gen_go" \
	--go_out=. --go_opt=paths=source_relative \
	"${protos[@]}"
