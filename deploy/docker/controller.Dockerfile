# syntax=docker/dockerfile:1
# The Meltemi controller (controlplane/cmd/meltemi-controller): a static Go binary on
# distroless/static, running as the distroless nonroot user (65532), so the chart's
# securityContext (runAsNonRoot, readOnlyRootFilesystem, no capabilities) holds.
# Build from the repository root (make images does):
#   docker build -f deploy/docker/controller.Dockerfile -t ghcr.io/meltemi-mesh/meltemi-controller:0.1.0 .
ARG GO_VERSION=1.26
FROM docker.io/library/golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# The workspace (go.work) needs the e2e module's go.mod/go.sum, not its sources (the
# .dockerignore keeps those out); the root go.sum alone does not cover every dependency, so
# the build runs in workspace mode. Only what the binary imports is downloaded.
COPY . .
# No cgo: the controller is pure Go, and a static binary runs on distroless/static.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/meltemi-controller ./controlplane/cmd/meltemi-controller

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/meltemi-controller /usr/local/bin/meltemi-controller
USER 65532:65532
# The xDS server and /metrics, /healthz, /readyz (the chart passes --xds-address=:15010 and
# --metrics-address=:15014).
EXPOSE 15010 15014
ENTRYPOINT ["/usr/local/bin/meltemi-controller"]
CMD ["--source=kube", "--xds-address=:15010", "--metrics-address=:15014"]
