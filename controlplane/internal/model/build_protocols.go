package model

import (
	"strings"

	v1alpha1 "github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
)

// Protocols maps an application protocol name to the name of the plugin codec that speaks
// it.
type Protocols map[string]string

// BuiltinProtocols are the protocols known without any ApplicationProtocol.
func BuiltinProtocols() Protocols {
	return Protocols{"dubbo": "dubbo", "thrift": "thrift"}
}

// PortProtocol tells whether a service port speaks a Meltemi protocol, from its appProtocol
// or else its name:
//
//   - a name (or appProtocol) "tcp-dubbo" or "tcp-thrift", alone or followed by "-anything"
//     (Aeraki's and Istio's convention), names dubbo or thrift;
//   - "tcp-metaprotocol-<protocol>[-anything]" (Aeraki's convention) names <protocol>;
//   - an appProtocol that is itself a known protocol name ("dubbo") names it. A protocol
//     whose name has a "-" can only be named this way.
//
// meltemi is false for every other port (HTTP, plain TCP, ...): it is not Meltemi's.
// Otherwise protocol is the protocol and codec its codec, or "" when the port names a
// metaprotocol that p does not know. An appProtocol that names a Meltemi protocol wins over
// the name (as in Kubernetes); one that does not (e.g. "http") leaves the decision to the
// name. Matching ignores case.
func (p Protocols) PortProtocol(name, appProtocol string) (protocol, codec string, meltemi bool) {
	if appProtocol != "" {
		app := strings.ToLower(appProtocol)
		if proto, ok := protocolFromName(app); ok {
			return proto, p[proto], true
		}
		if c, ok := p[app]; ok {
			return app, c, true
		}
	}
	if proto, ok := protocolFromName(strings.ToLower(name)); ok {
		return proto, p[proto], true
	}
	return "", "", false
}

// protocolFromName parses Aeraki's port names; name is lower case.
func protocolFromName(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, "tcp-")
	if !ok {
		return "", false
	}
	if meta, ok := strings.CutPrefix(rest, "metaprotocol"); ok && (meta == "" || meta[0] == '-') {
		meta = strings.TrimPrefix(meta, "-")
		proto, _, _ := strings.Cut(meta, "-")
		return proto, true
	}
	proto, _, _ := strings.Cut(rest, "-")
	if proto == "dubbo" || proto == "thrift" {
		return proto, true
	}
	return "", false
}

// buildProtocols adds the ApplicationProtocols to the built-in protocols. An
// ApplicationProtocol may override a built-in one; of two for the same protocol, the oldest
// wins.
func (b *builder) buildProtocols() Protocols {
	p := BuiltinProtocols()
	aps := sortedCopy(b.in.ApplicationProtocols, func(x, y *v1alpha1.ApplicationProtocol) int {
		return olderFirst(&x.ObjectMeta, &y.ObjectMeta)
	})
	owner := make(map[string]ObjectRef, len(aps))
	for _, ap := range aps {
		ref := b.ref(GroupMeltemi, KindApplicationProtocol, &ap.ObjectMeta)
		b.appProtocols = append(b.appProtocols, ref)
		proto := strings.ToLower(ap.Spec.Protocol)
		if proto == "" || ap.Spec.Codec == "" {
			b.notAccepted(ref, ReasonInvalid, "spec.protocol and spec.codec must both be set (got %q -> %q)", ap.Spec.Protocol, ap.Spec.Codec)
			continue
		}
		if w, ok := owner[proto]; ok {
			b.notAccepted(ref, ReasonConflicted, "protocol %q is already declared by the older %s", proto, w)
			continue
		}
		owner[proto] = ref
		p[proto] = ap.Spec.Codec
	}
	return p
}
