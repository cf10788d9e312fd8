package codectest

import (
	"bytes"
	"errors"
	"fmt"
	"runtime/debug"
	"testing"

	"github.com/meltemi-mesh/meltemi/codecs"
)

// builtinNames are attribute names every exercise asks for, whatever the protocol.
var builtinNames = []string{"service", "method", "version", "group", "interface", "param_types", "message_type", "x-absent"}

// Exercise decodes arbitrary bytes with a fresh Conn of c and uses every operation on what it
// yields, checking the invariants that hold for any input:
//
//   - Decode does not panic, uses 0..len(in) bytes, and uses some when it returns a frame;
//   - a frame re-encodes to exactly the bytes it was decoded from;
//   - the first frame, with its id rewritten, header-mutated, or answered with a local reply,
//     encodes to bytes that decode again as the expected frame.
//
// It returns the first broken invariant, or a recovered panic with its stack.
func Exercise(c codecs.Codec, in []byte) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	conn := c.NewConn()
	buf := in
	for first := true; ; first = false {
		f, n, derr := conn.Decode(buf)
		if n < 0 || n > len(buf) {
			return fmt.Errorf("decode used %d bytes of %d", n, len(buf))
		}
		if derr != nil {
			if f != nil || n != 0 {
				return fmt.Errorf("decode returned an error with a frame or consumed bytes: %v", derr)
			}
			if !errors.Is(derr, codecs.ErrMalformed) && !errors.Is(derr, codecs.ErrFrameTooLarge) {
				return fmt.Errorf("decode error %v wraps neither ErrMalformed nor ErrFrameTooLarge", derr)
			}
			return nil
		}
		if f == nil {
			if n != 0 {
				return fmt.Errorf("need-more consumed %d bytes", n)
			}
			return nil
		}
		if n == 0 {
			return errors.New("frame decoded from zero bytes")
		}
		raw := buf[:n]
		buf = buf[n:]
		if f.Size() != n {
			return fmt.Errorf("frame Size %d, decoded from %d bytes", f.Size(), n)
		}
		out, aerr := f.AppendTo(nil)
		if aerr != nil || !bytes.Equal(out, raw) {
			return fmt.Errorf("frame does not re-encode to its own bytes (err %v)", aerr)
		}
		for _, name := range builtinNames {
			f.Attribute(name)
		}
		f.RangeHeaders(func(k, v string) bool { f.Attribute(k); return true })
		if first {
			if err := checkDerived(c, conn, f); err != nil {
				return err
			}
		}
	}
}

// checkDerived checks what the proxy makes out of a decoded frame.
func checkDerived(c codecs.Codec, conn codecs.Conn, f codecs.Frame) error {
	kind := f.Kind()
	if kind.IsRequest() || kind.IsResponse() {
		if err := f.SetRequestID(7); err == nil {
			out, aerr := f.AppendTo(nil)
			if aerr != nil {
				return fmt.Errorf("AppendTo after SetRequestID: %w", aerr)
			}
			g, n, derr := c.NewConn().Decode(out)
			if derr != nil || g == nil || n != len(out) || g.RequestID() != 7 || g.Kind() != kind {
				return fmt.Errorf("frame with rewritten id does not decode back (err %v)", derr)
			}
		} else if !errors.Is(err, codecs.ErrIDRange) {
			return fmt.Errorf("SetRequestID(7): %w", err)
		}
	}
	if kind == codecs.KindRequest {
		rep, err := conn.AppendErrorReply(nil, f, codecs.ReasonInternal, "exercise")
		if err != nil {
			return fmt.Errorf("error reply: %w", err)
		}
		g, n, derr := c.NewConn().Decode(rep)
		if derr != nil || g == nil || n != len(rep) || g.Kind() != codecs.KindErrorResponse || g.RequestID() != f.RequestID() {
			return fmt.Errorf("error reply does not decode as an error response (err %v)", derr)
		}
	}
	if kind == codecs.KindHeartbeatRequest {
		rep, err := conn.AppendHeartbeatReply(nil, f)
		if err != nil {
			return fmt.Errorf("heartbeat reply: %w", err)
		}
		g, _, derr := c.NewConn().Decode(rep)
		if derr != nil || g == nil || g.Kind() != codecs.KindHeartbeatResponse {
			return fmt.Errorf("heartbeat reply does not decode as one (err %v)", derr)
		}
	}
	if err := f.SetHeader("x-exercise", "1"); err == nil {
		out, aerr := f.AppendTo(nil)
		if aerr != nil {
			// The body past the headers may be malformed: mutations may fail, cleanly.
			return nil
		}
		g, _, derr := c.NewConn().Decode(out)
		if derr != nil || g == nil {
			return fmt.Errorf("mutated frame does not decode (err %v)", derr)
		}
		if v, ok := g.Attribute("x-exercise"); !ok || v != "1" {
			return fmt.Errorf("mutated frame lost the header (got %q, %v)", v, ok)
		}
	} else if !errors.Is(err, codecs.ErrHeadersUnsupported) {
		return fmt.Errorf("SetHeader: %w", err)
	}
	return nil
}

// FuzzDecode is a fuzz body for a codec: it seeds f with the given frames (each alone and
// all concatenated) and runs Exercise on every input.
func FuzzDecode(f *testing.F, c codecs.Codec, seeds ...[]byte) {
	var all []byte
	for _, s := range seeds {
		f.Add(s)
		all = append(all, s...)
	}
	f.Add(all)
	f.Fuzz(func(t *testing.T, in []byte) {
		if err := Exercise(c, in); err != nil {
			t.Fatal(err)
		}
	})
}
