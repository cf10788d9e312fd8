// Command benche2e is the end-to-end benchmark (make bench-e2e): in one run, the same load
// (e2e/bench/loadgen) against each backend directly, through HAProxy in TCP mode, and
// through the Meltemi plugin .so hosted by abihost as Envoy would host it, for Thrift (C++
// TNonblockingServer) and Dubbo (dubbo-go provider), at several connection counts. It prints
// a Markdown table of QPS, latency and the CPU each proxy process spends per request, and
// writes it to -out.
//
// Run it pinned to the client core (taskset -c 1 benche2e ...): the backends it starts
// inherit that core; the proxies are pinned to -proxy-cpu. hack/bench-e2e.sh builds
// everything and does this.
package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meltemi-mesh/meltemi/e2e/bench/loadgen"
	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
)

type config struct {
	thriftServer, dubboProvider string // backend binaries
	haproxy                     string
	abihost, so                 string // empty: the Meltemi path is reported as pending
	protocols                   []string
	conns                       []int
	payload                     int
	duration, warmup            time.Duration
	rate                        float64
	repeat                      int
	proxyCPU                    string
	out                         string
	perfDir                     string // where perf profiles of the Meltemi host go; empty: none
	dir                         string // for generated configuration files
}

func main() {
	var c config
	var protocols, conns string
	flag.StringVar(&c.thriftServer, "thrift-server", "", "C++ Thrift echo server binary (e2e/bench/thrift)")
	flag.StringVar(&c.dubboProvider, "dubbo-provider", "", "dubbo provider binary (e2e/bench/cmd/dubboprovider)")
	flag.StringVar(&c.haproxy, "haproxy", "haproxy", "haproxy binary")
	flag.StringVar(&c.abihost, "abihost", "", "abihost binary (empty: Meltemi path pending)")
	flag.StringVar(&c.so, "so", "", "the Meltemi plugin .so (empty: Meltemi path pending)")
	flag.StringVar(&protocols, "protocols", "thrift,dubbo", "protocols to run")
	flag.StringVar(&conns, "conns", "8,64", "connection counts to run")
	flag.IntVar(&c.payload, "payload", 1024, "request payload bytes")
	flag.DurationVar(&c.duration, "duration", 3*time.Second, "measured time of each run")
	flag.DurationVar(&c.warmup, "warmup", 500*time.Millisecond, "unmeasured time before each run")
	flag.Float64Var(&c.rate, "rate", 0, "open loop at this total rate per second (0: closed loop)")
	flag.IntVar(&c.repeat, "repeat", 1, "runs of each case, interleaved; the table shows the run of median QPS")
	flag.StringVar(&c.proxyCPU, "proxy-cpu", "0", "CPU list the proxies are pinned to")
	flag.StringVar(&c.out, "out", "bench-e2e.md", "Markdown output file")
	flag.StringVar(&c.perfDir, "perf", "", "profile the Meltemi host with perf in an extra run and write the profile here")
	flag.Parse()
	c.protocols = strings.Split(protocols, ",")
	for _, s := range strings.Split(conns, ",") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "benche2e: bad -conns %q\n", conns)
			os.Exit(2)
		}
		c.conns = append(c.conns, n)
	}
	if err := run(&c); err != nil {
		fmt.Fprintln(os.Stderr, "benche2e:", err)
		os.Exit(1)
	}
}

