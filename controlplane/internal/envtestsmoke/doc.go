// Package envtestsmoke checks the control plane's integration-test setup: a real
// kube-apiserver and etcd (built by hack/envtest-assets.sh, found via KUBEBUILDER_ASSETS)
// started by controller-runtime envtest, with Istio's CRDs from the istio.io/api module.
//
// Its test is behind the build tag envtest because it needs those binaries:
//
//	KUBEBUILDER_ASSETS="$(hack/envtest-assets.sh)" go test -tags envtest ./controlplane/...
package envtestsmoke
