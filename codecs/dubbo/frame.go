package dubbo

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"unsafe"

	hessian2 "github.com/apache/dubbo-go-hessian2"

	"github.com/meltemi-mesh/meltemi/codecs"
	"github.com/meltemi-mesh/meltemi/codecs/dubbo/internal/hessian"
)

// MaxAttachments bounds the number of attachment entries a frame's attributes and mutations
// handle. Real requests carry tens; the bound keeps a hostile map of millions of tiny entries
// from costing far more memory than its bytes.
const MaxAttachments = 1 << 16

// inlineEntries is how many attachment entries fit in the frame itself, so that typical
// requests need no allocation to be read: dubbo-go sends path, interface, version, timeout
// and, when set, group and token, plus what the application adds.
const inlineEntries = 8

// Built-in attribute names of a request, in body order.
var fieldNames = [...]string{"dubbo_version", "service", "version", "method", "param_types"}

const (
	fieldDubboVersion = iota
	fieldService
	fieldVersion
	fieldMethod
	fieldParamTypes
)

// Value kinds of an attachment entry.
const (
	valString = iota + 1 // a string: a header
	valNull              // hessian null
	valScalar            // number, date, boolean, binary: replaceable, not a header
	valRefs              // list, map, object, class definition: may anchor references
)

// entry is one key/value pair of an attachments map, as the body offsets of its key and of
// its value. Entries are contiguous, so one ends where the next starts (the last one at the
// map's closing 'Z'); what the key and value are is read from their tags, and strings are
// read again from their offsets when asked for, which costs next to nothing for the common
// compact ASCII form. Eight bytes an entry keep the inline array small.
type entry struct{ start, valAt int32 }

// Where the attachments are, relative to the rest of the body.
const (
	attAbsent   = iota + 1 // the body ends (or the response type has none): insert at `at`
	attNull                // a hessian null at `at`
	attMap                 // a map at `at`, entries from entriesAt, ending at end
	attResolved            // a reference resolved by a full decode: read-only, in resolved
)

type attachments struct {
	parsed bool
	state  uint8
	err    error
	// Body offsets: where the map (or null) starts or would be inserted, its first entry,
	// and just past it.
	at, entriesAt, end int
	ents               []entry
	inline             [inlineEntries]entry
	// resolved holds the headers of attachments read by the full-decode fallback; behind a
	// pointer because it is rare and the frame is allocated for every request.
	resolved *[]keyValue
}

type keyValue struct{ key, value string }

type mutation struct {
	name, value string
	del         bool
}

// frame is one decoded Dubbo frame. It owns b, which is never modified after Decode except
// the request id (b[4:12]): strings handed out by Attribute may point into it.
type frame struct {
	b        []byte
	maxFrame int
	kind     codecs.Kind
	hessian  bool
	// respType is the response type of a status-20 hessian2 response, -1 for other frames;
	// typeEnd is the body offset just past it.
	respType int8
	typeEnd  int32

	headParsed bool
	headErr    error
	fieldAt    [len(fieldNames)]int32 // body offsets of the five leading strings
	argsAt     int32                  // body offset of the first argument

	att  attachments
	muts []mutation
}

func (f *frame) body() []byte { return f.b[HeaderLen:] }

func (f *frame) status() Status { return Status(f.b[3]) }

// classify sets the kind from the header and, for status-20 hessian2 responses, the response
// type.
func (f *frame) classify() error {
	flags := f.b[2]
	f.hessian = flags&serialMask == SerializationHessian2
	switch {
	case flags&flagReq != 0 && flags&flagEvent != 0:
		f.kind = codecs.KindHeartbeatRequest
	case flags&flagReq != 0 && flags&flagTwoWay != 0:
		f.kind = codecs.KindRequest
	case flags&flagReq != 0:
		f.kind = codecs.KindOneway
	case flags&flagEvent != 0:
		f.kind = codecs.KindHeartbeatResponse
	case f.status() != StatusOK:
		f.kind = codecs.KindErrorResponse
	case !f.hessian:
		f.kind = codecs.KindResponse
	default:
		t, end, err := hessian.ReadInt(f.body(), 0)
		if err != nil {
			return malformed("response type: %v", err)
		}
		switch t {
		case respException, respExceptionAtt:
			f.kind = codecs.KindErrorResponse
		case respValue, respNull, respValueAtt, respNullAtt:
			f.kind = codecs.KindResponse
		default:
			return malformed("unknown response type %d", t)
		}
		f.respType, f.typeEnd = int8(t), int32(end)
	}
	return nil
}

