# The demo apps of the kind e2e (e2e/demo/cmd/meltemi-demo: Thrift and Dubbo echo servers,
# the batch client, the wait mode of the client pod), as one static binary on distroless.
# Build from the repository root (run.sh does):
#   docker build -f e2e/kind/docker/demo.Dockerfile -t meltemi/demo:e2e .
ARG GO_VERSION=1.26
FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Module files first, so that the dependency download is cached across source edits.
COPY go.mod go.sum go.work go.work.sum ./
COPY e2e/go.mod e2e/go.sum e2e/
RUN go mod download && cd e2e && go mod download
COPY . .
# No cgo: the demo is pure Go, and a static binary runs on distroless/static.
RUN CGO_ENABLED=0 go build -trimpath -o /out/meltemi-demo ./e2e/demo/cmd/meltemi-demo

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/meltemi-demo /usr/local/bin/meltemi-demo
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/meltemi-demo"]
