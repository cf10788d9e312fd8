// Command plugin is a Go network filter built with -buildmode=c-shared that
// the abihost tests load to exercise the Envoy golang network-filter ABI. It
// registers the filter "abitest".
//
// Its config is a google.protobuf.StringValue holding "key=value;..." pairs:
// prefix=P (echo prefix), mode=cmd (default, line commands) or mode=relay
// with upstream=IP:PORT (raw bytes relayed both ways).
//
// In cmd mode every downstream line is a command; replies are lines. The
// commands are documented in the switch of (*conn).command.
package main

/*
#cgo linux LDFLAGS: -Wl,-unresolved-symbols=ignore-all
#include <stddef.h>

// The host functions, called directly where the stock Go API hides their
// return codes or is broken (FilterState().GetString, reference section 7).
int envoyGoFilterDownstreamWrite(void* f, void* buffer_ptr, int buffer_len, int end_stream);
int envoyGoFilterDownstreamClose(void* wrapper, int close_type);
int envoyGoFilterDownstreamInfo(void* wrapper, int t, void* ret);
int envoyGoFilterGetFilterState(void* wrapper, void* key, void* value);
*/
import "C"

import (
	"bytes"
	"fmt"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"
	// api_impl routes api.Log* to the host's envoyGoFilterLog.
	_ "github.com/envoyproxy/envoy/contrib/golang/common/go/api_impl"
	"github.com/envoyproxy/envoy/contrib/golang/filters/network/source/go/pkg/network"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func init() {
	network.RegisterNetworkFilterConfigParser(parser{})
	network.RegisterNetworkFilterConfigFactory("abitest", factory{})
}

func main() {}

// traces holds the event trace of closed connections by the name given with
// the "id" command, so that another connection can read it.
var traces sync.Map

type config struct {
	raw      string
	prefix   string
	mode     string
	upstream string
}

type parser struct{}

func (parser) ParseConfig(a *anypb.Any) interface{} {
	c := &config{mode: "cmd"}
	var s wrapperspb.StringValue
	if len(a.GetValue()) > 0 {
		if err := a.UnmarshalTo(&s); err != nil {
			c.raw = "error: " + err.Error()
			return c
		}
	}
	c.raw = s.GetValue()
	for _, kv := range strings.Split(c.raw, ";") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "prefix":
			c.prefix = v
		case "mode":
			c.mode = v
		case "upstream":
			c.upstream = v
		}
	}
	return c
}

type factory struct{}

func (factory) CreateFactoryFromConfig(cfg interface{}) network.FilterFactory {
	return filterFactory{cfg: cfg.(*config)}
}

type filterFactory struct{ cfg *config }

func (f filterFactory) CreateFilter(cb api.ConnectionCallback) api.DownstreamFilter {
	return &conn{cfg: f.cfg, cb: cb, wrapper: wrapperOf(cb)}
}

// wrapperOf returns the host's FilterWrapper handle held by the callback.
func wrapperOf(cb api.ConnectionCallback) unsafe.Pointer {
	return reflect.ValueOf(cb).Elem().FieldByName("wrapper").UnsafePointer()
}

type conn struct {
	cfg     *config
	cb      api.ConnectionCallback
	wrapper unsafe.Pointer
	in      []byte

	mu    sync.Mutex // trace, name, ups: upstream callbacks run on other threads
	trace []string
	tids  map[string]int
	name  string
	late  bool
	ups   []*upstream

	writeCalls, writeBytes atomic.Int64
	dropNext               atomic.Bool

	relay *upstream
}

func (c *conn) record(ev string) {
	c.mu.Lock()
	c.trace = append(c.trace, ev)
	if c.tids == nil {
		c.tids = map[string]int{}
	}
	if _, ok := c.tids[ev]; !ok {
		c.tids[ev] = syscall.Gettid()
	}
	c.mu.Unlock()
}

func (c *conn) reply(format string, args ...interface{}) {
	c.cb.Write([]byte(fmt.Sprintf(format, args...)+"\n"), false)
}

func (c *conn) OnNewConnection() api.FilterStatus {
	c.record("new")
	if c.cfg.mode == "relay" {
		c.relay = &upstream{down: c, relay: true}
		network.CreateUpstreamConn(c.cfg.upstream, c.relay)
	}
	return api.NetworkFilterContinue
}