func (f *frame) Kind() codecs.Kind { return f.kind }

func (f *frame) RequestID() uint64 { return binary.BigEndian.Uint64(f.b[4:12]) }

// SetRequestID rewrites the id in place; Dubbo ids are 64 bits, so every id fits.
func (f *frame) SetRequestID(id uint64) error {
	binary.BigEndian.PutUint64(f.b[4:12], id)
	return nil
}

func (f *frame) Size() int { return len(f.b) }

func (f *frame) isRequest() bool { return f.kind == codecs.KindRequest || f.kind == codecs.KindOneway }

// parseHead reads the five strings that open a request body.
func (f *frame) parseHead() error {
	if f.headParsed {
		return f.headErr
	}
	f.headParsed = true
	body := f.body()
	off := 0
	for i := range f.fieldAt {
		// A null reads as "": some clients send the service version that way.
		_, _, end, _, _, err := hessian.StringSpan(body, off)
		if err != nil {
			f.headErr = malformed("request %s: %v", fieldNames[i], err)
			return f.headErr
		}
		f.fieldAt[i], off = int32(off), end
	}
	f.argsAt = int32(off)
	return nil
}

// str returns the string (or null, as "") at body offset at, which was validated when it was
// recorded. A single chunk of plain UTF-8 is returned without a copy: it points into the
// frame's bytes, which never change there.
func (f *frame) str(at int32) string {
	body := f.body()
	data, dataEnd, _, plain, _, _ := hessian.StringSpan(body, int(at))
	if plain {
		return unsafe.String(unsafe.SliceData(body[data:]), dataEnd-data)
	}
	s, _, _, _ := hessian.ReadString(body, int(at))
	return s
}

func (f *frame) field(i int) string { return f.str(f.fieldAt[i]) }

func (f *frame) keyIsString(e *entry) bool { return hessian.IsStringTag(f.body()[e.start]) }

// valueKind classifies the value of e by its tag.
func (f *frame) valueKind(e *entry) uint8 {
	switch tag := f.body()[e.valAt]; {
	case hessian.IsStringTag(tag):
		return valString
	case tag == hessian.TagNull:
		return valNull
	case hessian.DefinesRefs(tag):
		return valRefs
	}
	return valScalar
}

// entryEnd is the body offset just past entry i: where the next one starts, or the map's
// closing 'Z'.
func (f *frame) entryEnd(i int) int32 {
	if ents := f.att.ents; i+1 < len(ents) {
		return ents[i+1].start
	}
	return int32(f.att.end - 1)
}

// keyIs reports whether e's key is the string name, without building the key when its
// bytes are plain.
func (f *frame) keyIs(e *entry, name string) bool {
	body := f.body()
	if !hessian.IsStringTag(body[e.start]) {
		return false
	}
	data, dataEnd, _, plain, _, _ := hessian.StringSpan(body, int(e.start))
	if plain {
		return dataEnd-data == len(name) && string(body[data:dataEnd]) == name
	}
	return f.str(e.start) == name
}

// identChars marks the bytes of a Java identifier in a descriptor: 1 for any position, 2 for
// the first one too ([_$a-zA-Z][_$a-zA-Z0-9]*).
var identChars = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			t[c] = 3
		case c >= '0' && c <= '9':
			t[c] = 1
		}
	}
	return t
}()

// paramCount counts the parameters of a JVM method descriptor list such as
// "Ljava/lang/String;I[J". It reports false when desc is not strictly such a list.
func paramCount(desc string) (int, bool) {
	n := 0
	for i := 0; i < len(desc); n++ {
		for i < len(desc) && desc[i] == '[' {
			i++
		}
		if i == len(desc) {
			return 0, false
		}
		switch desc[i] {
		case 'V', 'Z', 'B', 'C', 'D', 'F', 'I', 'J', 'S':
			i++
			continue
		case 'L':
		default:
			return 0, false
		}
		// L ident ('/' ident)* ';'
		for i++; ; i++ {
			if i == len(desc) || identChars[desc[i]]&2 == 0 {
				return 0, false
			}
			for i++; i < len(desc) && identChars[desc[i]] != 0; i++ {
			}
			if i == len(desc) {
				return 0, false
			}
			if desc[i] == ';' {
				i++
				break
			}
			if desc[i] != '/' {
				return 0, false
			}
		}
	}
	return n, true
}

