// Package envtest holds the controller's tests against a real kube-apiserver and etcd
// (controller-runtime envtest, build tag envtest): the Kubernetes source, the controller and
// the xDS server run as the binary runs them, and a real ADS client checks what they serve.
//
//	KUBEBUILDER_ASSETS="$(hack/envtest-assets.sh)" go test -tags envtest ./controlplane/test/envtest/
package envtest