func (c *conn) OnData(b []byte, end bool) api.FilterStatus {
	c.record("data")
	if end {
		c.record("data-eos")
	}
	if c.relay != nil {
		c.relay.send(b)
		return api.NetworkFilterContinue
	}
	c.in = append(c.in, b...)
	for {
		i := bytes.IndexByte(c.in, '\n')
		if i < 0 {
			break
		}
		line := string(c.in[:i])
		c.in = c.in[i+1:]
		c.command(line)
	}
	return api.NetworkFilterContinue
}

func (c *conn) OnEvent(e api.ConnectionEvent) {
	c.record("event" + strconv.Itoa(int(e)))
	if e != api.LocalClose && e != api.RemoteClose {
		return
	}
	c.mu.Lock()
	name, trace, late := c.name, strings.Join(c.trace, ","), c.late
	c.mu.Unlock()
	if name != "" {
		traces.Store(name, trace)
	}
	if c.relay != nil {
		c.relay.closeDown()
	}
	if late {
		// Closed but not yet destroyed: writes are accepted and dropped,
		// filter state reports CAPIFilterIsDestroy.
		b := []byte("closing\n")
		w := C.envoyGoFilterDownstreamWrite(c.wrapper, unsafe.Pointer(&b[0]), C.int(len(b)), 0)
		key, value := "k", ""
		gf := C.envoyGoFilterGetFilterState(c.wrapper, unsafe.Pointer(&key), unsafe.Pointer(&value))
		traces.Store(name+"-closed", fmt.Sprintf("write=%d getfs=%d", w, gf))
		go c.lateCalls(name)
	}
}

// lateCalls calls the host after the close event, once the filter has had time
// to be destroyed; c stays reachable, so its wrapper is not finalized.
func (c *conn) lateCalls(name string) {
	time.Sleep(200 * time.Millisecond)
	b := []byte("late\n")
	w := C.envoyGoFilterDownstreamWrite(c.wrapper, unsafe.Pointer(&b[0]), C.int(len(b)), 0)
	cl := C.envoyGoFilterDownstreamClose(c.wrapper, 0)
	var s string
	in := C.envoyGoFilterDownstreamInfo(c.wrapper, 0, unsafe.Pointer(&s))
	key, value := "k", ""
	gf := C.envoyGoFilterGetFilterState(c.wrapper, unsafe.Pointer(&key), unsafe.Pointer(&value))
	traces.Store(name+"-late", fmt.Sprintf("write=%d close=%d info=%d getfs=%d", w, cl, in, gf))
	runtime.KeepAlive(c)
}

func (c *conn) OnWrite(b []byte, end bool) api.FilterStatus {
	if c.dropNext.CompareAndSwap(true, false) {
		return api.NetworkFilterStopIteration
	}
	c.writeCalls.Add(1)
	c.writeBytes.Add(int64(len(b)))
	return api.NetworkFilterContinue
}

