# syntax=docker/dockerfile:1
# The Meltemi sidecar: Istio's proxyv2 (pilot-agent, the bootstrap, iptables setup) with
#   - Envoy's contrib build, which has envoy.filters.network.golang (Istio's own Envoy lacks
#     it), copied over /usr/local/bin/envoy;
#   - the plugin, /usr/local/lib/meltemi/meltemi.so, the path the controller's EnvoyFilters
#     name (--plugin-path);
#   - GODEBUG=cgocheck=0 in the environment: the Go runtime inside Envoy reads it at process
#     start and panics on the plugin's first call without it.
# Build from the repository root (make images does):
#   docker build -f deploy/docker/sidecar.Dockerfile --build-arg ISTIO_VERSION=1.28.0 \
#     -t ghcr.io/meltemi-mesh/meltemi-proxyv2:0.1.0-istio1.28.0 .
#
# Versions. Envoy v1.36 is the plugin's target (its Go API module is
# github.com/envoyproxy/envoy v1.36.2); Istio 1.28 ships Envoy 1.36, so its pilot-agent writes
# a bootstrap that this Envoy understands. Pair a different Istio release with the Envoy
# contrib release of the same Envoy minor version (istioctl version shows it).
#
# The glibc rule. A c-shared Go library links the C library dynamically, and a binary built
# against a newer glibc than the one it runs on fails to load ("GLIBC_2.xx not found"). So the
# builder's glibc must not be newer than the proxyv2 image's:
#   objdump -T meltemi.so | grep -o 'GLIBC_[0-9.]*' | sort -Vu | tail -1   <=   the image's glibc
# (getconf GNU_LIBC_VERSION in the image; proxyv2 1.28 is Ubuntu 24.04, glibc 2.39). The
# builder is Debian 12 (glibc 2.36); golang:*-trixie (glibc 2.41) would break the rule. The
# glibc-check stage below enforces it at build time, and runs the copied Envoy on the image.
ARG ISTIO_VERSION=1.28.0
ARG ENVOY_VERSION=v1.36.2
ARG GO_VERSION=1.26

FROM docker.io/library/golang:${GO_VERSION}-bookworm AS plugin
WORKDIR /src
# The workspace (go.work) needs the e2e module's go.mod/go.sum, not its sources (the
# .dockerignore keeps those out); the root go.sum alone does not cover every dependency, so
# the build runs in workspace mode. Only what the plugin imports is downloaded.
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=1 go build -trimpath -buildmode=c-shared -o /out/meltemi.so ./plugin \
 && rm -f /out/meltemi.h \
 && objdump -T /out/meltemi.so | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -Vu | tail -1 >/out/glibc-required \
 && echo "meltemi.so needs glibc $(cat /out/glibc-required)"

# Only the plugin, for `make sidecar-so` (docker build --target so --output bin/sidecar).
FROM scratch AS so
COPY --from=plugin /out/meltemi.so /out/glibc-required /

FROM docker.io/envoyproxy/envoy-contrib:${ENVOY_VERSION} AS envoy

# Fails the build when the plugin needs a newer glibc than the image has, or when the contrib
# Envoy does not run on the image.
FROM docker.io/istio/proxyv2:${ISTIO_VERSION} AS glibc-check
USER root
COPY --from=plugin /out/glibc-required /tmp/glibc-required
COPY --from=envoy /usr/local/bin/envoy /tmp/envoy
RUN set -e; \
    required=$(cat /tmp/glibc-required); \
    have=$(getconf GNU_LIBC_VERSION | awk '{print $2}'); \
    newest=$(printf '%s\n%s\n' "$required" "$have" | sort -V | tail -1); \
    if [ "$newest" != "$have" ]; then \
      echo "meltemi.so needs glibc $required, the proxyv2 image has $have: build it with an older Go image" >&2; exit 1; \
    fi; \
    /tmp/envoy --version; \
    echo "glibc: plugin needs $required, image has $have" >/tmp/glibc-check.txt

FROM docker.io/istio/proxyv2:${ISTIO_VERSION}
COPY --from=envoy /usr/local/bin/envoy /usr/local/bin/envoy
COPY --from=plugin /out/meltemi.so /usr/local/lib/meltemi/meltemi.so
# The check's result; copying it also makes the build run the check stage.
COPY --from=glibc-check /tmp/glibc-check.txt /usr/local/lib/meltemi/glibc-check.txt
ENV GODEBUG=cgocheck=0
