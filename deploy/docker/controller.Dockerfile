# The Meltemi controller (controlplane/cmd/meltemi-controller): a static Go binary on
# distroless/static, running as the distroless nonroot user (65532), so the chart's
# securityContext (runAsNonRoot, readOnlyRootFilesystem, no capabilities) holds.
# Build from the repository root (make images does):
#   docker build -f deploy/docker/controller.Dockerfile -t ghcr.io/meltemi-mesh/meltemi-controller:0.1.0 .
ARG GO_VERSION=1.26
FROM docker.io/library/golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Module files first, so that the dependency download is cached across source edits. Only the
# product module is built (GOWORK=off): the e2e module's test-only dependencies stay out.
COPY go.mod go.sum ./
RUN GOWORK=off go mod download
COPY . .
# No cgo: the controller is pure Go, and a static binary runs on distroless/static.
RUN GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/meltemi-controller ./controlplane/cmd/meltemi-controller

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/meltemi-controller /usr/local/bin/meltemi-controller
USER 65532:65532
# The xDS server and /metrics, /healthz, /readyz (the chart passes --xds-address=:15010 and
# --metrics-address=:15014).
EXPOSE 15010 15014
ENTRYPOINT ["/usr/local/bin/meltemi-controller"]
CMD ["--source=kube", "--xds-address=:15010", "--metrics-address=:15014"]
