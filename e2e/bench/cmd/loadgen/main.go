// Command loadgen sends Thrift or Dubbo echo load to one address and prints QPS and latency
// quantiles (see package e2e/bench/loadgen).
//
//	loadgen -addr 127.0.0.1:9090 -protocol thrift -conns 8 -duration 3s [-rate 20000]
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/meltemi-mesh/meltemi/e2e/bench/loadgen"
)

func main() {
	addr := flag.String("addr", "", "server address (host:port)")
	proto := flag.String("protocol", "thrift", "thrift or dubbo")
	conns := flag.Int("conns", 8, "connections")
	payload := flag.Int("payload", 1024, "request payload bytes")
	duration := flag.Duration("duration", 3*time.Second, "measured run time")
	warmup := flag.Duration("warmup", 500*time.Millisecond, "unmeasured run time before it")
	rate := flag.Float64("rate", 0, "open loop: total requests per second (0: closed loop)")
	flag.Parse()
	if err := run(*addr, *proto, *conns, *payload, *duration, *warmup, *rate); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(addr, proto string, conns, payload int, duration, warmup time.Duration, rate float64) error {
	p, err := loadgen.ByName(proto)
	if err != nil {
		return err
	}
	l, err := loadgen.Dial(loadgen.Options{Addr: addr, Protocol: p, Conns: conns, Payload: payload})
	if err != nil {
		return err
	}
	defer l.Close()
	if warmup > 0 {
		l.Run(warmup, rate)
	}
	r := l.Run(duration, rate)
	if err := l.Err(); err != nil {
		return err
	}
	fmt.Printf("%s conns=%d requests=%d qps=%.0f p50=%v p99=%v max=%v\n", proto, conns, r.Requests, r.QPS(),
		r.Latency.Quantile(0.5), r.Latency.Quantile(0.99), r.Latency.Max())
	return nil
}
