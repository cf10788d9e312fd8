package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/meltemi-mesh/meltemi/e2e/bench/loadgen"
)

// profileLines is how many symbols of the perf report the summary keeps.
const profileLines = 25

// profileRun runs one more load window on pa with perf recording its proxy process, outside
// the measured runs since perf slows the process down, and returns a Markdown summary of
// where the proxy's CPU time went (self time by shared object and symbol).
func profileRun(c *config, p loadgen.Protocol, pa *path, conns int) (string, error) {
	data := filepath.Join(c.perfDir, "perf-"+p.Name()+".data")
	rec := exec.Command("perf", "record", "-q", "-e", "cpu-clock", "-F", "2999", "-p", strconv.Itoa(pa.proxy.pid()),
		"-o", data, "--", "sleep", strconv.FormatFloat(c.duration.Seconds(), 'f', 3, 64))
	var recErr bytes.Buffer
	rec.Stderr = &recErr
	if err := rec.Start(); err != nil {
		return "", fmt.Errorf("perf record: %w", err)
	}
	var r row
	r.conns = conns
	err := measure(c, p, pa, &r)
	if werr := rec.Wait(); werr != nil {
		return "", fmt.Errorf("perf record: %w: %s", werr, recErr.String())
	}
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n### Where the Meltemi host's CPU goes: %s, %d connections (perf, self time)\n\n",
		p.Name(), conns)
	fmt.Fprintf(&b, "%.0f req/s under perf; full reports next to %s\n\n```\n", r.res.QPS(), data)
	// By shared object first (kernel vs host vs Go runtime and plugin), then the user-space
	// symbols: in a VM, kernel time mostly lands on the instruction that re-enables
	// interrupts and says little beyond "system calls".
	for i, sortKey := range []string{"dso", "dso,symbol"} {
		args := []string{"report", "-i", data, "--stdio", "--percent-limit", "0.5", "--sort", sortKey}
		if i == 1 {
			args = append(args, "--percentage", "relative",
				"--dsos", filepath.Base(c.so)+","+filepath.Base(c.abihost)+",libc.so.6")
		}
		outb, err := exec.Command("perf", args...).Output()
		if err != nil {
			return "", fmt.Errorf("perf report --sort %s: %w", sortKey, err)
		}
		name := filepath.Join(c.perfDir, fmt.Sprintf("perf-%s-%s.txt", p.Name(), strings.ReplaceAll(sortKey, ",", "-")))
		if err := os.WriteFile(name, outb, 0o644); err != nil {
			return "", err
		}
		sc := bufio.NewScanner(bytes.NewReader(outb))
		for n := 0; sc.Scan() && n < profileLines; {
			// perf pads lines with empty columns ("-      -").
			line := strings.TrimRight(sc.Text(), " -")
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			b.WriteString(line + "\n")
			n++
		}
		if i == 0 {
			b.WriteString("\n")
		}
	}
	b.WriteString("```\n")
	return b.String(), nil
}
