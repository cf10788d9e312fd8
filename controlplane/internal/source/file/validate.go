package file

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	"istio.io/api/networking/v1alpha3"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"

	"github.com/meltemi-mesh/meltemi/controlplane/config/crd"
)

// crdValidator applies the validation of one CRD: its OpenAPI schema, list-type invariants
// and CEL rules, in the order and with the cost limits of the API server's create path
// (k8s.io/apiextensions-apiserver/pkg/registry/customresource).
type crdValidator struct {
	schema     validation.SchemaValidator
	structural *schema.Structural
	cel        *cel.Validator
}

// newCRDValidator compiles the validation of an embedded CRD manifest.
func newCRDValidator(file string) (*crdValidator, error) {
	data, err := crd.FS.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("CRD %s: %w", file, err)
	}
	var v1 apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(data, &v1); err != nil {
		return nil, fmt.Errorf("CRD %s: %w", file, err)
	}
	var internal apiextensions.CustomResourceDefinition
	if err := apiextensionsv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(&v1, &internal, nil); err != nil {
		return nil, fmt.Errorf("CRD %s: %w", file, err)
	}
	// A CRD with one version, or with the same schema in all, has it at the top of the
	// internal form.
	s := internal.Spec.Validation
	if s == nil && len(internal.Spec.Versions) == 1 {
		s = internal.Spec.Versions[0].Schema
	}
	if s == nil || s.OpenAPIV3Schema == nil {
		return nil, fmt.Errorf("CRD %s: no schema", file)
	}
	sv, _, err := validation.NewSchemaValidator(s.OpenAPIV3Schema)
	if err != nil {
		return nil, fmt.Errorf("CRD %s: schema: %w", file, err)
	}
	structural, err := schema.NewStructural(s.OpenAPIV3Schema)
	if err != nil {
		return nil, fmt.Errorf("CRD %s: structural schema: %w", file, err)
	}
	return &crdValidator{
		schema:     sv,
		structural: structural,
		cel:        cel.NewValidator(structural, true, celconfig.PerCallLimit),
	}, nil
}

// validate validates an object given as JSON.
func (v *crdValidator) validate(js []byte) field.ErrorList {
	var obj map[string]any // integers as int64, as the API server decodes them
	if err := utiljson.Unmarshal(js, &obj); err != nil {
		return field.ErrorList{field.Invalid(nil, nil, err.Error())}
	}
	errs := validation.ValidateCustomResource(nil, obj, v.schema)
	errs = append(errs, listtype.ValidateListSetsAndMaps(nil, v.structural, obj)...)
	// The API server skips CEL when the schema already found the object malformed: rules
	// may assume what the schema guarantees.
	for _, e := range errs {
		switch e.Type {
		case field.ErrorTypeNotSupported, field.ErrorTypeRequired, field.ErrorTypeTooLong, field.ErrorTypeTooMany, field.ErrorTypeTypeInvalid:
			return errs
		}
	}
	celErrs, _ := v.cel.Validate(context.Background(), nil, v.structural, obj, nil, celconfig.RuntimeCELCostBudget)
	return append(errs, celErrs...)
}

