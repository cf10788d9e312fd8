package apiv1alpha1

import "testing"

func TestResourceNameRoundTrip(t *testing.T) {
	for _, c := range []struct {
		dir          Direction
		port         uint32
		subset, host string
		want         string
	}{
		{Outbound, 20880, "", "echo.demo.svc.cluster.local", "outbound|20880||echo.demo.svc.cluster.local"},
		{Outbound, 9090, "v2", "thrift.demo", "outbound|9090|v2|thrift.demo"},
		{Inbound, 1, "canary-1", "h", "inbound|1|canary-1|h"},
	} {
		got := ResourceName(c.dir, c.port, c.subset, c.host)
		if got != c.want {
			t.Errorf("ResourceName = %q, want %q", got, c.want)
		}
		dir, port, subset, host, err := ParseResourceName(got)
		if err != nil || dir != c.dir || port != c.port || subset != c.subset || host != c.host {
			t.Errorf("ParseResourceName(%q) = %v %v %q %q %v", got, dir, port, subset, host, err)
		}
	}
}

func TestParseResourceNameErrors(t *testing.T) {
	for _, name := range []string{"", "outbound|1|", "sideways|1||h", "outbound|0||h", "outbound|70000||h", "outbound|x||h", "outbound|1||"} {
		if _, _, _, _, err := ParseResourceName(name); err == nil {
			t.Errorf("ParseResourceName(%q): no error", name)
		}
	}
}

func TestValidMaglevTableSize(t *testing.T) {
	for n, want := range map[uint64]bool{0: false, 1: false, 2: true, 4: false, 65537: true, 65536: false,
		MaxMaglevTableSize: true, MaxMaglevTableSize + 2: false} {
		if got := ValidMaglevTableSize(n); got != want {
			t.Errorf("ValidMaglevTableSize(%d) = %v, want %v", n, got, want)
		}
	}
}