func (c *conn) command(line string) {
	cmd, arg, _ := strings.Cut(line, " ")
	switch cmd {
	case "echo": // echo TEXT: prefix+TEXT, written from the callback
		c.reply("%s%s", c.cfg.prefix, arg)
	case "gecho": // gecho TEXT: the same, written from another goroutine
		go c.reply("%s%s", c.cfg.prefix, arg)
	case "cfg": // the plugin config this listener got
		c.reply("cfg %s", c.cfg.raw)
	case "tid": // thread ids of the first callbacks of each kind
		c.mu.Lock()
		t := fmt.Sprintf("tid new=%d connected=%d data=%d", c.tids["new"], c.tids["event2"], c.tids["data"])
		c.mu.Unlock()
		c.reply("%s", t)
	case "events": // the callbacks seen so far
		c.mu.Lock()
		t := strings.Join(c.trace, ",")
		c.mu.Unlock()
		c.reply("events %s", t)
	case "id": // id NAME: store this connection's trace under NAME when it closes
		c.mu.Lock()
		c.name = arg
		c.mu.Unlock()
	case "late": // call the host after close and store the return codes as NAME-late
		c.mu.Lock()
		c.late = true
		c.mu.Unlock()
	case "trace": // trace NAME: the stored trace
		v, ok := traces.Load(arg)
		if !ok {
			v = "none"
		}
		c.reply("trace %s", v)
	case "close": // close TYPE
		c.cb.Close(api.ConnectionCloseType(atoi(arg)))
	case "writeclose": // writeclose TYPE COUNT SIZE: COUNT writes of SIZE bytes, then close
		f := strings.Fields(arg)
		chunk := bytes.Repeat([]byte{'x'}, atoi(f[2]))
		for range atoi(f[1]) {
			c.cb.Write(chunk, false)
		}
		c.cb.Close(api.ConnectionCloseType(atoi(f[0])))
	case "reuse": // two writes from one buffer, changed in between: the host must copy
		b := []byte("first\n")
		c.cb.Write(b, false)
		copy(b, "again\n")
		c.cb.Write(b, false)
	case "closewrite": // write, close with FlushWrite, write again
		c.cb.Write([]byte("before\n"), false)
		c.cb.Close(api.FlushWrite)
		c.cb.Write([]byte("after\n"), false)
	case "writeend": // a write with end_stream set
		c.cb.Write([]byte("end\n"), true)
	case "dropnext": // the next OnWrite returns StopIteration
		c.dropNext.Store(true)
	case "wstat": // what OnWrite saw so far
		c.reply("wstat calls=%d bytes=%d", c.writeCalls.Load(), c.writeBytes.Load())
	case "info":
		l, _ := c.cb.StreamInfo().UpstreamLocalAddress()
		r, _ := c.cb.StreamInfo().UpstreamRemoteAddress()
		c.reply("info local=%s remote=%s", l, r)
	case "setfs": // setfs KEY VALUE: mutable, connection life span, on the worker
		k, v, _ := strings.Cut(arg, " ")
		c.cb.StreamInfo().FilterState().SetString(k, v, api.StateTypeMutable, api.LifeSpanConnection, api.None)
	case "setfsro": // setfsro KEY VALUE: read-only
		k, v, _ := strings.Cut(arg, " ")
		c.cb.StreamInfo().FilterState().SetString(k, v, api.StateTypeReadOnly, api.LifeSpanConnection, api.None)
	case "gsetfs": // gsetfs KEY VALUE: set from another goroutine (posted by the host)
		k, v, _ := strings.Cut(arg, " ")
		go func() {
			c.cb.StreamInfo().FilterState().SetString(k, v, api.StateTypeMutable, api.LifeSpanConnection, api.None)
			c.reply("gsetfs done")
		}()
	case "getfs": // getfs KEY: get on the worker
		v, rc := getFilterState(c.cb, arg)
		c.reply("fs %s=%s rc=%d", arg, v, rc)
	case "ggetfs": // ggetfs KEY: get from another goroutine: CAPIYield, then OnSemaDec
		go func() {
			v, rc := getFilterState(c.cb, arg)
			c.reply("gfs %s=%s rc=%d", arg, v, rc)
		}()
	case "log": // log TEXT: api.LogInfo through envoyGoFilterLog
		api.LogInfo(arg)
		c.reply("logged")
	case "gc":
		go func() {
			for range 3 {
				runtime.GC()
			}
			c.reply("gc done")
		}()
	case "up", "uph": // up ADDR: connect upstream; uph also enables half-close
		u := &upstream{down: c, half: cmd == "uph"}
		c.mu.Lock()
		u.idx = len(c.ups)
		c.ups = append(c.ups, u)
		c.mu.Unlock()
		network.CreateUpstreamConn(arg, u)
	case "u", "uend": // u TEXT: write TEXT\n to the last upstream; uend also ends the stream
		if u := c.lastUp(); u != nil && u.ready() != nil {
			u.ready().Write([]byte(arg+"\n"), cmd == "uend")
		}
	case "uclose": // uclose TYPE
		if u := c.lastUp(); u != nil && u.ready() != nil {
			u.ready().Close(api.ConnectionCloseType(atoi(arg)))
		}
	case "uinfo":
		if u := c.lastUp(); u != nil && u.ready() != nil {
			l, _ := u.ready().StreamInfo().UpstreamLocalAddress()
			r, _ := u.ready().StreamInfo().UpstreamRemoteAddress()
			c.reply("uinfo local=%s remote=%s", l, r)
		}
	default:
		c.reply("unknown %q", line)
	}
}

