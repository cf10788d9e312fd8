#!/bin/sh
# Builds the abihost test fixture. Usage: build.sh [OUTPUT]
# OUTPUT defaults to $HOME/.cache/meltemi/abihost/abihost (outside the repo).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-${HOME}/.cache/meltemi/abihost/abihost}
mkdir -p "$(dirname "$out")"
# -rdynamic exports the envoyGo* host functions the Go plugin resolves at run time.
# ABIHOST_CFLAGS may hold several flags: splitting it into words is intended (POSIX sh has no
# arrays to carry them otherwise).
# shellcheck disable=SC2086
${CC:-gcc} -std=c17 -O2 -g -Wall -Wextra -Werror -rdynamic -pthread ${ABIHOST_CFLAGS:-} \
  -o "$out.tmp.$$" "$here/csrc/abihost.c" -ldl -lpthread
mv "$out.tmp.$$" "$out"
