// Package codecproxy is a test relay that puts a Meltemi codec between a real client and a
// real server: every frame in both directions is decoded by the codec and re-encoded with
// Frame.AppendTo before it is forwarded, so a conversation that succeeds proves that the
// codec decodes what the peers send and that the peers accept what the codec encodes.
//
// Hooks let a test answer a request locally (error or heartbeat replies), mutate headers, and
// record what was decoded. Request ids are rewritten on the way up and restored on the way
// back, as the proxy engine does on shared upstream connections.
package codecproxy

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/meltemi-mesh/meltemi/codecs"
)

// Record is what the relay saw of one frame.
type Record struct {
	Kind  codecs.Kind
	ID    uint64 // as sent by the peer, before any rewrite
	Attrs map[string]string
	Mode  string
}

// Hooks customise the relay. All are optional.
type Hooks struct {
	// Request is called for each frame from the client, after it is recorded. If it returns
	// reply bytes, they are written back to the client and the frame is not forwarded.
	Request func(conn codecs.Conn, f codecs.Frame) (reply []byte, err error)
	// Response is called for each frame from the server before it is forwarded.
	Response func(f codecs.Frame) error
}

// Proxy is a running relay.
type Proxy struct {
	Addr string

	t        testing.TB
	codec    codecs.Codec
	upstream string
	hooks    Hooks
	ln       net.Listener
	idOffset uint64

	mu        sync.Mutex
	conns     int
	requests  []Record
	responses []Record
	errs      []error
	wg        sync.WaitGroup
}

// AttributeNames are recorded for every frame, in addition to its headers.
var AttributeNames = []string{"service", "method", "version", "group", "interface", "param_types", "dubbo_version", "message_type"}

// Start listens on 127.0.0.1 and relays every accepted connection to upstream. When
// idOffset is non-zero, request ids are shifted by it upstream and restored downstream.
// The relay stops when the test ends; any relay error fails the test.
func Start(t testing.TB, codec codecs.Codec, upstream string, idOffset uint64, hooks Hooks) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: ln.Addr().String(), t: t, codec: codec, upstream: upstream, hooks: hooks, ln: ln, idOffset: idOffset}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.wg.Wait()
		for _, err := range p.Errors() {
			t.Errorf("codecproxy: %v", err)
		}
	})
	return p
}

// Requests returns the records of the frames received from clients so far.
func (p *Proxy) Requests() []Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Record(nil), p.requests...)
}

// Responses returns the records of the frames received from servers so far.
func (p *Proxy) Responses() []Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Record(nil), p.responses...)
}

// Conns returns how many client connections the relay has accepted so far: a client that
// reconnects (after a reply it could not read, say) shows up here.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns
}

// Errors returns relay errors (decode failures and the like) seen so far.
func (p *Proxy) Errors() []error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]error(nil), p.errs...)
}

func (p *Proxy) fail(err error) {
	p.mu.Lock()
	p.errs = append(p.errs, err)
	p.mu.Unlock()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conns++
		p.mu.Unlock()
		p.wg.Add(1)
		go p.serve(down)
	}
}

func record(f codecs.Frame, mode string) Record {
	r := Record{Kind: f.Kind(), ID: f.RequestID(), Attrs: map[string]string{}, Mode: mode}
	f.RangeHeaders(func(k, v string) bool { r.Attrs[k] = v; return true })
	for _, k := range AttributeNames {
		if v, ok := f.Attribute(k); ok {
			r.Attrs[k] = v
		}
	}
	return r
}

func (p *Proxy) serve(down net.Conn) {
	defer p.wg.Done()
	defer down.Close()
	up, err := net.Dial("tcp", p.upstream)
	if err != nil {
		p.fail(fmt.Errorf("dial upstream: %w", err))
		return
	}
	defer up.Close()
	var downMu sync.Mutex // the client side is written by both directions
	writeDown := func(b []byte) error {
		downMu.Lock()
		defer downMu.Unlock()
		if _, err := down.Write(b); err != nil {
			return writeError{err}
		}
		return nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer down.Close()
		conn := p.codec.NewConn()
		p.pump(up, conn, func(f codecs.Frame) error {
			p.mu.Lock()
			p.responses = append(p.responses, record(f, conn.Mode()))
			p.mu.Unlock()
			if p.idOffset != 0 && f.Kind().IsResponse() {
				if err := f.SetRequestID(f.RequestID() - p.idOffset); err != nil {
					return err
				}
			}
			if p.hooks.Response != nil {
				if err := p.hooks.Response(f); err != nil {
					return err
				}
			}
			b, err := f.AppendTo(nil)
			if err != nil {
				return err
			}
			return writeDown(b)
		})
	}()
	conn := p.codec.NewConn()
	p.pump(down, conn, func(f codecs.Frame) error {
		p.mu.Lock()
		p.requests = append(p.requests, record(f, conn.Mode()))
		p.mu.Unlock()
		if p.hooks.Request != nil {
			reply, err := p.hooks.Request(conn, f)
			if err != nil {
				return err
			}
			if reply != nil {
				return writeDown(reply)
			}
		}
		if p.idOffset != 0 && f.Kind().IsRequest() {
			if err := f.SetRequestID(f.RequestID() + p.idOffset); err != nil {
				return err
			}
		}
		b, err := f.AppendTo(nil)
		if err != nil {
			return err
		}
		if _, err := up.Write(b); err != nil {
			return writeError{err}
		}
		return nil
	})
	up.Close()
	<-done
}

// writeError marks a failed socket write: the peer went away, which ends the relay quietly.
type writeError struct{ error }

// pump reads src, decodes frames with conn and hands each to handle, until EOF or an error.
func (p *Proxy) pump(src net.Conn, conn codecs.Conn, handle func(codecs.Frame) error) {
	buf := make([]byte, 0, 64<<10)
	tmp := make([]byte, 32<<10)
	for {
		n, err := src.Read(tmp)
		buf = append(buf, tmp[:n]...)
		for {
			f, used, derr := conn.Decode(buf)
			if derr != nil {
				p.fail(fmt.Errorf("decode from %v: %w", src.RemoteAddr(), derr))
				return
			}
			if f == nil {
				break
			}
			buf = buf[used:]
			if herr := handle(f); herr != nil {
				var werr writeError
				if !errors.As(herr, &werr) {
					p.fail(fmt.Errorf("handle %v frame: %w", f.Kind(), herr))
				}
				return
			}
		}
		if err != nil {
			// EOF or a reset from a peer that exits: both normal at the end of a test.
			return
		}
	}
}
