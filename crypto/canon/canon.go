package canon

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"
)

// Limits enforced by the decoder.
const (
	MaxDepth    = 32
	MaxElements = 1 << 16 // elements of one repeated field
)

// ErrNonCanonical wraps every decoding error.
var ErrNonCanonical = errors.New("canon: non-canonical encoding")

const (
	wireVarint = 0
	wireBytes  = 1
)

// Marshaler is implemented by types with a canonical encoding. It writes
// fields in increasing tag order.
type Marshaler interface{ MarshalCanonical(e *Encoder) }

// Unmarshaler is implemented by types that decode from the canonical form. It
// reads fields in increasing tag order.
type Unmarshaler interface{ UnmarshalCanonical(d *Decoder) }

// Marshal returns the canonical encoding of m.
func Marshal(m Marshaler) []byte {
	var e Encoder
	m.MarshalCanonical(&e)
	return e.b
}

// Unmarshal decodes b into m, rejecting anything non-canonical.
func Unmarshal(b []byte, m Unmarshaler) error {
	d := &Decoder{b: b}
	m.UnmarshalCanonical(d)
	d.end()
	return d.err
}

// Encoder appends fields.
type Encoder struct {
	b    []byte
	last uint32
}

func (e *Encoder) key(tag uint32, wire uint64) {
	if tag == 0 || tag < e.last {
		panic(fmt.Sprintf("canon: field %d written after field %d", tag, e.last))
	}
	e.last = tag
	e.b = binary.AppendUvarint(e.b, uint64(tag)<<1|wire)
}

// Uint writes an unsigned integer; 0 is omitted.
func (e *Encoder) Uint(tag uint32, v uint64) {
	if v != 0 {
		e.key(tag, wireVarint)
		e.b = binary.AppendUvarint(e.b, v)
	}
}

// Int writes a signed integer (zigzag); 0 is omitted.
func (e *Encoder) Int(tag uint32, v int64) { e.Uint(tag, uint64(v<<1)^uint64(v>>63)) }

// Bool writes true as 1; false is omitted.
func (e *Encoder) Bool(tag uint32, v bool) {
	if v {
		e.Uint(tag, 1)
	}
}

// Bytes writes a byte string; empty is omitted.
func (e *Encoder) Bytes(tag uint32, v []byte) {
	if len(v) > 0 {
		e.bytes(tag, v)
	}
}

func (e *Encoder) bytes(tag uint32, v []byte) {
	e.key(tag, wireBytes)
	e.b = binary.AppendUvarint(e.b, uint64(len(v)))
	e.b = append(e.b, v...)
}

// String writes a UTF-8 string; empty is omitted. Invalid UTF-8 panics: it
// could not be decoded.
func (e *Encoder) String(tag uint32, v string) {
	if !utf8.ValidString(v) {
		panic("canon: invalid UTF-8 in string field")
	}
	e.Bytes(tag, []byte(v))
}

// Message writes a nested message; one that encodes to nothing is omitted.
func (e *Encoder) Message(tag uint32, m Marshaler) {
	if b := Marshal(m); len(b) > 0 {
		e.bytes(tag, b)
	}
}

// Strings writes a repeated string field; every element is present, even "".
func (e *Encoder) Strings(tag uint32, v []string) {
	for _, s := range v {
		if !utf8.ValidString(s) {
			panic("canon: invalid UTF-8 in string field")
		}
		e.bytes(tag, []byte(s))
	}
}

// BytesList writes a repeated bytes field.
func (e *Encoder) BytesList(tag uint32, v [][]byte) {
	for _, b := range v {
		e.bytes(tag, b)
	}
}

// Messages writes a repeated message field of n elements.
func (e *Encoder) Messages(tag uint32, n int, elem func(i int) Marshaler) {
	for i := range n {
		e.bytes(tag, Marshal(elem(i)))
	}
}

// Decoder reads fields in increasing tag order. Its error is sticky: after
// the first problem every read returns a zero value and Err reports it.
type Decoder struct {
	b     []byte
	last  uint32 // last tag asked for
	depth int
	err   error
}

// Fail records err (for semantic checks inside UnmarshalCanonical).
func (d *Decoder) Fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

// Err returns the first error met.
func (d *Decoder) Err() error { return d.err }

func (d *Decoder) failf(format string, args ...any) {
	d.Fail(fmt.Errorf("%w: %s", ErrNonCanonical, fmt.Sprintf(format, args...)))
}

// uvarint reads a minimal uvarint.
func (d *Decoder) uvarint() (uint64, bool) {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.failf("bad varint")
		return 0, false
	}
	if n != len(binary.AppendUvarint(nil, v)) {
		d.failf("non-minimal varint")
		return 0, false
	}
	d.b = d.b[n:]
	return v, true
}

// peek returns the next field's tag and wire type without consuming it.
func (d *Decoder) peek() (tag uint32, wire uint64, ok bool) {
	if d.err != nil || len(d.b) == 0 {
		return 0, 0, false
	}
	save := d.b
	k, ok := d.uvarint()
	d.b = save
	if !ok {
		return 0, 0, false
	}
	if k>>1 == 0 || k>>1 > math.MaxUint32 {
		d.failf("bad field key")
		return 0, 0, false
	}
	return uint32(k >> 1), k & 1, true
}

