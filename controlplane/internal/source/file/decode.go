package file

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
)

// aerakiGroup is the API group of Aeraki's MetaRouter, read as ours.
const aerakiGroup = "metaprotocol.aeraki.io"

// object is one decoded, validated object of a file.
type object struct {
	// key is "Kind/namespace/name", the key of model.Inputs.Files.
	key string
	obj any
}

// decoder turns the bytes of a file into objects. It holds the compiled validators of the
// CRDs, which are expensive to build and safe to share.
type decoder struct {
	metaRouter, appProtocol *crdValidator
}

func newDecoder() (*decoder, error) {
	mr, err := newCRDValidator("metaprotocol.meltemi.io_metarouters.yaml")
	if err != nil {
		return nil, err
	}
	ap, err := newCRDValidator("metaprotocol.meltemi.io_applicationprotocols.yaml")
	if err != nil {
		return nil, err
	}
	return &decoder{metaRouter: mr, appProtocol: ap}, nil
}

// decodeFile decodes and validates every document of a file. A file is all or nothing: the
// first invalid document makes the whole file invalid, so that a half-applied file never
// leaves a MetaRouter pointing at a DestinationRule subset that did not load. Warnings name
// the documents that were skipped (kinds this source does not read).
func (d *decoder) decodeFile(data []byte) (objs []object, warnings []string, err error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	seen := map[string]bool{}
	for i := 1; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, warnings, nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("document %d: %w", i, err)
		}
		obj, warning, err := d.decodeDocument(doc)
		if err != nil {
			return nil, nil, fmt.Errorf("document %d: %w", i, err)
		}
		if warning != "" {
			warnings = append(warnings, fmt.Sprintf("document %d: %s", i, warning))
		}
		if obj == nil {
			continue
		}
		if seen[obj.key] {
			return nil, nil, fmt.Errorf("document %d: %s is defined twice in this file", i, obj.key)
		}
		seen[obj.key] = true
		objs = append(objs, *obj)
	}
}

// decodeDocument decodes one YAML document. It returns a nil object for an empty document and
// for a kind this source skips (with a warning).
func (d *decoder) decodeDocument(doc []byte) (*object, string, error) {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		// On one line: the YAML library's multi-line messages make unreadable logs. Its line
		// numbers count from the start of the document.
		return nil, "", fmt.Errorf("not YAML: %s", strings.Join(strings.Fields(err.Error()), " "))
	}
	js = bytes.TrimSpace(js)
	if bytes.Equal(js, []byte("null")) { // only comments, or nothing
		return nil, "", nil
	}
	if len(js) == 0 || js[0] != '{' {
		return nil, "", errors.New("not an object (a Kubernetes manifest is a mapping with apiVersion and kind)")
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		return nil, "", fmt.Errorf("apiVersion and kind: %w", err)
	}
	if tm.APIVersion == "" || tm.Kind == "" {
		return nil, "", errors.New("apiVersion and kind are required")
	}
	gv, err := schema.ParseGroupVersion(tm.APIVersion)
	if err != nil {
		return nil, "", fmt.Errorf("apiVersion: %w", err)
	}

	obj, warning, err := d.decodeKind(js, gv, tm.Kind)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", describe(tm.Kind, js), err)
	}
	return obj, warning, nil
}