func run(c *config) error {
	dir, err := os.MkdirTemp("", "meltemi-bench-e2e-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	c.dir = dir
	var (
		rows     []row
		profiles []string
	)
	for _, name := range c.protocols {
		p, err := loadgen.ByName(name)
		if err != nil {
			return err
		}
		r, prof, err := benchProtocol(c, p)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		rows = append(rows, r...)
		if prof != "" {
			profiles = append(profiles, prof)
		}
	}
	table := markdown(c, rows) + strings.Join(profiles, "")
	fmt.Print(table)
	if err := os.WriteFile(c.out, []byte(table), 0o644); err != nil {
		return fmt.Errorf("writing the table: %w", err)
	}
	fmt.Fprintln(os.Stderr, "table written to", c.out)
	return nil
}

// benchProtocol starts p's backend and the proxies in front of it and runs every
// connection count through every path; with -perf, it also profiles the Meltemi host and
// returns the profile summary in Markdown.
func benchProtocol(c *config, p loadgen.Protocol) (rows []row, profile string, err error) {
	backend, err := startBackend(c, p.Name())
	if err != nil {
		return nil, "", err
	}
	defer backend.stop()
	paths := []*path{{name: "direct", addr: backend.addr, backend: backend}}

	hap, err := startHAProxy(c, p.Name(), backend.addr)
	if err != nil {
		return nil, "", err
	}
	defer hap.stop()
	paths = append(paths, &path{name: "haproxy", addr: hap.addr, proxy: hap, backend: backend})

	meltemi := &path{name: "meltemi", pending: "no plugin .so"}
	if c.so != "" && c.abihost != "" {
		h, err := startMeltemi(c, p.Name(), backend.addr)
		if err != nil {
			return nil, "", err
		}
		defer h.stop()
		meltemi = &path{name: "meltemi", addr: h.addr, proxy: h, backend: backend}
	}
	paths = append(paths, meltemi)

	// runs[i] are the repeated measurements of case i (conns x path); repeats are
	// interleaved so that a burst of load from elsewhere on the machine does not land on
	// every run of one path.
	runs := make([][]row, len(c.conns)*len(paths))
	for rep := range max(c.repeat, 1) {
		for i, n := range c.conns {
			for j, pa := range paths {
				r := row{path: pa.name, protocol: p.Name(), conns: n, pending: pa.pending}
				if pa.pending == "" {
					fmt.Fprintf(os.Stderr, "%s %s %d conns, run %d...\n", p.Name(), pa.name, n, rep+1)
					if err := measure(c, p, pa, &r); err != nil {
						return nil, "", fmt.Errorf("%s, %d connections: %w", pa.name, n, err)
					}
				}
				runs[i*len(paths)+j] = append(runs[i*len(paths)+j], r)
			}
		}
	}
	for _, rs := range runs {
		rows = append(rows, medianRun(rs))
	}
	if c.perfDir != "" && meltemi.pending == "" {
		fmt.Fprintf(os.Stderr, "%s meltemi %d conns under perf...\n", p.Name(), c.conns[0])
		if profile, err = profileRun(c, p, meltemi, c.conns[0]); err != nil {
			return nil, "", err
		}
	}
	return rows, profile, nil
}

// medianRun returns the run of median QPS.
func medianRun(rs []row) row {
	if rs[0].res == nil {
		return rs[0] // pending
	}
	slices.SortFunc(rs, func(a, b row) int { return cmp.Compare(a.res.QPS(), b.res.QPS()) })
	return rs[len(rs)/2]
}

// path is one way from the load generator to the backend.
type path struct {
	name    string
	addr    string
	proxy   *proc // nil for direct
	backend *proc
	pending string // why the path cannot run, if it cannot
}

// row is one measurement.
type row struct {
	path, protocol string
	conns          int
	pending        string
	res            *loadgen.Result
	cpuPerReq      time.Duration // proxy CPU per request; 0 without a proxy
	proxyLoad      float64       // cores the proxy used (CPU time / wall time)
	// otherLoad is the cores used by processes other than the client, backend and proxy
	// during the run: on a shared machine, how much the numbers can be trusted.
	otherLoad float64
}

func measure(c *config, p loadgen.Protocol, pa *path, r *row) error {
	l, err := loadgen.Dial(loadgen.Options{Addr: pa.addr, Protocol: p, Conns: r.conns, Payload: c.payload})
	if err != nil {
		return err
	}
	defer l.Close()
	if c.warmup > 0 {
		l.Run(c.warmup, c.rate)
	}
	u0, err := sampleUsage(pa)
	if err != nil {
		return err
	}
	r.res = l.Run(c.duration, c.rate)
	if err := l.Err(); err != nil {
		return err
	}
	if r.res.Requests == 0 {
		return errors.New("no replies")
	}
	u1, err := sampleUsage(pa)
	if err != nil {
		return err
	}
	wall := u1.at.Sub(u0.at).Seconds()
	r.cpuPerReq = (u1.proxy - u0.proxy) / time.Duration(r.res.Requests)
	r.proxyLoad = (u1.proxy - u0.proxy).Seconds() / wall
	r.otherLoad = max(0, ((u1.machine-u0.machine)-(u1.ours-u0.ours)).Seconds()/wall)
	return nil
}

// usage is a snapshot of CPU time used so far.
type usage struct {
	at      time.Time
	machine time.Duration // by every process, all cores
	ours    time.Duration // by this process, the backend and the proxy
	proxy   time.Duration // by the proxy; 0 without one
}

func sampleUsage(pa *path) (usage, error) {
	u := usage{at: time.Now()}
	var err error
	if u.machine, err = machineBusy(); err != nil {
		return u, err
	}
	self, err := cpuTime(os.Getpid())
	if err != nil {
		return u, err
	}
	backend, err := cpuTime(pa.backend.pid())
	if err != nil {
		return u, err
	}
	if pa.proxy != nil {
		if u.proxy, err = cpuTime(pa.proxy.pid()); err != nil {
			return u, err
		}
	}
	u.ours = self + backend + u.proxy
	return u, nil
}

func startBackend(c *config, protocol string) (*proc, error) {
	// Backends inherit this process's CPU affinity: the client's core.
	cpus := "0-1023"
	if set, err := ownCPUs(); err == nil {
		cpus = set
	}
	parse := func(s string) (string, error) {
		port, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return "", fmt.Errorf("ready line %q", s)
		}
		return fmt.Sprintf("127.0.0.1:%d", port), nil
	}
	switch protocol {
	case "thrift":
		if c.thriftServer == "" {
			return nil, errors.New("-thrift-server is required")
		}
		return startProc("thrift server", cpus, []string{c.thriftServer, "0"}, "ready ", parse, "")
	case "dubbo":
		if c.dubboProvider == "" {
			return nil, errors.New("-dubbo-provider is required")
		}
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		return startProc("dubbo provider", cpus, []string{c.dubboProvider, "-port", strconv.Itoa(port)}, "ready ", parse, "")
	}
	return nil, fmt.Errorf("no backend for %q", protocol)
}