// unknownProtoFields returns an error for every field of a JSON value that the protobuf
// message it is decoded into does not have, named by its path. Well-known types
// (google.protobuf.*) have their own JSON forms and are left to protojson.
func unknownProtoFields(v any, md protoreflect.MessageDescriptor, path *field.Path) []error {
	if strings.HasPrefix(string(md.FullName()), "google.protobuf.") {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil // a type mismatch, which protojson reports
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var errs []error
	for _, k := range keys {
		fd := md.Fields().ByJSONName(k)
		if fd == nil {
			fd = md.Fields().ByName(protoreflect.Name(k))
		}
		p := path.Child(k)
		switch {
		case fd == nil:
			errs = append(errs, fmt.Errorf("unknown field %q", p.String()))
		case fd.IsMap():
			if fd.MapValue().Kind() != protoreflect.MessageKind {
				continue
			}
			if entries, ok := m[k].(map[string]any); ok {
				mkeys := make([]string, 0, len(entries))
				for mk := range entries {
					mkeys = append(mkeys, mk)
				}
				slices.Sort(mkeys)
				for _, mk := range mkeys {
					errs = append(errs, unknownProtoFields(entries[mk], fd.MapValue().Message(), p.Key(mk))...)
				}
			}
		case fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind:
		case fd.IsList():
			if items, ok := m[k].([]any); ok {
				for i, item := range items {
					errs = append(errs, unknownProtoFields(item, fd.Message(), p.Index(i))...)
				}
			}
		default:
			errs = append(errs, unknownProtoFields(m[k], fd.Message(), p)...)
		}
	}
	return errs
}

// The Istio objects are checked for what the model cannot do without; Istio's own
// validation (istio.io/istio, far too big a dependency) has many more rules.

func validateServiceEntry(se *v1alpha3.ServiceEntry) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	if len(se.GetHosts()) == 0 {
		errs = append(errs, field.Required(spec.Child("hosts"), "a ServiceEntry needs at least one host"))
	}
	for i, h := range se.GetHosts() {
		if h == "" {
			errs = append(errs, field.Invalid(spec.Child("hosts").Index(i), h, "must not be empty"))
		}
	}
	numbers := map[uint32]bool{}
	for i, p := range se.GetPorts() {
		pp := spec.Child("ports").Index(i)
		errs = append(errs, validatePort(pp.Child("number"), p.GetNumber())...)
		if p.GetTargetPort() != 0 {
			errs = append(errs, validatePort(pp.Child("targetPort"), p.GetTargetPort())...)
		}
		if p.GetName() == "" {
			errs = append(errs, field.Required(pp.Child("name"), "the name says which protocol the port speaks"))
		}
		if numbers[p.GetNumber()] {
			errs = append(errs, field.Duplicate(pp.Child("number"), p.GetNumber()))
		}
		numbers[p.GetNumber()] = true
	}
	if len(se.GetEndpoints()) > 0 && se.GetWorkloadSelector() != nil {
		errs = append(errs, field.Forbidden(spec.Child("workloadSelector"), "endpoints and workloadSelector are mutually exclusive"))
	}
	for i, ep := range se.GetEndpoints() {
		errs = append(errs, validateWorkloadEntry(ep, spec.Child("endpoints").Index(i))...)
		if se.GetResolution() == v1alpha3.ServiceEntry_STATIC && ep.GetAddress() != "" && !strings.HasPrefix(ep.GetAddress(), "unix://") {
			if _, err := netip.ParseAddr(ep.GetAddress()); err != nil {
				errs = append(errs, field.Invalid(spec.Child("endpoints").Index(i).Child("address"), ep.GetAddress(),
					"resolution STATIC needs IP addresses"))
			}
		}
	}
	return errs
}

// validateWorkloadEntry checks a WorkloadEntry, or an endpoint of a ServiceEntry (the same
// message).
func validateWorkloadEntry(we *v1alpha3.WorkloadEntry, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if we.GetAddress() == "" && we.GetNetwork() == "" {
		errs = append(errs, field.Required(path.Child("address"), "an address is needed unless a network is given"))
	}
	names := make([]string, 0, len(we.GetPorts()))
	for name := range we.GetPorts() {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		errs = append(errs, validatePort(path.Child("ports").Key(name), we.GetPorts()[name])...)
	}
	return errs
}

func validateDestinationRule(dr *v1alpha3.DestinationRule) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	if dr.GetHost() == "" {
		errs = append(errs, field.Required(spec.Child("host"), "the service the rule applies to"))
	}
	names := map[string]bool{}
	for i, s := range dr.GetSubsets() {
		sp := spec.Child("subsets").Index(i).Child("name")
		switch {
		case s.GetName() == "":
			errs = append(errs, field.Required(sp, "routes name the subset"))
		case names[s.GetName()]:
			errs = append(errs, field.Duplicate(sp, s.GetName()))
		}
		names[s.GetName()] = true
	}
	return errs
}

func validatePort(path *field.Path, n uint32) field.ErrorList {
	if n == 0 || n > 65535 {
		return field.ErrorList{field.Invalid(path, n, "must be between 1 and 65535")}
	}
	return nil
}
