#!/usr/bin/env bash
# Prints a directory holding kube-apiserver and etcd, for controller-runtime envtest
# (KUBEBUILDER_ASSETS="$(hack/envtest-assets.sh)"), building them first if they are missing.
#
# Both come from the Go module proxy, the only source of binaries here. They are cached
# outside the repository, keyed by version, because a cold build takes minutes and ~8 GB of
# Go caches; later runs only check that the cached binaries report the wanted versions.
#
#   etcd: `go install go.etcd.io/etcd/server/v3@VERSION` is refused (its go.mod has replace
#   directives), so a throwaway module requires it and builds the package instead.
#
#   kube-apiserver: k8s.io/kubernetes requires its staging modules (k8s.io/api, ...) at
#   v0.0.0 and replaces them with ./staging/src paths that do not exist in the published
#   module. The throwaway module repeats that replace block, pointing each staging module
#   at its published release (v0.MINOR.PATCH), and copies kubernetes' go and godebug lines
#   so the binary behaves as the upstream release build does.
#
# Everything is built in a temporary directory, never inside the repository; binaries are
# moved into place only when complete, and a lock serialises concurrent callers.
# Progress goes to stderr; stdout carries only the directory.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.34.2}"
ETCD_VERSION="${ETCD_VERSION:-3.6.5}"
ENVTEST_CACHE="${ENVTEST_CACHE:-$HOME/.cache/meltemi/envtest}"

assets="$ENVTEST_CACHE/k8s-$K8S_VERSION"
k8s_minor="${K8S_VERSION#*.}"
staging_version="v0.$k8s_minor" # k8s 1.34.2 publishes its staging modules as v0.34.2

log() { echo "envtest-assets: $*" >&2; }

# The cache is valid only if each binary runs and reports the wanted version. The output is
# captured before grep reads it: with pipefail, `etcd --version | grep -q` fails whenever grep
# exits at the first line while etcd still writes the next ones (SIGPIPE).
reports() {
	local out
	out=$("$1" --version 2>/dev/null) || return 1
	grep -qx "$2" <<<"$out"
}
apiserver_ok() {
	[ -x "$assets/kube-apiserver" ] && reports "$assets/kube-apiserver" "Kubernetes v$K8S_VERSION"
}
etcd_ok() {
	[ -x "$assets/etcd" ] && reports "$assets/etcd" "etcd Version: $ETCD_VERSION"
}

mkdir -p "$assets"
if apiserver_ok && etcd_ok; then
	echo "$assets"
	exit 0
fi

exec 9>"$assets/.lock"
flock 9
work="$(mktemp -d "${TMPDIR:-/tmp}/meltemi-envtest.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The throwaway modules must not see the repository's go.work (the caller may run us from
# inside it); they resolve their own dependencies, hence -mod=mod. Builds run at low CPU
# priority because the machine is shared.
export GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0

build_etcd() {
	log "building etcd v$ETCD_VERSION (cached in $assets)"
	local mod="$work/etcd"
	mkdir -p "$mod"
	(
		cd "$mod"
		go mod init meltemi.invalid/envtest-etcd >/dev/null 2>&1
		go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" "go.etcd.io/etcd/etcdctl/v3@v$ETCD_VERSION" >&2
		nice -n 10 go build -trimpath -ldflags "-s -w" -o "$mod/etcd.bin" go.etcd.io/etcd/server/v3 >&2
	)
	mv "$mod/etcd.bin" "$assets/etcd"
}

build_apiserver() {
	log "building kube-apiserver v$K8S_VERSION (a few minutes; cached in $assets)"
	local mod="$work/apiserver"
	mkdir -p "$mod"
	cd "$mod"
	local upstream
	upstream="$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
	if [ ! -f "$upstream" ]; then
		log "cannot find the go.mod of k8s.io/kubernetes v$K8S_VERSION"
		exit 1
	fi
	{
		echo "module meltemi.invalid/envtest-apiserver"
		echo
		# The go line and godebug settings (single line or block) of the release.
		grep '^go ' "$upstream"
		awk '/^godebug \(/ {inblock=1} inblock {print} inblock && /^\)/ {inblock=0; next} /^godebug [^(]/ {print}' "$upstream"
		echo
		echo "require k8s.io/kubernetes v$K8S_VERSION"
		echo
		echo "replace ("
		sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/src/.*$#\t\1 => \1 '"$staging_version"'#p' "$upstream"
		echo ")"
	} >go.mod
	if ! grep -q "k8s.io/apiserver => " go.mod; then
		log "no staging replaces found in the go.mod of k8s.io/kubernetes v$K8S_VERSION"
		exit 1
	fi
	cat >tools.go <<-'EOF'
		//go:build tools

		// Package tools pins the command this throwaway module builds.
		package tools

		import _ "k8s.io/kubernetes/cmd/kube-apiserver"
	EOF
	go get "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S_VERSION" >&2
	local pkg=k8s.io/component-base/version
	local ldflags="-s -w"
	ldflags+=" -X $pkg.gitVersion=v$K8S_VERSION"
	ldflags+=" -X $pkg.gitMajor=${K8S_VERSION%%.*}"
	ldflags+=" -X $pkg.gitMinor=${k8s_minor%%.*}"
	ldflags+=" -X $pkg.gitTreeState=clean"
	ldflags+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
	nice -n 10 go build -trimpath -ldflags "$ldflags" -o "$mod/kube-apiserver.bin" k8s.io/kubernetes/cmd/kube-apiserver >&2
	cd - >/dev/null
	mv "$mod/kube-apiserver.bin" "$assets/kube-apiserver"
}

# Another caller may have built them while we waited for the lock.
etcd_ok || build_etcd
apiserver_ok || build_apiserver

if ! apiserver_ok || ! etcd_ok; then
	log "built binaries do not report kube-apiserver v$K8S_VERSION / etcd $ETCD_VERSION"
	exit 1
fi
echo "$assets"