// argCount is the number of argument values in front of the attachments.
func (f *frame) argCount() int {
	desc := f.field(fieldParamTypes)
	if n, ok := paramCount(desc); ok {
		return n
	}
	// Not a strict descriptor list. Providers do not reject it: dubbo-go counts the matches
	// of this very pattern, and Java's ReflectUtils runs a find() loop over the same one. So
	// count the same way, to route on the attachments the provider will read.
	return len(hessian2.DescRegex.FindAllStringIndex(desc, -1))
}

// parseAttachments locates and reads the attachments map of a request or of a status-20
// response, once.
func (f *frame) parseAttachments() {
	a := &f.att
	if a.parsed {
		return
	}
	a.parsed = true
	a.ents = a.inline[:0]
	body := f.body()
	var r hessian.Reader
	r.Reset(body)
	var off, before int // where the attachments are, how many values precede them
	var err error
	switch {
	case f.isRequest():
		if err = f.parseHead(); err != nil {
			a.err = err
			return
		}
		n := f.argCount()
		off, before = int(f.argsAt), len(f.fieldAt)+n
		for i := 0; i < n && err == nil; i++ {
			off, err = r.Skip(off)
		}
		if err != nil {
			a.err = malformed("request arguments: %v", err)
			return
		}
	case f.respType >= 0:
		off, before = int(f.typeEnd), 1
		if f.respType != respNull && f.respType != respNullAtt {
			if off, err = r.Skip(off); err != nil {
				a.err = malformed("response value: %v", err)
				return
			}
			before++
		}
		if f.respType < respExceptionAtt {
			a.state, a.at, a.end = attAbsent, off, off
			return
		}
	default:
		a.err = fmt.Errorf("dubbo: %v frame has no attachments", f.kind)
		return
	}
	if err := f.parseMap(&r, off, before); err != nil {
		a.err = err
		a.ents = a.inline[:0]
	}
}

// parseMap reads the attachments at body offset off, preceded by `before` values.
func (f *frame) parseMap(r *hessian.Reader, off, before int) error {
	a := &f.att
	body := f.body()
	if off == len(body) {
		// Nothing after the arguments: a client that sends no attachments at all.
		a.state, a.at, a.end = attAbsent, off, off
		return nil
	}
	off, err := r.SkipClassDefs(off)
	if err != nil {
		return malformed("attachments: %v", err)
	}
	if off >= len(body) {
		return malformed("attachments: class definitions and no value")
	}
	switch body[off] {
	case hessian.TagNull:
		a.state, a.at, a.end = attNull, off, off+1
		return nil
	case hessian.TagRef:
		end, err := r.Skip(off)
		if err != nil {
			return malformed("attachments: %v", err)
		}
		return f.resolveAttachments(body[:end], before)
	}
	p, err := hessian.MapStart(body, off)
	if err != nil {
		return malformed("attachments: %v", err)
	}
	a.state, a.at, a.entriesAt = attMap, off, p
	// Collected in a local slice and stored once: appending to the field itself would write
	// the slice header back, with a write barrier, for every entry.
	ents := a.ents
	defer func() { a.ents = ents }()
	for {
		if p >= len(body) {
			return malformed("attachments: map not closed")
		}
		if body[p] == hessian.TagEnd {
			a.end = p + 1
			return nil
		}
		if len(ents) == MaxAttachments {
			return malformed("more than %d attachments", MaxAttachments)
		}
		e := entry{start: int32(p)}
		if hessian.IsStringTag(body[p]) {
			_, _, p, _, _, err = hessian.StringSpan(body, p)
		} else {
			p, err = r.Skip(p)
		}
		if err != nil {
			return malformed("attachment key: %v", err)
		}
		if p >= len(body) {
			return malformed("attachment without a value")
		}
		e.valAt = int32(p)
		if hessian.IsStringTag(body[p]) {
			_, _, p, _, _, err = hessian.StringSpan(body, p)
		} else {
			p, err = r.Skip(p)
		}
		if err != nil {
			return malformed("attachment value: %v", err)
		}
		ents = append(ents, e)
	}
}

