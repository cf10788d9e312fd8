# syntax=docker/dockerfile:1
# The demo apps of the kind e2e (e2e/demo/cmd/meltemi-demo: Thrift and Dubbo echo servers,
# the batch client, the wait mode of the client pod), as one static binary on distroless.
# Build from the repository root with BuildKit (run.sh does):
#   docker build -f e2e/kind/docker/demo.Dockerfile -t meltemi/demo:e2e .
ARG GO_VERSION=1.26
FROM docker.io/library/golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# The demo is in the e2e module, which finds the product module through go.work. Cache mounts
# keep modules and build results across builds; only what the demo imports is downloaded.
# No cgo: the demo is pure Go, and a static binary runs on distroless/static.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -o /out/meltemi-demo ./e2e/demo/cmd/meltemi-demo

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/meltemi-demo /usr/local/bin/meltemi-demo
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/meltemi-demo"]
