package v1alpha1_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	crdvalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"
)

const crdDir = "../../config/crd/"

func loadCRD(t *testing.T, file string) *apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	docs := readDocs(t, crdDir+file)
	if len(docs) != 1 {
		t.Fatalf("%s: %d documents, want 1", file, len(docs))
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := decodeStrict(docs[0], &crd); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return &crd
}

// rules returns the messages of every CEL rule in a schema.
func ruleMessages(s *apiextensionsv1.JSONSchemaProps) []string {
	if s == nil {
		return nil
	}
	var msgs []string
	for _, r := range s.XValidations {
		msgs = append(msgs, r.Message)
	}
	for _, p := range s.Properties {
		msgs = append(msgs, ruleMessages(&p)...)
	}
	if s.Items != nil {
		msgs = append(msgs, ruleMessages(s.Items.Schema)...)
	}
	if s.AdditionalProperties != nil {
		msgs = append(msgs, ruleMessages(s.AdditionalProperties.Schema)...)
	}
	return msgs
}

func TestCRDs(t *testing.T) {
	tests := []struct {
		file, kind, plural string
		columns            map[string]string // name -> JSONPath
		rules              []string          // messages of the CEL rules
	}{
		{
			file: "metaprotocol.meltemi.io_metarouters.yaml", kind: "MetaRouter", plural: "metarouters",
			columns: map[string]string{
				"Hosts":      ".spec.hosts",
				"Accepted":   `.status.conditions[?(@.type=="Accepted")].status`,
				"Programmed": `.status.conditions[?(@.type=="Programmed")].status`,
				"Age":        ".metadata.creationTimestamp",
			},
			rules: []string{
				"exactly one of exact, prefix, regex and present must be set",
				"weights must sum to 100 when there are several destinations",
				"mirrorPercentage needs mirror",
				"timeout must be positive",
				"perTryTimeout must be positive",
				"retryOn timeout needs perTryTimeout",
				"fillInterval must be at least 1ms",
				"requestTimeout must be positive",
				"attribute names must be 1 to 256 characters",
			},
		},
		{
			file: "metaprotocol.meltemi.io_applicationprotocols.yaml", kind: "ApplicationProtocol", plural: "applicationprotocols",
			columns: map[string]string{
				"Protocol": ".spec.protocol",
				"Codec":    ".spec.codec",
				"Accepted": `.status.conditions[?(@.type=="Accepted")].status`,
				"Age":      ".metadata.creationTimestamp",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			crd := loadCRD(t, tt.file)
			if crd.Spec.Group != "metaprotocol.meltemi.io" || crd.Spec.Names.Kind != tt.kind ||
				crd.Spec.Names.Plural != tt.plural || crd.Spec.Scope != apiextensionsv1.NamespaceScoped {
				t.Errorf("group %q kind %q plural %q scope %q", crd.Spec.Group, crd.Spec.Names.Kind, crd.Spec.Names.Plural, crd.Spec.Scope)
			}
			if len(crd.Spec.Versions) != 1 {
				t.Fatalf("%d versions, want 1", len(crd.Spec.Versions))
			}
			v := crd.Spec.Versions[0]
			if v.Name != "v1alpha1" || !v.Served || !v.Storage {
				t.Errorf("version %q served %v storage %v", v.Name, v.Served, v.Storage)
			}
			if v.Subresources == nil || v.Subresources.Status == nil {
				t.Error("no status subresource")
			}
			columns := map[string]string{}
			for _, c := range v.AdditionalPrinterColumns {
				columns[c.Name] = c.JSONPath
			}
			if !mapsEqual(columns, tt.columns) {
				t.Errorf("printer columns %v, want %v", columns, tt.columns)
			}
			msgs := ruleMessages(v.Schema.OpenAPIV3Schema)
			for _, want := range tt.rules {
				if !slices.Contains(msgs, want) {
					t.Errorf("no CEL rule %q; rules: %q", want, msgs)
				}
			}
			status := v.Schema.OpenAPIV3Schema.Properties["status"]
			for _, f := range []string{"conditions", "observedGeneration"} {
				if _, ok := status.Properties[f]; !ok {
					t.Errorf("status has no %s", f)
				}
			}
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func internalCRD(t *testing.T, file string) *apiextensions.CustomResourceDefinition {
	t.Helper()
	var crd apiextensions.CustomResourceDefinition
	if err := apiextensionsv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(loadCRD(t, file), &crd, nil); err != nil {
		t.Fatal(err)
	}
	return &crd
}

// The API server runs this on every CRD it is given: it compiles the CEL rules and rejects
// those whose estimated cost is too high, which bounds on list and string sizes prevent.
func TestCRDsPassAPIServerValidation(t *testing.T) {
	for _, file := range []string{"metaprotocol.meltemi.io_metarouters.yaml", "metaprotocol.meltemi.io_applicationprotocols.yaml"} {
		crd := internalCRD(t, file)
		crd.Status.StoredVersions = []string{"v1alpha1"} // as the API server sets on create
		if errs := crdvalidation.ValidateCustomResourceDefinition(context.Background(), crd); len(errs) > 0 {
			t.Errorf("%s: %v", file, errs.ToAggregate())
		}
	}
}

// validate runs an object through the same OpenAPI and CEL validation the API server applies
// on create.
func validate(t *testing.T, crd *apiextensions.CustomResourceDefinition, doc string) field.ErrorList {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any // integers as int64, as the API server decodes them
	if err := json.Unmarshal(js, &obj); err != nil {
		t.Fatal(err)
	}
	// The internal version holds a schema shared by all versions at the top.
	s := crd.Spec.Validation.OpenAPIV3Schema
	sv, _, err := validation.NewSchemaValidator(s)
	if err != nil {
		t.Fatal(err)
	}
	errs := validation.ValidateCustomResource(nil, obj, sv)
	structural, err := schema.NewStructural(s)
	if err != nil {
		t.Fatal(err)
	}
	celErrs, _ := cel.NewValidator(structural, true, celconfig.PerCallLimit).
		Validate(context.Background(), nil, structural, obj, nil, celconfig.RuntimeCELCostBudget)
	return append(errs, celErrs...)
}

func TestValidObjectsAreAccepted(t *testing.T) {
	crd := internalCRD(t, "metaprotocol.meltemi.io_metarouters.yaml")
	docs := append(readDocs(t, "testdata/aeraki-metarouters.yaml"), readDocs(t, "testdata/meltemi-metarouter.yaml")...)
	for _, doc := range docs {
		if errs := validate(t, crd, string(doc)); len(errs) > 0 {
			t.Errorf("%v in:\n%s", errs.ToAggregate(), doc)
		}
	}
	ap := internalCRD(t, "metaprotocol.meltemi.io_applicationprotocols.yaml")
	if errs := validate(t, ap, "spec: {protocol: trpc, codec: trpc}"); len(errs) > 0 {
		t.Error(errs.ToAggregate())
	}
}

func TestInvalidObjectsAreRejected(t *testing.T) {
	const dest = "route: [{destination: {host: h}}]"
	tests := []struct {
		name, spec, want string
	}{
		{"no hosts", "hosts: []", "spec.hosts"},
		{"empty host", `hosts: [""]`, "spec.hosts[0]"},
		{"two matchers", `routes: [{match: {attributes: {method: {exact: a, prefix: b}}}, ` + dest + `}]`,
			"exactly one of exact, prefix, regex and present must be set"},
		{"no matcher", `routes: [{match: {attributes: {method: {invert: true}}}, ` + dest + `}]`,
			"exactly one of exact, prefix, regex and present must be set"},
		{"empty attribute name", `routes: [{match: {attributes: {"": {exact: a}}}, ` + dest + `}]`,
			"attribute names must be 1 to 256 characters"},
		{"no destination", "routes: [{name: r, route: []}]", "spec.routes[0].route"},
		{"global rate limit without descriptors", "globalRateLimit: {domain: d, rateLimitService: rls, descriptors: []}",
			"spec.globalRateLimit.descriptors"},
		{"global rate limit descriptors missing", "globalRateLimit: {domain: d, rateLimitService: rls}",
			"spec.globalRateLimit.descriptors"},
		{"weights not 100", "routes: [{route: [{destination: {host: a}, weight: 20}, {destination: {host: b}, weight: 70}]}]",
			"weights must sum to 100 when there are several destinations"},
		{"weight over 100", "routes: [{route: [{destination: {host: a}, weight: 120}]}]", "spec.routes[0].route[0].weight"},
		{"port 0", "routes: [{route: [{destination: {host: a, port: {number: 0}}}]}]", "spec.routes[0].route[0].destination.port.number"},
		{"mirror percentage over 100", "routes: [{" + dest + ", mirror: {host: m}, mirrorPercentage: {value: 150}}]",
			"spec.routes[0].mirrorPercentage.value"},
		{"mirror percentage without mirror", "routes: [{" + dest + ", mirrorPercentage: {value: 10}}]", "mirrorPercentage needs mirror"},
		{"mutation without key", "routes: [{" + dest + ", requestMutation: [{value: v}]}]", "spec.routes[0].requestMutation[0].key"},
		{"malformed timeout", "routes: [{" + dest + ", timeout: soon}]", "spec.routes[0].timeout"},
		{"zero timeout", "routes: [{" + dest + ", timeout: 0s}]", "timeout must be positive"},
		{"too many retries", "routes: [{" + dest + ", retries: {attempts: 11}}]", "spec.routes[0].retries.attempts"},
		{"unknown retry condition", "routes: [{" + dest + ", retries: {attempts: 1, retryOn: [always]}}]", "spec.routes[0].retries.retryOn[0]"},
		{"retry on timeout without per-try timeout", "routes: [{" + dest + ", retries: {attempts: 1, retryOn: [timeout]}}]",
			"retryOn timeout needs perTryTimeout"},
		{"empty token bucket", "localRateLimit: {tokenBucket: {maxTokens: 0, fillInterval: 1s}}", "spec.localRateLimit.tokenBucket.maxTokens"},
		{"tiny fill interval", "localRateLimit: {tokenBucket: {maxTokens: 1, fillInterval: 1us}}", "fillInterval must be at least 1ms"},
		{"global rate limit without domain", "globalRateLimit: {rateLimitService: rls}", "spec.globalRateLimit.domain"},
	}
	crd := internalCRD(t, "metaprotocol.meltemi.io_metarouters.yaml")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.spec
			if !strings.HasPrefix(spec, "hosts:") {
				spec = "hosts: [h], " + spec
			}
			errs := validate(t, crd, "spec: {"+spec+"}")
			if len(errs) == 0 {
				t.Fatalf("spec {%s} accepted", spec)
			}
			if !strings.Contains(errs.ToAggregate().Error(), tt.want) {
				t.Errorf("errors %q do not mention %q", errs.ToAggregate(), tt.want)
			}
		})
	}

	ap := internalCRD(t, "metaprotocol.meltemi.io_applicationprotocols.yaml")
	for _, spec := range []string{"{protocol: Dubbo_2, codec: dubbo}", "{protocol: trpc}", "{protocol: trpc, codec: ''}"} {
		if errs := validate(t, ap, "spec: "+spec); len(errs) == 0 {
			t.Errorf("ApplicationProtocol spec %s accepted", spec)
		}
	}
}