// resolveAttachments handles attachments sent as a reference to a map written earlier in the
// body (legal hessian2: a Java client whose attachments map is also an argument writes it
// that way). Only a decoder that keeps every earlier value can resolve it, so this is the
// one case where the body is decoded fully, with dubbo-go-hessian2. The skipper has already
// validated every byte of prefix, which bounds what that decoder allocates (it trusts the
// lengths it reads and can be made to allocate or loop without end on hostile input); a
// panic in it is recovered. The resolved entries are read-only and in key order.
func (f *frame) resolveAttachments(prefix []byte, before int) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = malformed("attachments: full decode failed: %v", p)
		}
	}()
	d := hessian2.NewDecoder(prefix)
	for i := 0; i < before; i++ {
		if _, err := d.Decode(); err != nil {
			return malformed("attachments: full decode of value %d: %v", i, err)
		}
	}
	v, err := d.Decode()
	if err != nil {
		return malformed("attachments: full decode: %v", err)
	}
	m, ok := v.(map[any]any)
	if !ok {
		return malformed("attachments: reference to a %T, not a map", v)
	}
	if len(m) > MaxAttachments {
		return malformed("more than %d attachments", MaxAttachments)
	}
	var kvs []keyValue
	for k, v := range m {
		ks, ok1 := k.(string)
		vs, ok2 := v.(string)
		if ok1 && ok2 {
			kvs = append(kvs, keyValue{ks, vs})
		}
	}
	sort.Slice(kvs, func(i, j int) bool { return kvs[i].key < kvs[j].key })
	f.att.resolved, f.att.state = &kvs, attResolved
	return nil
}

// hasAttributes reports whether the frame can have attributes at all.
func (f *frame) hasAttributes() bool {
	return f.hessian && (f.isRequest() || f.respType >= 0)
}

func (f *frame) Attribute(name string) (string, bool) {
	if !f.hasAttributes() {
		return "", false
	}
	if f.isRequest() {
		i := -1
		switch name {
		case "service", "interface":
			i = fieldService
		case "method":
			i = fieldMethod
		case "version":
			i = fieldVersion
		case "param_types":
			i = fieldParamTypes
		case "dubbo_version":
			i = fieldDubboVersion
		}
		if i >= 0 {
			if f.parseHead() != nil {
				return "", false
			}
			return f.field(i), true
		}
	}
	f.parseAttachments()
	if r := f.att.resolved; r != nil {
		for _, kv := range *r {
			if kv.key == name {
				return kv.value, true
			}
		}
	}
	ents := f.att.ents
	for i := len(ents) - 1; i >= 0; i-- {
		if e := &ents[i]; f.keyIs(e, name) {
			if f.valueKind(e) != valString {
				return "", false
			}
			return f.str(e.valAt), true
		}
	}
	return "", false
}

func (f *frame) RangeHeaders(fn func(name, value string) bool) {
	if !f.hasAttributes() {
		return
	}
	f.parseAttachments()
	if r := f.att.resolved; r != nil {
		for _, kv := range *r {
			if !fn(kv.key, kv.value) {
				return
			}
		}
	}
	ents := f.att.ents
	// A key that appears again later is superseded: only its last occurrence counts.
	var last map[string]int
	if len(ents) > 32 {
		last = make(map[string]int, len(ents))
		for i := range ents {
			if f.keyIsString(&ents[i]) {
				last[f.str(ents[i].start)] = i
			}
		}
	}
	for i := range ents {
		e := &ents[i]
		if !f.keyIsString(e) || f.valueKind(e) != valString {
			continue
		}
		key := f.str(e.start)
		superseded := false
		if last != nil {
			superseded = last[key] != i
		} else {
			for j := i + 1; j < len(ents) && !superseded; j++ {
				superseded = f.keyIs(&ents[j], key)
			}
		}
		if !superseded && !fn(key, f.str(e.valAt)) {
			return
		}
	}
}

func (f *frame) checkHeaders() error {
	if f.hasAttributes() {
		return nil
	}
	switch {
	case !f.hessian:
		return fmt.Errorf("dubbo: %v with serialization %d: %w", f.kind, f.b[2]&serialMask, codecs.ErrHeadersUnsupported)
	case f.kind.IsResponse():
		return fmt.Errorf("dubbo: response with status %d (its body is an error message): %w", f.status(), codecs.ErrHeadersUnsupported)
	}
	return fmt.Errorf("dubbo: %v: %w", f.kind, codecs.ErrHeadersUnsupported)
}

