#!/usr/bin/env bash
# make bench-e2e: the end-to-end benchmark (e2e/bench/cmd/benche2e). Installs what it needs
# from Debian (once), builds the backends, abihost and the plugin .so into a cache outside
# the repository, runs direct / HAProxy / Meltemi side by side and prints the Markdown table.
#
# Environment: BENCH_DURATION (3s per run), BENCH_WARMUP (500ms), BENCH_REPEAT (3 runs per
# case, interleaved, median reported), BENCH_CONNS (8,64),
# BENCH_PROTOCOLS (thrift,dubbo), BENCH_PAYLOAD (1024), BENCH_RATE (0: closed loop; else open
# loop at that total req/s), BENCH_OUT (output directory), BENCH_PERF=1 (perf profile of the
# plugin host, in the output directory), MELTEMI_SO (an already built plugin .so),
# PROXY_CPU / CLIENT_CPU (0 / 1), MELTEMI_CACHE (~/.cache/meltemi).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${MELTEMI_CACHE:-$HOME/.cache/meltemi}/bench-e2e
out=${BENCH_OUT:-${TMPDIR:-/tmp}/meltemi-bench-e2e}
proxy_cpu=${PROXY_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
mkdir -p "$cache/bin" "$out"

# Debian packages: the Thrift compiler and C++ library with libevent for the backend,
# HAProxy for the baseline, taskset (util-linux) for pinning.
missing=()
for pkg in thrift-compiler libthrift-dev libevent-dev haproxy g++ pkg-config util-linux; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
boost=$(dpkg-query -W -f='${Status}' libboost-dev 2>/dev/null | grep -c 'install ok installed' || true)
if [ ${#missing[@]} -gt 0 ] || [ "$boost" = 0 ]; then
	sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
	echo "installing ${missing[*]} libboost-dev" >&2
	$sudo apt-get update -qq
	[ ${#missing[@]} -eq 0 ] || $sudo apt-get install -y -qq "${missing[@]}" >&2
	# Thrift's C++ headers need Boost's headers only, not its recommended libraries.
	[ "$boost" != 0 ] || $sudo apt-get install -y -qq --no-install-recommends libboost-dev >&2
fi

# The C++ Thrift backend, keyed by its sources and the compiler version.
src=$root/e2e/bench/thrift
key=$( (cat "$src/bench.thrift" "$src/echo_server.cpp"; thrift --version; g++ --version) | sha256sum | cut -c1-16)
thrift_server=$cache/thrift-$key/echo_server
if [ ! -x "$thrift_server" ]; then
	echo "building the Thrift backend" >&2
	tmp=$(mktemp -d "$cache/thrift-build.XXXXXX")
	thrift --gen cpp -out "$tmp" "$src/bench.thrift"
	# shellcheck disable=SC2046 # pkg-config output is a word list
	g++ -O2 -std=c++17 -I"$tmp" -o "$tmp/echo_server" "$src/echo_server.cpp" "$tmp/Bench.cpp" \
		$(pkg-config --cflags --libs thrift-nb) -levent
	mkdir -p "$(dirname "$thrift_server")"
	mv "$tmp/echo_server" "$thrift_server"
	rm -rf "$tmp"
fi

# abihost, keyed by its sources.
akey=$(cat "$root/e2e/abihost/build.sh" "$root/e2e/abihost/csrc/abihost.c" | sha256sum | cut -c1-16)
abihost=$cache/abihost-$akey
[ -x "$abihost" ] || "$root/e2e/abihost/build.sh" "$abihost"

# Go programs and the plugin; go build's own cache makes these cheap when nothing changed.
cd "$root"
go build -o "$cache/bin/benche2e" ./e2e/bench/cmd/benche2e
go build -o "$cache/bin/dubboprovider" ./e2e/bench/cmd/dubboprovider
so=${MELTEMI_SO:-}
if [ -z "$so" ]; then
	so=$root/bin/meltemi.so
	go build -buildmode=c-shared -o "$so" ./plugin
fi

perf_args=()
if [ "${BENCH_PERF:-0}" = 1 ]; then
	perf_args=(-perf "$out")
fi

# The client (this command) and, by inheritance, the backends run on CLIENT_CPU; the proxies
# on PROXY_CPU.
taskset -c "$client_cpu" "$cache/bin/benche2e" \
	-thrift-server "$thrift_server" -dubbo-provider "$cache/bin/dubboprovider" \
	-haproxy "$(command -v haproxy || echo /usr/sbin/haproxy)" -abihost "$abihost" -so "$so" \
	-duration "${BENCH_DURATION:-3s}" -warmup "${BENCH_WARMUP:-500ms}" \
	-conns "${BENCH_CONNS:-8,64}" -protocols "${BENCH_PROTOCOLS:-thrift,dubbo}" \
	-repeat "${BENCH_REPEAT:-3}" -payload "${BENCH_PAYLOAD:-1024}" -rate "${BENCH_RATE:-0}" -proxy-cpu "$proxy_cpu" \
	-out "$out/bench-e2e.md" "${perf_args[@]}"