func (c *conn) lastUp() *upstream {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.ups) == 0 {
		return nil
	}
	return c.ups[len(c.ups)-1]
}

// getFilterState is what network's cgoApiImpl.GetFilterState means to do, on
// the real connectionCallback: the stock FilterState().GetString passes the
// wrong object (reference section 7). waitingOnEnvoy is set before the call
// so that an OnSemaDec arriving before CAPIYield is seen still releases us.
func getFilterState(cb api.ConnectionCallback, key string) (string, int) {
	v := reflect.ValueOf(cb).Elem()
	mu := (*sync.Mutex)(unsafe.Pointer(v.FieldByName("mutex").UnsafeAddr()))
	sema := (*sync.WaitGroup)(unsafe.Pointer(v.FieldByName("sema").UnsafeAddr()))
	waiting := (*int32)(unsafe.Pointer(v.FieldByName("waitingOnEnvoy").UnsafeAddr()))
	var value string
	mu.Lock()
	defer mu.Unlock()
	sema.Add(1)
	atomic.StoreInt32(waiting, 1)
	rc := C.envoyGoFilterGetFilterState(wrapperOf(cb), unsafe.Pointer(&key), unsafe.Pointer(&value))
	if rc == -6 {
		sema.Wait()
	} else if atomic.CompareAndSwapInt32(waiting, 1, 0) {
		sema.Done()
	}
	return strings.Clone(value), int(rc)
}

type upstream struct {
	down  *conn
	idx   int
	half  bool
	relay bool

	mu       sync.Mutex
	cb       api.ConnectionCallback
	pending  [][]byte
	downGone bool
}

func (u *upstream) ready() api.ConnectionCallback {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.cb
}

// send relays downstream bytes, queued until the pool is ready: writing
// before OnPoolReady would crash Envoy.
func (u *upstream) send(b []byte) {
	u.mu.Lock()
	cb := u.cb
	if cb == nil {
		u.pending = append(u.pending, bytes.Clone(b))
	}
	u.mu.Unlock()
	if cb != nil {
		cb.Write(b, false)
	}
}

func (u *upstream) closeDown() {
	u.mu.Lock()
	cb := u.cb
	u.downGone = true
	u.mu.Unlock()
	if cb != nil {
		cb.Close(api.NoFlush)
	}
}

func (u *upstream) OnPoolReady(cb api.ConnectionCallback) {
	if u.half {
		cb.EnableHalfClose(true) // on the upstream's worker, as Envoy requires
	}
	u.mu.Lock()
	u.cb = cb
	pending, gone := u.pending, u.downGone
	u.pending = nil
	u.mu.Unlock()
	if u.relay {
		for _, b := range pending {
			cb.Write(b, false)
		}
		if gone {
			cb.Close(api.NoFlush)
		}
		return
	}
	u.down.reply("uready %d tid=%d", u.idx, syscall.Gettid())
}

func (u *upstream) OnPoolFailure(r api.PoolFailureReason, _ string) {
	if u.relay {
		u.down.cb.Close(api.NoFlush)
		return
	}
	u.down.reply("ufail %d reason=%d tid=%d", u.idx, int(r), syscall.Gettid())
}

func (u *upstream) OnData(b []byte, end bool) {
	if u.relay {
		if len(b) > 0 {
			u.down.cb.Write(b, false)
		}
		return
	}
	eos := 0
	if end {
		eos = 1
	}
	u.down.reply("udata %d eos=%d tid=%d %s", u.idx, eos, syscall.Gettid(), strconv.Quote(string(b)))
}

func (u *upstream) OnEvent(e api.ConnectionEvent) {
	if u.relay {
		if e == api.LocalClose || e == api.RemoteClose {
			u.down.cb.Close(api.FlushWrite)
		}
		return
	}
	u.down.reply("uevent %d e=%d", u.idx, int(e))
}

func atoi(s string) int {
	n, _ := strconv.Atoi(strings.TrimSpace(s))
	return n
}
