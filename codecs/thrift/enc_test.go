package thrift

import (
	"encoding/binary"
	"math"
)

// tenc writes Thrift values in the binary or compact protocol, for hand-built test inputs that
// python3-thrift cannot produce (uuid, hostile sizes, deep nesting, odd THeader blocks).
// Types are given as binary type ids.
type tenc struct {
	compact bool
	b       []byte
	last    []int16 // compact: the previous field id of each open struct
}

var binaryToCompact = map[uint8]byte{
	typeBool: 1, typeByte: 3, typeI16: 4, typeI32: 5, typeI64: 6, typeDouble: 7,
	typeString: 8, typeList: 9, typeSet: 10, typeMap: 11, typeStruct: 12, typeUUID: 13,
}

func (e *tenc) structBegin() { e.last = append(e.last, 0) }

func (e *tenc) structEnd() {
	e.b = append(e.b, typeStop)
	e.last = e.last[:len(e.last)-1]
}

func (e *tenc) fieldHeader(ctype byte, id int16) {
	last := &e.last[len(e.last)-1]
	if d := int(id) - int(*last); d > 0 && d <= 15 {
		e.b = append(e.b, byte(d)<<4|ctype)
	} else {
		e.b = append(e.b, ctype)
		e.b = binary.AppendUvarint(e.b, uint64(zigzag32(int32(id))))
	}
	*last = id
}

// field begins a field; its value follows.
func (e *tenc) field(t uint8, id int16) {
	if !e.compact {
		e.b = append(e.b, t)
		e.b = binary.BigEndian.AppendUint16(e.b, uint16(id))
		return
	}
	e.fieldHeader(binaryToCompact[t], id)
}

// boolField writes a whole bool field.
func (e *tenc) boolField(id int16, v bool) {
	if !e.compact {
		e.field(typeBool, id)
		e.boolean(v)
		return
	}
	c := byte(2)
	if v {
		c = 1
	}
	e.fieldHeader(c, id)
}

func (e *tenc) boolean(v bool) {
	c := byte(0)
	if v {
		c = 1
	}
	if e.compact && !v {
		c = 2
	}
	e.b = append(e.b, c)
}

func (e *tenc) i8(v int8) { e.b = append(e.b, byte(v)) }

func (e *tenc) i16(v int16) {
	if e.compact {
		e.b = binary.AppendUvarint(e.b, uint64(zigzag32(int32(v))))
		return
	}
	e.b = binary.BigEndian.AppendUint16(e.b, uint16(v))
}

func (e *tenc) i32(v int32) {
	if e.compact {
		e.b = binary.AppendUvarint(e.b, uint64(zigzag32(v)))
		return
	}
	e.b = binary.BigEndian.AppendUint32(e.b, uint32(v))
}

func (e *tenc) i64(v int64) {
	if e.compact {
		e.b = binary.AppendUvarint(e.b, uint64(v<<1)^uint64(v>>63))
		return
	}
	e.b = binary.BigEndian.AppendUint64(e.b, uint64(v))
}

func (e *tenc) double(v float64) {
	if e.compact {
		e.b = binary.LittleEndian.AppendUint64(e.b, math.Float64bits(v))
		return
	}
	e.b = binary.BigEndian.AppendUint64(e.b, math.Float64bits(v))
}

func (e *tenc) size(n int) {
	if e.compact {
		e.b = binary.AppendUvarint(e.b, uint64(n))
		return
	}
	e.b = binary.BigEndian.AppendUint32(e.b, uint32(n))
}

func (e *tenc) str(s string) {
	e.size(len(s))
	e.b = append(e.b, s...)
}

func (e *tenc) uuid() {
	for i := range 16 {
		e.b = append(e.b, byte(i))
	}
}

// list begins a list (or set, t == typeSet) of n elements of type et.
func (e *tenc) list(t, et uint8, n int) {
	if !e.compact {
		e.b = append(e.b, et)
		e.size(n)
		return
	}
	_ = t // compact lists and sets share a header
	if n < 15 {
		e.b = append(e.b, byte(n)<<4|binaryToCompact[et])
		return
	}
	e.b = append(e.b, 0xf0|binaryToCompact[et])
	e.size(n)
}

