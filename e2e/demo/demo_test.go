package demo

import (
	"context"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunDemo runs `make run`'s script non-interactively (hack/run-demo.sh --check): it
// builds the plugin, starts the servers and the host (abihost, or Envoy as MELTEMI_HOST
// says), makes the client's calls and exits. Every call must reach the server its route names.
func TestRunDemo(t *testing.T) {
	// Builds on a fresh machine take most of this; the demo itself runs in seconds.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "../../hack/run-demo.sh", "--check")
	// SIGTERM lets the script's trap stop the servers and the host it started.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 15 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("hack/run-demo.sh --check (%v):\n%s", time.Since(start).Round(time.Millisecond), out)
	if err != nil {
		t.Fatalf("hack/run-demo.sh --check: %v", err)
	}
	want := map[string]int{}
	for _, c := range Calls {
		want[c.Want]++
	}
	for server, n := range want {
		if got := strings.Count(string(out), "(routed to "+server+")"); got != n {
			t.Errorf("%d calls routed to %s, want %d", got, server, n)
		}
	}
	if want["v1"] == 0 || want["v2"] == 0 || !strings.Contains(string(out), "check passed") {
		t.Errorf("the demo shows no routing to both versions, or did not pass its check")
	}
}