func (f *frame) record(name, value string, del bool) error {
	if err := f.checkHeaders(); err != nil {
		return err
	}
	for i := range f.muts {
		if f.muts[i].name == name {
			f.muts[i] = mutation{name: name, value: value, del: del}
			return nil
		}
	}
	f.muts = append(f.muts, mutation{name: name, value: value, del: del})
	return nil
}

func (f *frame) SetHeader(name, value string) error { return f.record(name, value, false) }

func (f *frame) DelHeader(name string) error { return f.record(name, "", true) }

func (f *frame) AppendTo(dst []byte) ([]byte, error) {
	if len(f.muts) == 0 {
		return append(dst, f.b...), nil
	}
	return f.appendMutated(dst)
}

// mutationFor returns the mutation that applies to e, if any.
func (f *frame) mutationFor(e *entry) *mutation {
	for i := range f.muts {
		if f.keyIs(e, f.muts[i].name) {
			return &f.muts[i]
		}
	}
	return nil
}

// errNotReplaceable is wrapped when a mutation names an attachment that anchors references.
var errNotReplaceable = errors.New("attachment value may be a hessian2 reference target")

func (f *frame) appendMutated(dst []byte) ([]byte, error) {
	f.parseAttachments()
	a := &f.att
	if a.err != nil {
		return dst, fmt.Errorf("dubbo: apply header mutations: %w", a.err)
	}
	if a.state == attResolved {
		return dst, fmt.Errorf("dubbo: apply header mutations: the attachments are a hessian2 back-reference, which cannot be re-encoded alone: %w", codecs.ErrHeadersUnsupported)
	}
	changes := false
	for i := range a.ents {
		e := &a.ents[i]
		if m := f.mutationFor(e); m != nil {
			if f.valueKind(e) == valRefs {
				verb := "set"
				if m.del {
					verb = "delete"
				}
				return dst, fmt.Errorf("dubbo: cannot %s attachment %q: it holds a list, map or object, and %w",
					verb, m.name, errNotReplaceable)
			}
			changes = true
		}
	}
	for i := range f.muts {
		changes = changes || !f.muts[i].del
	}
	if !changes {
		// Only deletions of attachments that are not there: the frame stays as it is.
		return append(dst, f.b...), nil
	}

	body := f.body()
	start := len(dst)
	dst = append(dst, f.b[:HeaderLen]...)
	if f.respType >= 0 && f.respType < respExceptionAtt {
		// Upgrade to the response type that carries attachments (0->3, 1->4, 2->5).
		dst = hessian.AppendInt(dst, int32(f.respType)+respExceptionAtt)
		dst = append(dst, body[f.typeEnd:a.at]...)
	} else {
		dst = append(dst, body[:a.at]...)
	}
	if a.state == attMap {
		dst = append(dst, body[a.at:a.entriesAt]...) // 'H', or 'M' and its type, as sent
	} else {
		dst = hessian.AppendMapStart(dst)
	}
	for i := range a.ents {
		e := &a.ents[i]
		m := f.mutationFor(e)
		switch {
		case m == nil:
			dst = append(dst, body[e.start:f.entryEnd(i)]...)
		case !m.del:
			dst = append(dst, body[e.start:e.valAt]...)
			dst = hessian.AppendString(dst, m.value)
		}
	}
	for i := range f.muts {
		if m := &f.muts[i]; !m.del && !f.hasKey(m.name) {
			dst = hessian.AppendString(dst, m.name)
			dst = hessian.AppendString(dst, m.value)
		}
	}
	dst = hessian.AppendMapEnd(dst)
	dst = append(dst, body[a.end:]...)

	size := len(dst) - start
	if size > f.maxFrame || size-HeaderLen > math.MaxInt32 {
		return dst[:start], fmt.Errorf("dubbo: mutated frame of %d bytes, limit %d: %w", size, f.maxFrame, codecs.ErrFrameTooLarge)
	}
	binary.BigEndian.PutUint32(dst[start+12:], uint32(size-HeaderLen))
	return dst, nil
}

func (f *frame) hasKey(name string) bool {
	for i := range f.att.ents {
		if f.keyIs(&f.att.ents[i], name) {
			return true
		}
	}
	return false
}
