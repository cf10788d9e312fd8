// Package thrift is Meltemi's codec for Apache Thrift RPC: it finds message boundaries in a
// Thrift byte stream, exposes the routing attributes of a call, rewrites seqids in place,
// edits THeader headers and builds TApplicationException replies, all without generated code
// and without the Thrift library. Register it as thrift.Factory{} under the name "thrift".
//
// # Wire variants
//
// Transports: framed (a 4-byte big-endian length before each message), unframed, also called
// buffered (messages back to back; a generic struct skipper finds where each one ends), and
// THeader (a length, magic 0x0FFF, flags, a seq id and a header block with the payload's
// protocol, transforms and info key/values; the zlib transform is supported). Protocols:
// binary (strict, with the 0x8001 version word, and the old non-strict form that starts with
// the name length) and compact (0x82).
//
// A Conn detects its transport and protocol from the first bytes of the stream and keeps
// them: Mode reports "framed/binary", "unframed/compact", "header/compact" and so on, and a
// later frame of another mode is ErrMalformed. Both binary forms are mode "binary", but a
// Conn also keeps the form of its first message (a client writes only one): on an unframed
// stream that is what tells a non-strict message from a framed or THeader length word.
// The Params "transport" (auto, framed, unframed, header) and "protocol" (auto, binary,
// compact) force a mode instead of detecting it; any other key or value is an error.
//
// # Attributes
//
//	method        the message name; for a TMultiplexedProtocol name "Service:method", the part
//	              after the first ':'
//	service       for a multiplexed name, the part before the first ':'; absent otherwise
//	message_type  call, reply, exception or oneway
//
// Every other name is looked up among the THeader info headers (KEYVALUE type); if a name
// occurs twice, the last one wins, as in the Thrift libraries' readers. RangeHeaders lists
// the headers in wire order. Attribute strings point into bytes the frame owns and never
// changes in place, so they stay valid and unchanged for the frame's life.
//
// # Kinds and request ids
//
// CALL is KindRequest, ONEWAY KindOneway, EXCEPTION KindErrorResponse, and REPLY is
// KindResponse unless the result struct's first field has an id other than 0 (a declared
// exception), which makes it KindErrorResponse. Thrift has no heartbeats.
//
// The request id is the message seqid as its 32-bit pattern; SetRequestID accepts
// 0..math.MaxUint32. It patches the encoded bytes in place: 4 bytes in the binary protocol;
// the varint in the compact protocol, in place when the new varint has the same length,
// otherwise in a new buffer with the frame length fixed (the old bytes stay untouched, as
// attribute strings may point into them). A THeader frame's header seq id is rewritten too.
// A zlib-transformed THeader frame is the slow path: its payload is inflated once at decode,
// patched, and deflated again (the original bytes come back when the original id is set).
//
// # Limits
//
// Options.MaxFrameSize bounds a frame: framed and THeader frames are rejected as soon as the
// 4-byte length is read, unframed messages as soon as they would need more bytes than the
// limit, and an inflated zlib payload may not exceed it either (zip bombs). The struct skipper
// walks any Thrift value without recursion, allows 64 levels of nesting, checks every string,
// list, set and map size against the bytes left, and keeps its place between calls on an
// incomplete unframed message, so trickled bytes cost linear time.
//
// # Mutation
//
// SetHeader and DelHeader apply to THeader frames only: AppendTo then writes a new header
// block (all KEYVALUE headers in one section, an edited header keeping its place, new ones
// last) and the payload bytes unchanged, fixing the header size, padding and frame length.
// Other transports cannot carry headers and return codecs.ErrHeadersUnsupported.
//
// # Error replies
//
// AppendErrorReply writes a TApplicationException (EXCEPTION message, struct {1: string
// message, 2: i32 type}) with the request's current seqid in the request's transport and
// protocol (binary strictness included; THeader replies use the request's protocol and flags,
// without transforms or headers). The message name is the method without any "Service:"
// prefix, as TMultiplexedProcessor answers and as the Go client checks before it reads the
// exception. Reasons map to TApplicationException types:
//
//	no_route     UNKNOWN_METHOD (1)
//	bad_request  PROTOCOL_ERROR (7)
//	other        INTERNAL_ERROR (6)
//
// and the message is "meltemi: <reason>: <msg>". Oneway requests get no reply, so an error
// reply to one is codecs.ErrUnsupported, as is a reply with no request.
package thrift
