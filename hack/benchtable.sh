#!/usr/bin/env bash
# Turns `go test -bench -benchmem` output (stdin) into the Markdown table the README shows.
set -euo pipefail
awk '
/^pkg:/ { pkg = $2; sub(".*/codecs/", "", pkg) }
/^Benchmark/ && /ns\/op/ {
	name = $1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
	ns = ""; b = ""; allocs = ""
	for (i = 2; i <= NF; i++) {
		if ($i == "ns/op") ns = $(i-1)
		if ($i == "B/op") b = $(i-1)
		if ($i == "allocs/op") allocs = $(i-1)
	}
	rows[++n] = sprintf("| %s | %s | %s | %s | %s |", pkg, name, ns, b, allocs)
}
END {
	print "| codec | benchmark | ns/op | B/op | allocs/op |"
	print "|---|---|---:|---:|---:|"
	for (i = 1; i <= n; i++) print rows[i]
}'