// decodeKind decodes a document of a given apiVersion and kind.
func (d *decoder) decodeKind(js []byte, gv schema.GroupVersion, kind string) (*object, string, error) {
	switch gk := (schema.GroupKind{Group: gv.Group, Kind: kind}); gk {
	case schema.GroupKind{Group: v1alpha1.GroupVersion.Group, Kind: "MetaRouter"},
		schema.GroupKind{Group: aerakiGroup, Kind: "MetaRouter"}:
		if gv.Version != "v1alpha1" {
			return nil, "", unsupportedVersion(gv, gk, "v1alpha1")
		}
		mr := &v1alpha1.MetaRouter{}
		if err := d.decodeCustomResource(js, mr, &mr.ObjectMeta, d.metaRouter); err != nil {
			return nil, "", err
		}
		return newObject(gk.Kind, &mr.ObjectMeta, mr), "", nil

	case schema.GroupKind{Group: v1alpha1.GroupVersion.Group, Kind: "ApplicationProtocol"}:
		if gv.Version != "v1alpha1" {
			return nil, "", unsupportedVersion(gv, gk, "v1alpha1")
		}
		ap := &v1alpha1.ApplicationProtocol{}
		if err := d.decodeCustomResource(js, ap, &ap.ObjectMeta, d.appProtocol); err != nil {
			return nil, "", err
		}
		return newObject(gk.Kind, &ap.ObjectMeta, ap), "", nil

	case schema.GroupKind{Kind: "Service"}:
		if gv.Version != "v1" {
			return nil, "", unsupportedVersion(gv, gk, "v1")
		}
		svc := &corev1.Service{}
		if err := decodeKube(js, svc, &svc.ObjectMeta, apivalidation.NameIsDNS1035Label); err != nil {
			return nil, "", err
		}
		return newObject(gk.Kind, &svc.ObjectMeta, svc), "", nil

	case schema.GroupKind{Kind: "Pod"}:
		if gv.Version != "v1" {
			return nil, "", unsupportedVersion(gv, gk, "v1")
		}
		// The whole Pod is decoded, strictly, so that a Pod manifest copied from a cluster
		// is accepted; only its metadata is kept.
		pod := &corev1.Pod{}
		if err := decodeKube(js, pod, &pod.ObjectMeta, apivalidation.NameIsDNSSubdomain); err != nil {
			return nil, "", err
		}
		meta := &metav1.PartialObjectMetadata{TypeMeta: pod.TypeMeta, ObjectMeta: pod.ObjectMeta}
		return newObject(gk.Kind, &meta.ObjectMeta, meta), "", nil

	case schema.GroupKind{Group: discoveryv1.GroupName, Kind: "EndpointSlice"}:
		if gv.Version != "v1" {
			return nil, "", unsupportedVersion(gv, gk, "v1")
		}
		es := &discoveryv1.EndpointSlice{}
		if err := decodeKube(js, es, &es.ObjectMeta, apivalidation.NameIsDNSSubdomain); err != nil {
			return nil, "", err
		}
		return newObject(gk.Kind, &es.ObjectMeta, es), "", nil

	case schema.GroupKind{Group: networkingv1.SchemeGroupVersion.Group, Kind: "ServiceEntry"},
		schema.GroupKind{Group: networkingv1.SchemeGroupVersion.Group, Kind: "WorkloadEntry"},
		schema.GroupKind{Group: networkingv1.SchemeGroupVersion.Group, Kind: "DestinationRule"}:
		switch gv.Version {
		case "v1alpha3", "v1beta1", "v1":
		default:
			return nil, "", unsupportedVersion(gv, gk, "v1alpha3, v1beta1 or v1")
		}
		return decodeIstio(js, gk.Kind)
	}
	return nil, fmt.Sprintf("%s %s skipped: not a kind this source reads", gv, kind), nil
}

func unsupportedVersion(gv schema.GroupVersion, gk schema.GroupKind, want string) error {
	return fmt.Errorf("%s of version %s is not supported (want %s)", gk, gv.Version, want)
}

func newObject(kind string, meta *metav1.ObjectMeta, obj any) *object {
	return &object{key: kind + "/" + meta.Namespace + "/" + meta.Name, obj: obj}
}

