// Command render-chart regenerates the deployment artefacts derived from others (make
// generate): it copies controlplane/config/crd into the Helm chart's crds/ directory and
// renders the chart with its default values into deploy/manifests/meltemi.yaml. Run it from
// the repository root, or pass the root as the only argument.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/meltemi-mesh/meltemi/e2e/deploy"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "render-chart:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	root := "."
	switch len(args) {
	case 0:
	case 1:
		root = args[0]
	default:
		return fmt.Errorf("usage: render-chart [repository root]")
	}
	if err := deploy.CopyCRDs(root); err != nil {
		return err
	}
	m, err := deploy.Manifests(root)
	if err != nil {
		return err
	}
	out := filepath.Join(root, deploy.ManifestsFile)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(out), err)
	}
	if err := os.WriteFile(out, m, 0o644); err != nil {
		return fmt.Errorf("write manifests: %w", err)
	}
	return nil
}
