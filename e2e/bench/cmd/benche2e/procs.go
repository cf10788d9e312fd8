package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// proc is a started backend or proxy.
type proc struct {
	name string
	cmd  *exec.Cmd
	addr string // where it listens
	log  *logBuffer
	done chan struct{}
}

// logBuffer keeps a process's stderr for error messages.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 64<<10 {
		return len(p), nil // enough to diagnose; a chatty process must not grow it forever
	}
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startProc runs args pinned to cpus (taskset) and waits for it to listen: until it prints a
// line starting with readyPrefix (whose text after the prefix ready parses into the address),
// or, when readyPrefix is empty, until addr accepts connections.
func startProc(name, cpus string, args []string, readyPrefix string, ready func(string) (string, error), addr string) (*proc, error) {
	cmd := exec.Command("taskset", append([]string{"-c", cpus}, args...)...)
	p := &proc{name: name, cmd: cmd, addr: addr, log: &logBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.log
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: start: %w", name, err)
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if readyPrefix != "" && strings.HasPrefix(sc.Text(), readyPrefix) {
				select {
				case lines <- strings.TrimPrefix(sc.Text(), readyPrefix):
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
		close(p.done)
	}()
	deadline := time.After(30 * time.Second)
	for {
		if readyPrefix == "" {
			if c, err := net.DialTimeout("tcp", p.addr, time.Second); err == nil {
				c.Close()
				return p, nil
			}
		}
		select {
		case line := <-lines:
			if p.addr, err = ready(line); err != nil {
				p.stop()
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			return p, nil
		case <-p.done:
			return nil, fmt.Errorf("%s exited: %s", name, p.log.String())
		case <-deadline:
			p.stop()
			return nil, fmt.Errorf("%s: not ready after 30s: %s", name, p.log.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop kills the process and waits for it.
func (p *proc) stop() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// freePort returns a port that was free a moment ago, for programs that cannot pick one.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every Linux ABI Go
// supports.
const clockTicks = 100

// cpuTime is the user+sys CPU time all threads of pid have used.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces: fields are counted after its closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc/pid/stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc/pid/stat")
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/pid/stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// machineBusy is the CPU time all cores have spent outside idle and iowait since boot
// (the first line of /proc/stat).
func machineBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, errors.New("malformed /proc/stat")
	}
	var busy int64
	for i, s := range f[1:] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		// user nice system idle iowait irq softirq steal guest guest_nice: guest time is
		// already counted in user and nice.
		if i != 3 && i != 4 && i < 8 {
			busy += n
		}
	}
	return time.Duration(busy) * time.Second / clockTicks, nil
}
