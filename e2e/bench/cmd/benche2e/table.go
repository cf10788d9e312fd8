package main

import (
	"fmt"
	"strings"
	"time"
)

// markdown renders the rows with ratios against the HAProxy and direct rows of the same
// protocol and connection count.
func markdown(c *config, rows []row) string {
	type key struct {
		protocol string
		conns    int
	}
	direct, hap := map[key]*row{}, map[key]*row{}
	for i := range rows {
		r := &rows[i]
		switch k := (key{r.protocol, r.conns}); r.path {
		case "direct":
			direct[k] = r
		case "haproxy":
			hap[k] = r
		}
	}
	var b strings.Builder
	mode := "closed loop"
	if c.rate > 0 {
		mode = fmt.Sprintf("open loop at %.0f req/s", c.rate)
	}
	fmt.Fprintf(&b, "%s, %d B payload, %v per run after %v warm-up, median-QPS run of %d; proxy on CPU %s, client and backend on the other. "+
		"Proxy cores: the proxy's CPU time over wall time. Other load: CPU used meanwhile by processes outside the benchmark.\n\n",
		mode, c.payload, c.duration, c.warmup, max(c.repeat, 1), c.proxyCPU)
	b.WriteString("| path | protocol | conns | QPS | p50 | p99 | max | p99 over direct | proxy CPU µs/req | QPS vs HAProxy | QPS vs direct | CPU/req vs HAProxy | proxy cores | other load (cores) |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		if r.pending != "" {
			fmt.Fprintf(&b, "| %s | %s | %d | pending (%s) | | | | | | | | | | |\n", r.path, r.protocol, r.conns, r.pending)
			continue
		}
		k := key{r.protocol, r.conns}
		p99 := r.res.Latency.Quantile(0.99)
		proxyLoad := "—"
		if r.path != "direct" {
			proxyLoad = fmt.Sprintf("%.2f", r.proxyLoad)
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.2f |\n",
			r.path, r.protocol, r.conns, r.res.QPS(),
			us(r.res.Latency.Quantile(0.5)), us(p99), us(r.res.Latency.Max()),
			p99Over(r, direct[k], p99), cpu(r), qpsRatio(r, hap[k]), qpsRatio(r, direct[k]), cpuRatio(r, hap[k]),
			proxyLoad, r.otherLoad)
	}
	return b.String()
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/1e3) }

func cpu(r row) string {
	if r.path == "direct" {
		return "—"
	}
	return fmt.Sprintf("%.1f", float64(r.cpuPerReq)/1e3)
}

func p99Over(r row, direct *row, p99 time.Duration) string {
	if r.path == "direct" || direct == nil || direct.res == nil {
		return "—"
	}
	return fmt.Sprintf("%+.0f µs", float64(p99-direct.res.Latency.Quantile(0.99))/1e3)
}

func qpsRatio(r row, base *row) string {
	if base == nil || base.res == nil || base.path == r.path || base.res.QPS() == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2fx", r.res.QPS()/base.res.QPS())
}

func cpuRatio(r row, base *row) string {
	if base == nil || base.res == nil || base.path == r.path || r.path == "direct" || base.cpuPerReq == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2fx", float64(r.cpuPerReq)/float64(base.cpuPerReq))
}
