#!/usr/bin/env bash
# The `make run` demo: builds the Meltemi controller (bin/meltemi-controller) and plugin
# (bin/meltemi.so), starts the controller with its file source on the demo's mesh
# (envoy-config/demo/, or $MELTEMI_CONFIG_DIR), runs the plugin in a host with the filter
# configurations of envoy-config/filters/ (which fetch their routes, clusters and endpoints
# from the controller over xDS), starts Thrift and Dubbo echo servers v1 and v2 behind it,
# shows the routing with a few client calls, and serves until Ctrl-C. Edit a file of the
# config directory while it serves and the controller pushes the change to the plugin.
#
#   hack/run-demo.sh           # interactive: serve until Ctrl-C
#   hack/run-demo.sh --check   # run the client calls, exit 0 only if every call was routed right
#
# The host is abihost (e2e/abihost, the C host that loads the plugin exactly as Envoy does)
# unless real Envoy is asked for or found: MELTEMI_HOST=envoy uses `envoy` from PATH with
# envoy-config/envoy-demo.yaml, MELTEMI_HOST=abihost forces abihost, and the default (auto)
# takes Envoy when `envoy` is on PATH. Envoy runs with GODEBUG=cgocheck=0, which the Go
# runtime inside the plugin needs.
#
# Ports (127.0.0.1): listeners Thrift 9090 and Dubbo 20880; Thrift servers 9091 (v1) and
# 9092 (v2); Dubbo providers 20881 (v1) and 20882 (v2); the controller's xDS 15010 (the
# config_source of the filter configurations) and metrics/health 15014; Envoy admin 9901.
set -euo pipefail

check=0
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

