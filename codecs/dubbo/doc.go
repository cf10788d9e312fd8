// Package dubbo is Meltemi's codec for the Dubbo 2 protocol ("dubbo://"), with hessian2
// bodies: it frames the byte stream, exposes the routing attributes of requests, rewrites
// request ids, applies attachment mutations and builds local replies. Register it as
// dubbo.Factory{} under the name "dubbo". It takes no Options.Params.
//
// # Framing
//
// Every frame is a 16-byte header and a body: magic 0xdabb, a flags byte (0x80 request, 0x40
// two-way, 0x20 event, low 5 bits the serialization id, 2 for hessian2), a status byte (on
// responses), an 8-byte request id and a 4-byte body length. Decode checks the declared size
// against Options.MaxFrameSize from the header alone, before the body is buffered.
//
// Kinds: a request with the two-way flag is KindRequest, without it KindOneway; an event
// request is KindHeartbeatRequest (Dubbo's other event, the read-only notice, is an event
// too and is classified the same way) and an event response KindHeartbeatResponse. A
// response is KindErrorResponse when its status is not 20 (OK) or when its hessian2 body
// starts with an exception response type (0 or 3); otherwise it is KindResponse. For
// serializations other than hessian2 the response type cannot be read, so a status-20
// response is KindResponse.
//
// Mode is always "dubbo": there is one framing, known before the first byte, and the
// serialization is chosen per frame, so streams never need separate upstream connections.
//
// # Attributes
//
// Attributes are read lazily: Decode only checks the header (and, for a status-20 hessian2
// response, the response type) and copies the bytes. The first Attribute call parses what
// it needs: the five leading strings of the request body for the built-in names below, and
// the attachments for everything else. The attachments are reached without materialising
// the arguments: a hessian2 skipper (internal/hessian) steps over as many argument values as
// the parameter types descriptor lists. Strings are returned without copying when they are a
// single chunk of plain UTF-8 (they point into the frame's own bytes, which are never
// modified except the request id).
//
//	service, interface   the service path (interface is Aeraki's name for it)
//	method               the method name
//	version              the service version ("" when the client sent "" or hessian null)
//	group                the "group" attachment
//	param_types          the parameter types descriptor, e.g. "Ljava/lang/String;I"
//	dubbo_version        the Dubbo protocol version, e.g. "2.0.2"
//
// Every attachment whose key and value are both strings is also a header, looked up by its
// own key; built-in names win over attachments of the same name. When a key appears more
// than once, the last one counts (as for Java's and Go's decoders, which fill a map), and a
// key whose value is not a string (including null) is not a header. RangeHeaders yields
// headers in wire order. Responses of type 3, 4 and 5 (with attachments) have headers too,
// but no built-in attributes: every name is looked up among their attachments. Frames of
// other serializations, heartbeats and non-OK responses have no attributes at all.
//
// Real clients write these bodies in more than one way, and all are accepted: compact, short
// and long string forms and chunked strings, surrogate pairs (Java's two 3-byte sequences, or
// a 4-byte UTF-8 sequence), hessian null for the service version, typed ('M') and untyped
// ('H') maps, class definitions and references in the arguments.
//
// Two cases leave the fast path, and say so where they are handled:
//
//   - A descriptor that is not a strict JVM descriptor list: the arguments are counted the
//     way providers count them (dubbo-go-hessian2's descriptor pattern, which Java shares), so
//     routing sees the attachments the provider will see.
//   - Attachments sent as a reference to a map written earlier in the body: the body is
//     decoded fully with dubbo-go-hessian2, after the skipper has validated it, and the
//     headers are then yielded in key order, the wire order being lost. Such attachments
//     cannot be mutated.
//
// Parsing is bounded: at most MaxAttachments attachment entries, values nested at most 128
// levels deep; beyond that the attachments are unreadable (headers absent, mutations fail)
// while the built-in attributes, which come first, still work.
//
// # Mutations
//
// SetHeader and DelHeader record changes to the attachments; AppendTo applies them by
// re-encoding the attachments map only: the bytes before it are copied verbatim, entries that
// are kept are copied as they are (whatever their encoding), replaced values and new
// entries are written as hessian2 strings, and the body length is fixed. The rules:
//
//   - Requests (two-way and one-way) carry headers. So do status-20 hessian2 responses: a
//     response without attachments is upgraded to the type that has them (value 1 -> 4,
//     null 2 -> 5, exception 0 -> 3), which every Dubbo client since 2.7 reads.
//   - Heartbeats, non-OK responses (their body is an error string) and frames of other
//     serializations cannot carry headers: SetHeader and DelHeader return an error wrapping
//     codecs.ErrHeadersUnsupported.
//   - Replacing or removing an existing attachment whose value is a list, map or object (or
//     starts with a class definition) fails in AppendTo: it may be the target of a hessian2
//     reference or define a class later values use, and removing it would silently
//     renumber them. Values that are strings, null, numbers, dates or binary can be changed.
//   - Built-in attributes come from the body fields, not from attachments, so a mutation
//     never changes service, method, version, param_types or dubbo_version ("group" is an
//     attachment and does change). Attributes of a frame never reflect its own mutations.
//   - A mutated frame larger than the frame size limit is an error wrapping
//     codecs.ErrFrameTooLarge.
//
// # Local replies
//
// AppendHeartbeatReply answers a heartbeat with an event response (flags 0x22: event,
// hessian2), status 20, the same id and a hessian null body, as Dubbo's own heartbeat
// handler does.
//
// AppendErrorReply answers a two-way request with a response whose status is chosen from the
// reason and whose body is a hessian2 string, which Dubbo clients (Java and dubbo-go) raise
// as an error carrying that message. The message is prefixed with "meltemi: " and the reason
// so users see the proxy produced it. The mapping:
//
//	no_route              60  SERVICE_NOT_FOUND
//	no_healthy_upstream   60  SERVICE_NOT_FOUND
//	timeout               31  SERVER_TIMEOUT
//	over_limit           100  SERVER_THREADPOOL_EXHAUSTED
//	unauthorized          40  BAD_REQUEST
//	bad_request           40  BAD_REQUEST
//	unavailable           80  SERVER_ERROR
//	internal              80  SERVER_ERROR
//
// The reply is always hessian2 (serialization 2 in its flags): Dubbo clients decode a
// response with the serialization its header names. A nil request (no id to answer), a
// one-way request (nobody waits for a reply) and any other frame give an error wrapping
// codecs.ErrUnsupported.
package dubbo