// next consumes the field tag if it is next with the given wire type and
// reports whether it was present.
func (d *Decoder) next(tag uint32, wire uint64) bool {
	if d.err != nil {
		return false
	}
	if tag <= d.last {
		panic(fmt.Sprintf("canon: field %d read after field %d", tag, d.last))
	}
	d.last = tag
	t, w, ok := d.peek()
	if !ok {
		return false
	}
	if t < tag {
		d.failf("unexpected field %d", t)
		return false
	}
	if t > tag {
		return false
	}
	if w != wire {
		d.failf("field %d has wire type %d", t, w)
		return false
	}
	d.uvarint()
	return true
}

func (d *Decoder) value(tag uint32) uint64 {
	v, _ := d.uvarint()
	if v == 0 && d.err == nil {
		d.failf("field %d present with its zero value", tag)
	}
	return v
}

func (d *Decoder) raw() []byte {
	n, ok := d.uvarint()
	if !ok {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.failf("length %d past the end", n)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// afterSingular rejects a second occurrence of a singular field.
func (d *Decoder) afterSingular(tag uint32) {
	if t, _, ok := d.peek(); ok && t == tag {
		d.failf("field %d repeated", tag)
	}
}

// Uint reads an unsigned integer (0 when absent).
func (d *Decoder) Uint(tag uint32) uint64 {
	if !d.next(tag, wireVarint) {
		return 0
	}
	v := d.value(tag)
	d.afterSingular(tag)
	return v
}

// Int reads a zigzag-encoded signed integer.
func (d *Decoder) Int(tag uint32) int64 {
	u := d.Uint(tag)
	return int64(u>>1) ^ -int64(u&1)
}

// Bool reads a boolean.
func (d *Decoder) Bool(tag uint32) bool {
	v := d.Uint(tag)
	if v > 1 {
		d.failf("field %d: boolean %d", tag, v)
	}
	return v == 1
}

// Bytes reads a byte string (nil when absent).
func (d *Decoder) Bytes(tag uint32) []byte {
	if !d.next(tag, wireBytes) {
		return nil
	}
	v := d.raw()
	if len(v) == 0 && d.err == nil {
		d.failf("field %d present with its zero value", tag)
	}
	d.afterSingular(tag)
	return v
}

// String reads a UTF-8 string.
func (d *Decoder) String(tag uint32) string {
	v := d.Bytes(tag)
	if !utf8.Valid(v) {
		d.failf("field %d: invalid UTF-8", tag)
		return ""
	}
	return string(v)
}

// Message reads a nested message and reports whether it was present.
func (d *Decoder) Message(tag uint32, m Unmarshaler) bool {
	if !d.next(tag, wireBytes) {
		return false
	}
	v := d.raw()
	if len(v) == 0 && d.err == nil {
		d.failf("field %d present with its zero value", tag)
	}
	d.sub(v, m.UnmarshalCanonical)
	d.afterSingular(tag)
	return d.err == nil
}

func (d *Decoder) sub(b []byte, fn func(*Decoder)) {
	if d.err != nil {
		return
	}
	if d.depth+1 > MaxDepth {
		d.failf("nested deeper than %d", MaxDepth)
		return
	}
	sd := &Decoder{b: b, depth: d.depth + 1}
	fn(sd)
	sd.end()
	d.Fail(sd.err)
}

// repeated calls fn for each element of a repeated field.
func (d *Decoder) repeated(tag uint32, fn func(v []byte)) {
	for i := 0; ; i++ {
		if i == 0 {
			if !d.next(tag, wireBytes) {
				return
			}
		} else {
			t, w, ok := d.peek()
			if !ok || t != tag {
				return
			}
			if w != wireBytes {
				d.failf("field %d has wire type %d", t, w)
				return
			}
			d.uvarint()
		}
		if i >= MaxElements {
			d.failf("field %d has more than %d elements", tag, MaxElements)
			return
		}
		v := d.raw()
		if d.err != nil {
			return
		}
		fn(v)
	}
}

// Strings reads a repeated string field.
func (d *Decoder) Strings(tag uint32) []string {
	var out []string
	d.repeated(tag, func(v []byte) {
		if !utf8.Valid(v) {
			d.failf("field %d: invalid UTF-8", tag)
		}
		out = append(out, string(v))
	})
	return out
}

// BytesList reads a repeated bytes field.
func (d *Decoder) BytesList(tag uint32) [][]byte {
	var out [][]byte
	d.repeated(tag, func(v []byte) { out = append(out, v) })
	return out
}

// Messages reads a repeated message field, calling elem with a decoder for
// each element.
func (d *Decoder) Messages(tag uint32, elem func(d *Decoder)) {
	d.repeated(tag, func(v []byte) { d.sub(v, elem) })
}

// end rejects whatever was not read.
func (d *Decoder) end() {
	if d.err == nil && len(d.b) > 0 {
		if t, _, ok := d.peek(); ok {
			d.failf("unexpected field %d", t)
		} else if d.err == nil {
			d.failf("trailing bytes")
		}
	}
}
