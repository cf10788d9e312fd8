//go:build envtest

package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func readText(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// match returns the first submatch of re in s, failing when there is none.
func match(t *testing.T, what, s, re string) string {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("%s: no match for %s", what, re)
	}
	return m[1]
}

// TestImagesConsistent checks that the Dockerfiles, the Makefile, the chart and the Istio
// examples agree: the Envoy contrib release is the one the plugin is built against, the
// plugin lands where the EnvoyFilters look for it, GODEBUG is set, the builder's glibc is not
// newer than proxyv2's, the controller runs as the chart's user, and image names match.
func TestImagesConsistent(t *testing.T) {
	sidecar := readText(t, "deploy/docker/sidecar.Dockerfile")
	controller := readText(t, "deploy/docker/controller.Dockerfile")
	makefile := readText(t, "Makefile")
	values := readYAML(t, filepath.Join(ChartDir, "values.yaml"))

	envoyMod := match(t, "go.mod", readText(t, "go.mod"), `(?m)^\s+github\.com/envoyproxy/envoy (v[0-9.]+)`)
	if got := match(t, "sidecar.Dockerfile", sidecar, `(?m)^ARG ENVOY_VERSION=(\S+)`); got != envoyMod {
		t.Errorf("sidecar Envoy contrib %s, but the plugin is built against Envoy's Go API %s", got, envoyMod)
	}
	istio := match(t, "sidecar.Dockerfile", sidecar, `(?m)^ARG ISTIO_VERSION=(\S+)`)
	if !strings.HasPrefix(istio, "1.28.") || !strings.HasPrefix(envoyMod, "v1.36.") {
		t.Errorf("Istio %s with Envoy %s: Istio 1.28 is the release that ships Envoy 1.36", istio, envoyMod)
	}
	if got := match(t, "Makefile", makefile, `(?m)^ISTIO_VERSION \?= (\S+)`); got != istio {
		t.Errorf("Makefile ISTIO_VERSION %s, Dockerfile %s", got, istio)
	}
	for _, want := range []string{
		"FROM docker.io/istio/proxyv2:${ISTIO_VERSION}\n",
		"COPY --from=envoy /usr/local/bin/envoy /usr/local/bin/envoy\n",
		"ENV GODEBUG=cgocheck=0\n",
		"COPY --from=glibc-check ",
		"-buildmode=c-shared",
	} {
		if !strings.Contains(sidecar, want) {
			t.Errorf("sidecar.Dockerfile lacks %q", want)
		}
	}
	// Debian 12 has glibc 2.36, proxyv2 1.28 (Ubuntu 24.04) 2.39; trixie's 2.41 is too new.
	if got := match(t, "sidecar.Dockerfile", sidecar, `(?m)^FROM \S*golang:\$\{GO_VERSION\}-(\w+) AS plugin`); got != "bookworm" {
		t.Errorf("plugin builder is %s, want bookworm (glibc 2.36 <= proxyv2's 2.39)", got)
	}
	pluginPath, _ := values["istio"].(map[string]any)["pluginPath"].(string)
	if got := match(t, "sidecar.Dockerfile", sidecar, `(?m)^COPY --from=plugin /out/meltemi\.so (\S+)$`); got != pluginPath {
		t.Errorf("the image has the plugin at %s, the chart's istio.pluginPath is %s", got, pluginPath)
	}

	if !strings.Contains(controller, "FROM gcr.io/distroless/static-debian12:nonroot\n") || !strings.Contains(controller, "CGO_ENABLED=0") {
		t.Error("controller.Dockerfile: want a static binary on distroless/static nonroot")
	}
	user := match(t, "controller.Dockerfile", controller, `(?m)^USER (\d+):`)
	if got, _ := values["podSecurityContext"].(map[string]any)["runAsUser"].(float64); user != "65532" || got != 65532 {
		t.Errorf("image user %s, chart runAsUser %v", user, got)
	}

	// Image names: the Makefile's defaults are what the chart and the examples name.
	var chart struct{ AppVersion string }
	if err := yaml.Unmarshal([]byte(readText(t, filepath.Join(ChartDir, "Chart.yaml"))), &chart); err != nil {
		t.Fatal(err)
	}
	registry := match(t, "Makefile", makefile, `(?m)^IMAGE_REGISTRY \?= (\S+)`)
	tag := match(t, "Makefile", makefile, `(?m)^IMAGE_TAG \?= (\S+)`)
	repo, _ := values["image"].(map[string]any)["repository"].(string)
	if repo+":"+chart.AppVersion != registry+"/meltemi-controller:"+tag {
		t.Errorf("chart image %s:%s, make images builds %s/meltemi-controller:%s", repo, chart.AppVersion, registry, tag)
	}
	if want := registry + "/meltemi-proxyv2:" + tag + "-istio" + istio; sidecarImage(t) != want {
		t.Errorf("deploy/istio examples use %s, make images builds %s", sidecarImage(t), want)
	}
}
