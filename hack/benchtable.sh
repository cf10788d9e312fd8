#!/usr/bin/env bash
# Turns `go test -bench -benchmem [-count N]` output (stdin) into the Markdown table the README
# shows: one row per benchmark, the median ns/op of its runs.
set -euo pipefail
awk '
/^pkg:/ { pkg = $2; sub(".*/meltemi/", "", pkg) }
/^Benchmark/ && /ns\/op/ {
	name = $1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
	key = pkg " | " name
	if (!(key in seen)) { seen[key] = 1; order[++n] = key }
	for (i = 2; i <= NF; i++) {
		if ($i == "ns/op") ns[key, ++cnt[key]] = $(i-1) + 0
		if ($i == "B/op") b[key] = $(i-1)
		if ($i == "allocs/op") allocs[key] = $(i-1)
	}
}
function median(key,    m, i, j, t, v) {
	m = cnt[key]
	for (i = 1; i <= m; i++) v[i] = ns[key, i]
	for (i = 2; i <= m; i++) for (j = i; j > 1 && v[j-1] > v[j]; j--) { t = v[j]; v[j] = v[j-1]; v[j-1] = t }
	return v[int((m + 1) / 2)]
}
END {
	print "| package | benchmark | ns/op (median) | B/op | allocs/op |"
	print "|---|---|---:|---:|---:|"
	for (k = 1; k <= n; k++) printf "| %s | %s | %s | %s |\n", order[k], median(order[k]), b[order[k]], allocs[order[k]]
}'
