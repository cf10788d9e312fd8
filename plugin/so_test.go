package main

import (
	"bufio"
	"bytes"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The entry points Envoy v1.36's golang network filter resolves with dlsym; a missing one
// makes Envoy refuse the library, an extra one means a second Envoy Go API got linked in.
var entryPoints = []string{
	"envoyGoFilterOnDownstreamConnection",
	"envoyGoFilterOnDownstreamData",
	"envoyGoFilterOnDownstreamEvent",
	"envoyGoFilterOnDownstreamWrite",
	"envoyGoFilterOnNetworkFilterConfig",
	"envoyGoFilterOnSemaDec",
	"envoyGoFilterOnUpstreamConnectionFailure",
	"envoyGoFilterOnUpstreamConnectionReady",
	"envoyGoFilterOnUpstreamData",
	"envoyGoFilterOnUpstreamEvent",
}

// The host functions a network plugin calls, which Envoy exports. Anything else (such as
// envoyGoFilterLog, from Envoy's api_impl) would fail at its first call in a host lacking it.
var hostFunctions = []string{
	"envoyGoFilterDownstreamClose",
	"envoyGoFilterDownstreamFinalize",
	"envoyGoFilterDownstreamInfo",
	"envoyGoFilterDownstreamWrite",
	"envoyGoFilterGetFilterState",
	"envoyGoFilterSetFilterState",
	"envoyGoFilterUpstreamClose",
	"envoyGoFilterUpstreamConnEnableHalfClose",
	"envoyGoFilterUpstreamConnect",
	"envoyGoFilterUpstreamFinalize",
	"envoyGoFilterUpstreamInfo",
	"envoyGoFilterUpstreamWrite",
}

func TestSharedLibrarySymbols(t *testing.T) {
	so := filepath.Join(t.TempDir(), "meltemi.so")
	build := exec.Command("go", "build", "-buildmode=c-shared", "-o", so, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -buildmode=c-shared: %v\n%s", err, out)
	}
	if got := envoySymbols(t, so, "--defined-only"); !slices.Equal(got, entryPoints) {
		t.Errorf("exported envoyGo* symbols:\n got %q\nwant %q", got, entryPoints)
	}
	if got := envoySymbols(t, so, "--undefined-only"); !slices.Equal(got, hostFunctions) {
		t.Errorf("imported envoyGo* symbols:\n got %q\nwant %q", got, hostFunctions)
	}
}

// envoySymbols returns the sorted dynamic symbols of so named envoyGo*, as nm -D filter
// selects them.
func envoySymbols(t *testing.T, so, filter string) []string {
	t.Helper()
	out, err := exec.Command("nm", "-D", filter, so).Output()
	if err != nil {
		t.Fatalf("nm -D %s: %v", filter, err)
	}
	var syms []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if name := f[len(f)-1]; strings.HasPrefix(name, "envoyGo") {
			syms = append(syms, name)
		}
	}
	slices.Sort(syms)
	return syms
}