# The controller's directory: MELTEMI_CONFIG_DIR, relative to where the script was called
# from, or the demo's mesh.
config_dir=envoy-config/demo
if [ -n "${MELTEMI_CONFIG_DIR:-}" ]; then
  case "$MELTEMI_CONFIG_DIR" in
    /*) config_dir=$MELTEMI_CONFIG_DIR ;;
    *) config_dir=$(pwd)/$MELTEMI_CONFIG_DIR ;;
  esac
fi

cd "$(dirname "$0")/.."
root=$(pwd)

die() { echo "run-demo: $*" >&2; exit 1; }

# Tools: go builds everything, gcc is cgo's compiler for the c-shared plugin and builds abihost.
command -v go >/dev/null || die "go is not on PATH: install Go 1.26 or later (https://go.dev/dl/)"
command -v gcc >/dev/null || die "gcc is not on PATH: install it (Debian: apt-get install gcc)"

host=${MELTEMI_HOST:-auto}
case "$host" in
  auto) if command -v envoy >/dev/null; then host=envoy; else host=abihost; fi ;;
  envoy) command -v envoy >/dev/null || die "MELTEMI_HOST=envoy but envoy is not on PATH" ;;
  abihost) ;;
  *) die "MELTEMI_HOST=$host: want auto, abihost or envoy" ;;
esac

[ -d "$config_dir" ] || die "the config directory $config_dir is not a directory (MELTEMI_CONFIG_DIR)"

ports=(15010 15014 9090 20880 9091 9092 20881 20882)
[ "$host" = envoy ] && ports+=(9901)
for p in "${ports[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    die "port 127.0.0.1:$p is in use (another demo running?): the demo needs ${ports[*]}"
  fi
done

echo "== building bin/meltemi-controller, bin/meltemi.so, bin/meltemi-demo$([ "$host" = abihost ] && echo ", bin/abihost")"
mkdir -p bin
go build -o bin/meltemi-controller ./controlplane/cmd/meltemi-controller
CGO_ENABLED=1 go build -buildmode=c-shared -o bin/meltemi.so ./plugin
go build -o bin/meltemi-demo ./e2e/demo/cmd/meltemi-demo
[ "$host" = abihost ] && e2e/abihost/build.sh bin/abihost

run=$(mktemp -d "${TMPDIR:-/tmp}/meltemi-demo.XXXXXX")
pids=()
# cleanup runs from the EXIT trap, which shellcheck 0.9 does not follow (SC2317 false positive).
# shellcheck disable=SC2317
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD...: runs CMD in the background, its output in $run/NAME.log.
start() {
  local name=$1; shift
  "$@" >"$run/$name.log" 2>&1 &
  pids+=($!)
  names[$!]=$name
}
declare -A names

# The plugin configurations are validated before anything starts.
bin/meltemi-demo plugin-config -o "$run/thrift.any" envoy-config/filters/thrift.yaml
bin/meltemi-demo plugin-config -o "$run/dubbo.any" envoy-config/filters/dubbo.yaml

# fail_if_exited: a child that exits before the demo is up is an error, shown with its log.
fail_if_exited() {
  for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "run-demo: ${names[$pid]} exited; its log:" >&2
      cat "$run/${names[$pid]}.log" >&2
      exit 1
    fi
  done
}

# readyz: the controller's /readyz answers 200 (it has read the config directory and its xDS
# server has the resulting configuration). Plain bash, so that curl is not required; a
# subshell, so that a refused connection cannot end the script.
readyz() (
  exec 3<>/dev/tcp/127.0.0.1/15014 || exit 1
  printf 'GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  read -r -t 2 _ status _ <&3 || exit 1
  [ "$status" = 200 ]
)

# The controller first: the plugin's filter configurations fetch their routes from it.
echo "== starting the controller on $config_dir (xDS 127.0.0.1:15010, metrics 127.0.0.1:15014)"
start controller bin/meltemi-controller --source=file --config-dir "$config_dir" \
  --xds-address 127.0.0.1:15010 --metrics-address 127.0.0.1:15014
deadline=$((SECONDS + 30))
until (exec 3<>/dev/tcp/127.0.0.1/15010) 2>/dev/null && readyz 2>/dev/null; do
  fail_if_exited
  [ $SECONDS -lt $deadline ] || die "the controller is not ready after 30s; its log: $run/controller.log"
  sleep 0.2
done

echo "== starting the servers and the plugin in $host (logs in $run)"
start thrift-v1 bin/meltemi-demo thrift-server -name v1 -listen 127.0.0.1:9091
start thrift-v2 bin/meltemi-demo thrift-server -name v2 -listen 127.0.0.1:9092
start dubbo-v1 bin/meltemi-demo dubbo-provider -name v1 -port 20881
start dubbo-v2 bin/meltemi-demo dubbo-provider -name v2 -port 20882 -version 2.0.0
if [ "$host" = envoy ]; then
  GODEBUG=cgocheck=0 start envoy envoy -c envoy-config/envoy-demo.yaml --log-level warn
else
  start abihost bin/abihost --library "$root/bin/meltemi.so" --library-id meltemi --plugin meltemi \
    --listen 127.0.0.1:9090 --config-file "$run/thrift.any" \
    --listen 127.0.0.1:20880 --config-file "$run/dubbo.any"
fi

# Ready when every port accepts connections; a child that exits first is an error.
deadline=$((SECONDS + 60))
for p in "${ports[@]}"; do
  until (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do
    fail_if_exited
    [ $SECONDS -lt $deadline ] || die "port $p not listening after 60s; logs in $run"
    sleep 0.2
  done
done

cat <<INFO

== Meltemi demo: the plugin runs in $host, its routes come from the controller
  Controller: file source on $config_dir, xDS 127.0.0.1:15010,
      http://127.0.0.1:15014/metrics, /healthz, /readyz
  (the routes below are envoy-config/demo's)
  Thrift listener 127.0.0.1:9090  service Echo { string echo(1: string msg) }
      framed or buffered, binary or compact, or THeader (detected per connection)
      THeader header "version: v2" -> v2 (127.0.0.1:9092), everything else -> v1 (127.0.0.1:9091)
  Dubbo listener  127.0.0.1:20880  org.apache.dubbo.sample.EchoService Echo(String) -> String
      service version 2.0.0 -> v2 (127.0.0.1:20882), everything else -> v1 (127.0.0.1:20881)
  Routing: the MetaRouters in $config_dir (edit a file: the change applies live);
      the listeners' filter configurations: envoy-config/filters/thrift.yaml, dubbo.yaml
  Call them again with:
      bin/meltemi-demo client -thrift 127.0.0.1:9090 -dubbo 127.0.0.1:20880
  or any Thrift or Dubbo client. Logs: $run

== Demo client
INFO

status=0
bin/meltemi-demo client -thrift 127.0.0.1:9090 -dubbo 127.0.0.1:20880 -wait 20s || status=$?
if [ $check = 1 ]; then
  if [ $status = 0 ]; then echo "== check passed: every call was routed as configured"; else
    echo "== check FAILED; plugin log:" >&2; cat "$run/$host.log" >&2
    echo "== controller log:" >&2; cat "$run/controller.log" >&2; fi
  exit $status
fi
[ $status = 0 ] || echo "== some calls failed; logs in $run" >&2

echo
echo "== Serving until Ctrl-C"
wait -n "${pids[@]}" || true
echo "run-demo: a demo process exited; logs:" >&2
for pid in "${pids[@]}"; do
  kill -0 "$pid" 2>/dev/null || { echo "-- ${names[$pid]}" >&2; cat "$run/${names[$pid]}.log" >&2; }
done
exit 1
