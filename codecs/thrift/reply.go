package thrift

import (
	"encoding/binary"
	"fmt"

	"github.com/meltemi-mesh/meltemi/codecs"
)

// TApplicationException types (the Thrift libraries' numbering).
const (
	appExUnknownMethod = 1
	appExInternalError = 6
	appExProtocolError = 7
)

// appExceptionType maps a reason onto the TApplicationException type clients know best.
func appExceptionType(r codecs.Reason) int32 {
	switch r {
	case codecs.ReasonNoRoute:
		return appExUnknownMethod
	case codecs.ReasonBadRequest:
		return appExProtocolError
	}
	return appExInternalError
}

func (c *conn) AppendErrorReply(dst []byte, req codecs.Frame, reason codecs.Reason, msg string) ([]byte, error) {
	if req == nil {
		return dst, fmt.Errorf("thrift: an error reply needs the request's seqid and mode: %w", codecs.ErrUnsupported)
	}
	f, ok := req.(*frame)
	if !ok {
		return dst, fmt.Errorf("thrift: error reply to a %T, not a Thrift frame", req)
	}
	switch f.hdr.typ {
	case msgCall:
	case msgOneway:
		return dst, fmt.Errorf("thrift: oneway request %q gets no reply: %w", f.name(), codecs.ErrUnsupported)
	default:
		return dst, fmt.Errorf("thrift: error reply to a %s message, not a call", messageTypeNames[f.hdr.typ])
	}
	text := "meltemi: " + reason.String()
	if msg != "" {
		text += ": " + msg
	}
	ex := appException{name: f.method(), seq: f.seq, text: text, code: appExceptionType(reason),
		protocol: f.protocol, strict: f.hdr.strict}
	switch f.transport {
	case transportUnframed:
		return ex.append(dst), nil
	case transportFramed:
		at := len(dst)
		dst = ex.append(append(dst, 0, 0, 0, 0))
		binary.BigEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
		return dst, nil
	}
	// THeader: the request's flags and protocol, no transforms, no info headers.
	at := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = append(dst, f.raw[4:headerSeqOff]...) // magic and flags
	dst = binary.BigEndian.AppendUint32(dst, f.seq)
	proto := byte(headerProtoBin)
	if f.protocol == protocolCompact {
		proto = headerProtoComp
	}
	dst = append(dst, 0, 1, proto, 0, 0, 0) // one word: protocol id, 0 transforms, padding
	dst = ex.append(dst)
	binary.BigEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
	return dst, nil
}

// appException is an EXCEPTION message carrying a TApplicationException.
type appException struct {
	name     string
	seq      uint32
	text     string
	code     int32
	protocol protocol
	strict   bool
}

func (e appException) append(dst []byte) []byte {
	if e.protocol == protocolCompact {
		dst = append(dst, compactProtocolID, msgException<<5|compactVersion)
		dst = binary.AppendUvarint(dst, uint64(e.seq))
		dst = binary.AppendUvarint(dst, uint64(len(e.name)))
		dst = append(dst, e.name...)
		dst = append(dst, 1<<4|8) // field 1 (delta 1), binary
		dst = binary.AppendUvarint(dst, uint64(len(e.text)))
		dst = append(dst, e.text...)
		dst = append(dst, 1<<4|5) // field 2 (delta 1), i32
		dst = binary.AppendUvarint(dst, uint64(zigzag32(e.code)))
		return append(dst, typeStop)
	}
	if e.strict {
		dst = append(dst, binaryVersionByte, 1, 0, msgException)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(e.name)))
		dst = append(dst, e.name...)
	} else {
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(e.name)))
		dst = append(dst, e.name...)
		dst = append(dst, msgException)
	}
	dst = binary.BigEndian.AppendUint32(dst, e.seq)
	dst = append(dst, typeString, 0, 1)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(e.text)))
	dst = append(dst, e.text...)
	dst = append(dst, typeI32, 0, 2)
	dst = binary.BigEndian.AppendUint32(dst, uint32(e.code))
	return append(dst, typeStop)
}
