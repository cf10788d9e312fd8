//go:build envtest

package main

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/source/kube"
	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
)

const kubeMetaRouter = `apiVersion: metaprotocol.meltemi.io/v1alpha1
kind: MetaRouter
metadata: {name: echo, namespace: demo}
spec:
  hosts: [echo.demo.svc.cluster.local]
  routes:
  - name: to-echo
    route:
    - destination:
        host: echo.demo.svc.cluster.local
        port: {number: 20880}
`

// TestRunKubeSource runs the program with --source=kube against a real kube-apiserver and
// etcd, through a kubeconfig file as an operator would: a Service, its EndpointSlice and a
// MetaRouter become a route configuration over ADS, and once the client ACKs it the
// MetaRouter's status says Programmed.
func TestRunKubeSource(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal(`KUBEBUILDER_ASSETS is unset: run with KUBEBUILDER_ASSETS="$(hack/envtest-assets.sh)"`)
	}
	ctrllog.SetLogger(logr.Discard())
	_, file, _, _ := runtime.Caller(0)
	te := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(filepath.Dir(file), "..", "..", "config", "crd")},
		ErrorIfCRDPathMissing: true,
	}
	if _, err := te.Start(); err != nil {
		t.Fatalf("start kube-apiserver and etcd: %v", err)
	}
	defer func() {
		if err := te.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()
	user, err := te.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	scheme, err := kube.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(user.Config(), client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	mr := &v1alpha1.MetaRouter{}
	if err := yaml.UnmarshalStrict([]byte(kubeMetaRouter), mr); err != nil {
		t.Fatal(err)
	}
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}},
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "demo"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "tcp-dubbo", Port: 20880}}},
		},
		&discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: "echo-1", Namespace: "demo",
				Labels: map[string]string{discoveryv1.LabelServiceName: "echo"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("tcp-dubbo"), Port: ptr.To[int32](20880)}},
		},
		mr,
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("create %T: %v", o, err)
		}
	}

	logs := &syncBuffer{}
	bound := make(chan addrs, 1)
	done := make(chan error, 1)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		done <- run(runCtx, []string{"--source=kube", "--kubeconfig=" + kubeconfig, "--namespaces=demo",
			"--xds-address=127.0.0.1:0", "--metrics-address=127.0.0.1:0", "--log-level=debug",
			// No Istio CRDs here (Istio mode is tested in controlplane/internal/istio); the
			// Lease goes into a namespace that exists.
			"--istio=false", "--leader-election-namespace=demo"},
			func(string) string { return "" }, logs, func(a addrs) { bound <- a })
	}()
	var a addrs
	select {
	case a = <-bound:
	case err := <-done:
		t.Fatalf("run: %v\n%s", err, logs)
	case <-time.After(30 * time.Second):
		t.Fatal("not listening")
	}

	conn, err := grpc.NewClient("passthrough:///"+a.XDS.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(runCtx)
	if err != nil {
		t.Fatal(err)
	}
	name := apiv1alpha1.ResourceName(apiv1alpha1.Outbound, 20880, "", "echo.demo.svc.cluster.local")
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "kube-test"},
		TypeUrl: apiv1alpha1.RouteConfigurationTypeURL, ResourceNames: []string{name}}); err != nil {
		t.Fatal(err)
	}
	found := false
	for deadline := time.Now().Add(30 * time.Second); !found && time.Now().Before(deadline); {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("recv: %v\n%s", err, logs)
		}
		if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resp.TypeUrl, ResourceNames: []string{name},
			VersionInfo: resp.VersionInfo, ResponseNonce: resp.Nonce}); err != nil {
			t.Fatal(err)
		}
		for _, res := range resp.Resources {
			rc := &apiv1alpha1.RouteConfiguration{}
			if err := res.UnmarshalTo(rc); err != nil {
				t.Fatal(err)
			}
			found = rc.Name == name && len(rc.Routes) == 1 && rc.Routes[0].Name == "to-echo"
		}
	}
	if !found {
		t.Fatalf("no route configuration %s with the MetaRouter's route\n%s", name, logs)
	}

	// The ACK reaches the MetaRouter's status.
	var cond *metav1.Condition
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		got := &v1alpha1.MetaRouter{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "demo", Name: "echo"}, got); err != nil {
			t.Fatal(err)
		}
		cond = meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionProgrammed)
		if cond != nil && cond.Status == metav1.ConditionTrue {
			break
		}
	}
	if cond == nil || cond.Status != metav1.ConditionTrue {
		t.Fatalf("MetaRouter Programmed condition %+v, want True\n%s", cond, logs)
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}
