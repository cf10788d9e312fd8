#!/usr/bin/env bash
# Helpers of e2e/kind/run.sh, sourced by it: logging, tool checks, waiting.

# log MSG...: a timestamped progress line on stderr.
log() {
  printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2
}

# die MSG...: an error line on stderr, then exit 1.
die() {
  printf 'e2e/kind: error: %s\n' "$*" >&2
  exit 1
}

# need_tool NAME HINT VERSION-CMD...: fails with HINT when NAME is not on PATH, else logs the
# version the command prints (first line).
need_tool() {
  local name=$1 hint=$2
  shift 2
  command -v "$name" >/dev/null 2>&1 || die "$name not found on PATH: $hint"
  local version
  version=$("$@" 2>&1 | head -n 1) || die "$name does not run ('$*' failed): $version"
  log "$name: $version"
}

# retry TIMES DELAY CMD...: runs CMD until it succeeds, at most TIMES times, DELAY seconds apart.
retry() {
  local times=$1 delay=$2 i
  shift 2
  for ((i = 1; i <= times; i++)); do
    if "$@"; then
      return 0
    fi
    ((i < times)) && sleep "$delay"
  done
  return 1
}
