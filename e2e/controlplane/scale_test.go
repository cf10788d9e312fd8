package controlplane_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
)

// TestControllerProcessAtScale runs the real controller process on a directory holding the
// issue's scale target as YAML — 1,000 services (ServiceEntries with 10 static endpoints),
// their DestinationRules (subsets v1, v2) and MetaRouters of 5 routes — and measures the time
// from start to ready (read, validated, built, translated, served) and the process's peak
// resident memory. Target: < 500 MiB. The time includes parsing and CEL validation of 3,000
// objects, which the in-process benchmark (make scale) leaves out.
func TestControllerProcessAtScale(t *testing.T) {
	dir := t.TempDir()
	for i := range 1000 {
		writeScaleService(t, dir, i)
	}
	start := time.Now()
	c := startController(t, dir)
	ready := time.Since(start)
	c.mu.Lock()
	pid := c.cmd.Process.Pid
	c.mu.Unlock()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	hwm := procKiB(t, string(status), "VmHWM:")
	rss := procKiB(t, string(status), "VmRSS:")
	t.Logf("1,000 services x 10 endpoints x 5 routes from 1,000 files: ready in %v, peak RSS %.1f MiB, RSS %.1f MiB",
		ready.Round(time.Millisecond), float64(hwm)/1024, float64(rss)/1024)
	if float64(hwm)/1024 >= 500 {
		t.Errorf("peak RSS %.1f MiB, target < 500 MiB", float64(hwm)/1024)
	}
	// What it serves: 1,000 route configurations, and a cluster and endpoint set for each
	// service and subset.
	resp, err := http.Get("http://" + c.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for typ, want := range map[string]int{
		apiv1alpha1.RouteConfigurationTypeURL: 1000,
		apiv1alpha1.ClusterTypeURL:            3000,
		apiv1alpha1.EndpointTypeURL:           3000,
	} {
		line := fmt.Sprintf("meltemi_xds_resources{type=%q} %d\n", typ, want)
		if !strings.Contains(string(metrics), line) {
			t.Errorf("metrics lack %q", strings.TrimSpace(line))
		}
	}
}

func procKiB(t *testing.T, status, key string) int {
	t.Helper()
	for _, line := range strings.Split(status, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == key {
			n, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("%s not in /proc status", key)
	return 0
}

func writeScaleService(t *testing.T, dir string, i int) {
	t.Helper()
	host := fmt.Sprintf("svc-%d.scale.svc.cluster.local", i)
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc-%d, namespace: scale}
spec:
  hosts: [%s]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 20880, name: tcp-dubbo, protocol: TCP}
  endpoints:
`, i, host)
	for k := range 10 {
		fmt.Fprintf(&b, "  - {address: 10.%d.%d.%d, labels: {version: v%d}}\n", i/250, i%250, k+1, 1+k%2)
	}
	fmt.Fprintf(&b, `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc-%d, namespace: scale}
spec:
  host: %s
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: metaprotocol.meltemi.io/v1alpha1
kind: MetaRouter
metadata: {name: svc-%d, namespace: scale}
spec:
  hosts: [%s]
  routes:
`, i, host, i, host)
	for r := range 4 {
		fmt.Fprintf(&b, `  - name: m%d
    match: {attributes: {method: {exact: m%d}}}
    route:
    - {destination: {host: %s, subset: v1}, weight: 80}
    - {destination: {host: %s, subset: v2}, weight: 20}
`, r, r, host, host)
	}
	fmt.Fprintf(&b, "  - name: default\n    route:\n    - destination: {host: %s, subset: v1}\n", host)
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("svc-%04d.yaml", i)), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}