func (e *tenc) mapBegin(kt, vt uint8, n int) {
	if !e.compact {
		e.b = append(e.b, kt, vt)
		e.size(n)
		return
	}
	e.size(n)
	if n > 0 {
		e.b = append(e.b, binaryToCompact[kt]<<4|binaryToCompact[vt])
	}
}

// message writes a message header; the body follows.
func (e *tenc) message(name string, typ uint8, seq uint32) {
	if e.compact {
		e.b = append(e.b, compactProtocolID, typ<<5|compactVersion)
		e.b = binary.AppendUvarint(e.b, uint64(seq))
		e.str(name)
		return
	}
	e.b = append(e.b, binaryVersionByte, 1, 0, typ)
	e.str(name)
	e.b = binary.BigEndian.AppendUint32(e.b, seq)
}

// everything writes a struct with a field of every type, containers of every kind (empty,
// short and long), nesting, and field ids in both compact header forms.
func (e *tenc) everything() {
	e.structBegin()
	e.boolField(1, true)
	e.boolField(2, false)
	e.field(typeByte, 3)
	e.i8(-7)
	e.field(typeI16, 4)
	e.i16(-300)
	e.field(typeI32, 5)
	e.i32(math.MinInt32)
	e.field(typeI64, 6)
	e.i64(math.MaxInt64)
	e.field(typeDouble, 7)
	e.double(2.5)
	e.field(typeString, 8)
	e.str("héllo")
	e.field(typeString, 9)
	e.str("")
	e.field(typeUUID, 10)
	e.uuid()
	e.field(typeStruct, 11) // nested struct with a nested struct
	e.structBegin()
	e.field(typeStruct, 1)
	e.structBegin()
	e.field(typeI32, 1)
	e.i32(1)
	e.structEnd()
	e.structEnd()
	e.field(typeList, 12) // list<i32> of 20: the compact long list header
	e.list(typeList, typeI32, 20)
	for i := range 20 {
		e.i32(int32(i * 1000))
	}
	e.field(typeSet, 13) // set<string>
	e.list(typeSet, typeString, 3)
	e.str("a")
	e.str("bb")
	e.str("")
	e.field(typeList, 14) // empty list<double>
	e.list(typeList, typeDouble, 0)
	e.field(typeMap, 15) // map<string, list<bool>>
	e.mapBegin(typeString, typeList, 2)
	e.str("k1")
	e.list(typeList, typeBool, 3)
	e.boolean(true)
	e.boolean(false)
	e.boolean(true)
	e.str("k2")
	e.list(typeList, typeBool, 0)
	e.field(typeMap, 16) // empty map
	e.mapBegin(typeI32, typeI32, 0)
	e.field(typeList, 17) // list<struct>
	e.list(typeList, typeStruct, 2)
	e.structBegin()
	e.field(typeDouble, 1)
	e.double(1)
	e.structEnd()
	e.structBegin()
	e.structEnd()
	e.field(typeMap, 18) // map<i64, uuid>
	e.mapBegin(typeI64, typeUUID, 1)
	e.i64(-1)
	e.uuid()
	e.field(typeList, 19) // list<list<byte>>
	e.list(typeList, typeList, 2)
	e.list(typeList, typeByte, 2)
	e.i8(1)
	e.i8(2)
	e.list(typeList, typeByte, 0)
	e.field(typeI16, 1000) // far field id: the compact long field header
	e.i16(5)
	e.field(typeI32, -3) // negative field id
	e.i32(-3)
	e.field(typeList, 20) // list<i16>, list<i64> in fixed-size binary form
	e.list(typeList, typeI16, 3)
	e.i16(1)
	e.i16(2)
	e.i16(3)
	e.field(typeSet, 21)
	e.list(typeSet, typeI64, 2)
	e.i64(1)
	e.i64(2)
	e.structEnd()
}