// ownCPUs is this process's CPU affinity list, as taskset -c takes it.
func ownCPUs() (string, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", errors.New("no Cpus_allowed_list")
}

// startHAProxy runs HAProxy in TCP mode with one thread, a single-core L4 hop.
func startHAProxy(c *config, protocol, backend string) (*proc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := fmt.Sprintf(`global
	nbthread 1
	maxconn 4096

defaults
	mode tcp
	timeout connect 5s
	timeout client 60s
	timeout server 60s

listen bench
	bind %s
	server backend %s
`, addr, backend)
	file := filepath.Join(c.dir, "haproxy-"+protocol+".cfg")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	return startProc("haproxy", c.proxyCPU, []string{c.haproxy, "-db", "-f", file}, "", nil, addr)
}

// startMeltemi runs the plugin in abihost, one worker (Envoy's --concurrency 1), one
// listener whose filter config routes everything to the one cluster of the backend.
func startMeltemi(c *config, protocol, backend string) (*proc, error) {
	js := fmt.Sprintf(`{"protocol": %q,
	  "route_config": {"routes": [{"route": {"cluster": "backend"}}]},
	  "clusters": [{"name": "backend", "endpoints": [{"address": %q}]}]}`, protocol, backend)
	b, err := apiv1alpha1.PluginConfigFromJSON([]byte(js))
	if err != nil {
		return nil, fmt.Errorf("meltemi config: %w", err)
	}
	file := filepath.Join(c.dir, "meltemi-"+protocol+".any.bin")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		return nil, err
	}
	args := []string{c.abihost, "--library", c.so, "--workers", "1", "--log-level", "warn",
		"--listen", "127.0.0.1:0", "--plugin", "meltemi", "--config-file", file}
	parse := func(s string) (string, error) {
		// listeners=127.0.0.1:PORT workers=TID
		for _, f := range strings.Fields(s) {
			if v, ok := strings.CutPrefix(f, "listeners="); ok {
				return v, nil
			}
		}
		return "", fmt.Errorf("abihost ready line %q", s)
	}
	return startProc("abihost", c.proxyCPU, args, "ready ", parse, "")
}
