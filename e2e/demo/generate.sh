#!/bin/sh
# Regenerates the committed Go bindings of echo.thrift with Debian's thrift-compiler (0.17.0),
# whose output builds against github.com/apache/thrift v0.25.0.
set -eu
cd "$(dirname "$0")"
rm -rf gen-go
mkdir gen-go
thrift --gen go:package_prefix=github.com/meltemi-mesh/meltemi/e2e/demo/gen-go/,skip_remote -out gen-go echo.thrift
gofmt -w gen-go