// decodeStrict decodes JSON into v, rejecting fields v has no place for and fields given
// twice. The errors name the path of the field, as kubectl's server-side field validation
// does.
func decodeStrict(js []byte, v any) error {
	strict, err := kjson.UnmarshalStrict(js, v, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return joinErrors(strict)
}

// joinErrors joins errors on one line, as log lines want.
func joinErrors(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return errors.New(strings.Join(msgs, "; "))
}

// defaultNamespace puts an object without namespace in "default", as kubectl apply does.
func defaultNamespace(meta *metav1.ObjectMeta) {
	if meta.Namespace == "" {
		meta.Namespace = metav1.NamespaceDefault
	}
}

// validateMeta applies the API server's metadata rules, and requires a name (the API server
// would generate one from generateName; a file source cannot keep a generated name stable).
func validateMeta(meta *metav1.ObjectMeta, name apivalidation.ValidateNameFunc) field.ErrorList {
	errs := apivalidation.ValidateObjectMetaAccessor(meta, true, name, field.NewPath("metadata"))
	if meta.Name == "" && meta.GenerateName != "" {
		errs = append(errs, field.Required(field.NewPath("metadata", "name"), "generateName is not supported in files"))
	}
	return errs
}

// describe names an object in errors, from a lenient read of its metadata (the strict one
// may be what failed).
func describe(kind string, js []byte) string {
	var obj struct {
		Metadata struct{ Name, Namespace string }
	}
	_ = json.Unmarshal(js, &obj)
	switch {
	case obj.Metadata.Name == "":
		return kind
	case obj.Metadata.Namespace == "":
		return kind + " " + metav1.NamespaceDefault + "/" + obj.Metadata.Name
	}
	return kind + " " + obj.Metadata.Namespace + "/" + obj.Metadata.Name
}

// decodeKube decodes a built-in Kubernetes object.
func decodeKube(js []byte, obj any, meta *metav1.ObjectMeta, name apivalidation.ValidateNameFunc) error {
	if err := decodeStrict(js, obj); err != nil {
		return err
	}
	defaultNamespace(meta)
	if errs := validateMeta(meta, name); len(errs) > 0 {
		return errs.ToAggregate()
	}
	return nil
}

// decodeCustomResource decodes a MetaRouter or ApplicationProtocol and validates it as the
// API server validates a custom resource on create.
func (d *decoder) decodeCustomResource(js []byte, obj any, meta *metav1.ObjectMeta, v *crdValidator) error {
	if err := decodeStrict(js, obj); err != nil {
		return err
	}
	defaultNamespace(meta)
	if errs := validateMeta(meta, apivalidation.NameIsDNSSubdomain); len(errs) > 0 {
		return errs.ToAggregate()
	}
	if errs := v.validate(js); len(errs) > 0 {
		return errs.ToAggregate()
	}
	return nil
}

// istioObject is the envelope of an Istio object: its spec is a protobuf message, decoded
// with protojson once the envelope has been decoded strictly.
type istioObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              json.RawMessage `json:"spec,omitempty"`
	// Status is accepted (manifests exported from a cluster have one) and ignored.
	Status json.RawMessage `json:"status,omitempty"`
}

// decodeIstio decodes a ServiceEntry, WorkloadEntry or DestinationRule of any served version
// into its networking/v1 type (the spec message is the same for all versions).
func decodeIstio(js []byte, kind string) (*object, string, error) {
	var env istioObject
	if err := decodeStrict(js, &env); err != nil {
		return nil, "", err
	}
	defaultNamespace(&env.ObjectMeta)
	if errs := validateMeta(&env.ObjectMeta, apivalidation.NameIsDNSSubdomain); len(errs) > 0 {
		return nil, "", errs.ToAggregate()
	}
	var (
		obj  any
		spec proto.Message
	)
	switch kind {
	case "ServiceEntry":
		se := &networkingv1.ServiceEntry{TypeMeta: env.TypeMeta, ObjectMeta: env.ObjectMeta}
		obj, spec = se, &se.Spec
	case "WorkloadEntry":
		we := &networkingv1.WorkloadEntry{TypeMeta: env.TypeMeta, ObjectMeta: env.ObjectMeta}
		obj, spec = we, &we.Spec
	default:
		dr := &networkingv1.DestinationRule{TypeMeta: env.TypeMeta, ObjectMeta: env.ObjectMeta}
		obj, spec = dr, &dr.Spec
	}
	if len(env.Spec) > 0 && !bytes.Equal(env.Spec, []byte("null")) {
		var generic any
		if err := json.Unmarshal(env.Spec, &generic); err != nil {
			return nil, "", fmt.Errorf("spec: %w", err)
		}
		// protojson rejects unknown fields too, but without saying where they are.
		if err := joinErrors(unknownProtoFields(generic, spec.ProtoReflect().Descriptor(), field.NewPath("spec"))); err != nil {
			return nil, "", err
		}
		if err := protojson.Unmarshal(env.Spec, spec); err != nil {
			return nil, "", fmt.Errorf("spec: %w", err)
		}
	}
	var errs field.ErrorList
	switch o := obj.(type) {
	case *networkingv1.ServiceEntry:
		errs = validateServiceEntry(&o.Spec)
	case *networkingv1.WorkloadEntry:
		errs = validateWorkloadEntry(&o.Spec, field.NewPath("spec"))
	case *networkingv1.DestinationRule:
		errs = validateDestinationRule(&o.Spec)
	}
	if len(errs) > 0 {
		return nil, "", errs.ToAggregate()
	}
	return newObject(kind, &env.ObjectMeta, obj), "", nil
}
