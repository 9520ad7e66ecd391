package canon

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// Limits enforced by the decoder.
const (
	// MaxDepth is the deepest nesting of messages that decodes; the
	// outermost message is at depth 0.
	MaxDepth = 32
	// MaxElements bounds the elements of one repeated field. Lengths need
	// no limit of their own, since they cannot exceed the input; the element
	// count caps how much a decoder may allocate per input byte.
	MaxElements = 1 << 20
)

// ErrNonCanonical is wrapped by every error that reports a malformed or
// non-canonical input.
var ErrNonCanonical = errors.New("canon: non-canonical encoding")

// Error says where and why an input is not canonical. It wraps
// ErrNonCanonical.
type Error struct {
	Offset int    // byte offset in the input given to Unmarshal
	Tag    uint32 // the field concerned, or 0
	Reason string
}

func (e *Error) Error() string {
	if e.Tag != 0 {
		return fmt.Sprintf("canon: non-canonical encoding at byte %d, field %d: %s", e.Offset, e.Tag, e.Reason)
	}
	return fmt.Sprintf("canon: non-canonical encoding at byte %d: %s", e.Offset, e.Reason)
}

// Unwrap returns ErrNonCanonical.
func (e *Error) Unwrap() error { return ErrNonCanonical }

const (
	wireVarint = 0
	wireBytes  = 1
)

// Marshaler is implemented by types with a canonical encoding.
// MarshalCanonical calls the Encoder's methods in strictly increasing tag
// order, once per field; the Encoder panics otherwise.
type Marshaler interface{ MarshalCanonical(e *Encoder) }

// Unmarshaler is implemented by types that decode from the canonical form.
// UnmarshalCanonical calls the Decoder's methods in strictly increasing tag
// order, once per field, and may call Fail to reject values it finds
// semantically invalid. It need not check Err between calls: after an error
// every read returns a zero value.
type Unmarshaler interface{ UnmarshalCanonical(d *Decoder) }

// Marshal returns the canonical encoding of m. A message whose fields all hold
// their zero values encodes to nothing (a nil slice).
func Marshal(m Marshaler) []byte {
	var e Encoder
	m.MarshalCanonical(&e)
	return e.b
}

// Unmarshal decodes b into m, rejecting anything non-canonical: every field
// in b must be read by m, in order. Encoding errors are *Error values (which
// wrap ErrNonCanonical); an error m reported with Fail is returned unchanged.
// Byte fields are copies, so b may be reused afterwards.
func Unmarshal(b []byte, m Unmarshaler) error {
	d := &Decoder{b: b, size: len(b)}
	m.UnmarshalCanonical(d)
	d.end()
	return d.err
}

// Encoder appends fields to a message. The zero value is ready to use.
type Encoder struct {
	b    []byte
	last uint32 // last tag written (or skipped as zero)
}

// field checks the order of fields, which is a programming error to break.
func (e *Encoder) field(tag uint32) {
	if tag == 0 || tag <= e.last {
		panic(fmt.Sprintf("canon: field %d written after field %d", tag, e.last))
	}
	e.last = tag
}

func (e *Encoder) key(tag uint32, wire uint64) {
	e.b = binary.AppendUvarint(e.b, uint64(tag)<<1|wire)
}

func (e *Encoder) bytes(tag uint32, v []byte) {
	e.key(tag, wireBytes)
	e.b = binary.AppendUvarint(e.b, uint64(len(v)))
	e.b = append(e.b, v...)
}

// Uint writes an unsigned integer; 0 is omitted.
func (e *Encoder) Uint(tag uint32, v uint64) {
	e.field(tag)
	if v != 0 {
		e.key(tag, wireVarint)
		e.b = binary.AppendUvarint(e.b, v)
	}
}

// Int writes a signed integer, zigzag-encoded (0, -1, 1, -2 ... become 0,
// 1, 2, 3 ...); 0 is omitted.
func (e *Encoder) Int(tag uint32, v int64) { e.Uint(tag, uint64(v<<1)^uint64(v>>63)) }

// Bool writes true as the integer 1; false is omitted.
func (e *Encoder) Bool(tag uint32, v bool) {
	var u uint64
	if v {
		u = 1
	}
	e.Uint(tag, u)
}

// Bytes writes a byte string; an empty one is omitted.
func (e *Encoder) Bytes(tag uint32, v []byte) {
	e.field(tag)
	if len(v) > 0 {
		e.bytes(tag, v)
	}
}

// String writes a string; "" is omitted. Invalid UTF-8 sequences are written
// as U+FFFD, so that what is written always decodes; use Bytes for data that
// must survive byte for byte.
func (e *Encoder) String(tag uint32, v string) {
	e.Bytes(tag, []byte(strings.ToValidUTF8(v, "\uFFFD")))
}

// Message writes a nested message. A nil m, or one that encodes to nothing,
// is omitted, so a decoder cannot tell an absent message from an empty one.
func (e *Encoder) Message(tag uint32, m Marshaler) {
	e.field(tag)
	if m == nil {
		return
	}
	if b := Marshal(m); len(b) > 0 {
		e.bytes(tag, b)
	}
}

// Strings writes a repeated string field. Every element is written, even "",
// so the list decodes with its length intact; invalid UTF-8 is replaced as in
// String. An empty list writes nothing.
func (e *Encoder) Strings(tag uint32, v []string) {
	e.field(tag)
	for _, s := range v {
		e.bytes(tag, []byte(strings.ToValidUTF8(s, "\uFFFD")))
	}
}

// BytesList writes a repeated bytes field; every element is written, even an
// empty one.
func (e *Encoder) BytesList(tag uint32, v [][]byte) {
	e.field(tag)
	for _, b := range v {
		e.bytes(tag, b)
	}
}

// Messages writes a repeated message field of n elements, elem(0) to
// elem(n-1). Every element is written, even an empty one.
func (e *Encoder) Messages(tag uint32, n int, elem func(i int) Marshaler) {
	e.field(tag)
	for i := range n {
		e.bytes(tag, Marshal(elem(i)))
	}
}

// Decoder reads the fields of one message in increasing tag order. Its error
// is sticky: after the first problem every read returns a zero value and Err
// reports the problem.
type Decoder struct {
	b     []byte
	size  int    // len(b) at the start
	base  int    // offset of b's start in the outermost input
	last  uint32 // last tag asked for
	depth int
	err   error
}

// Fail records err, for semantic checks inside UnmarshalCanonical. Only the
// first error is kept.
func (d *Decoder) Fail(err error) {
	if d.err == nil && err != nil {
		d.err = err
	}
}

// Err returns the first error met, or nil.
func (d *Decoder) Err() error { return d.err }

func (d *Decoder) offset() int { return d.base + d.size - len(d.b) }

func (d *Decoder) failf(tag uint32, format string, args ...any) {
	d.Fail(&Error{Offset: d.offset(), Tag: tag, Reason: fmt.Sprintf(format, args...)})
}

// uvarint reads a minimal uvarint.
func (d *Decoder) uvarint(tag uint32) (uint64, bool) {
	v, n := binary.Uvarint(d.b)
	switch {
	case n == 0:
		d.failf(tag, "truncated varint")
		return 0, false
	case n < 0:
		d.failf(tag, "varint overflows 64 bits")
		return 0, false
	case n > 1 && d.b[n-1] == 0:
		d.failf(tag, "non-minimal varint")
		return 0, false
	}
	d.b = d.b[n:]
	return v, true
}

// peek returns the next field's tag and wire type without consuming it. It
// reports false at the end of the input or after an error.
func (d *Decoder) peek() (tag uint32, wire uint64, ok bool) {
	if d.err != nil || len(d.b) == 0 {
		return 0, 0, false
	}
	save := d.b
	k, ok := d.uvarint(0)
	d.b = save
	if !ok {
		return 0, 0, false
	}
	if k>>1 == 0 || k>>1 > math.MaxUint32 {
		d.failf(0, "field key %d out of range", k)
		return 0, 0, false
	}
	return uint32(k >> 1), k & 1, true
}

// next consumes the key of field tag if that field comes next with the given
// wire type, and reports whether it did.
func (d *Decoder) next(tag uint32, wire uint64) bool {
	if tag == 0 || tag <= d.last {
		panic(fmt.Sprintf("canon: field %d read after field %d", tag, d.last))
	}
	d.last = tag
	t, w, ok := d.peek()
	if !ok || t > tag {
		return false
	}
	if t < tag {
		d.failf(t, "unexpected field")
		return false
	}
	if w != wire {
		d.failf(t, "wire type %d", w)
		return false
	}
	d.uvarint(t)
	return true
}

// raw reads a length-prefixed value, aliasing the input.
func (d *Decoder) raw(tag uint32) []byte {
	start := d.offset()
	n, ok := d.uvarint(tag)
	if !ok {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.Fail(&Error{Offset: start, Tag: tag, Reason: fmt.Sprintf("length %d past the end", n)})
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// single rejects a second occurrence of a singular field.
func (d *Decoder) single(tag uint32) {
	if t, _, ok := d.peek(); ok && t == tag {
		d.failf(tag, "singular field repeated")
	}
}

// Uint reads an unsigned integer; it is 0 when absent.
func (d *Decoder) Uint(tag uint32) uint64 {
	start := d.offset()
	if !d.next(tag, wireVarint) {
		return 0
	}
	v, ok := d.uvarint(tag)
	if ok && v == 0 {
		d.Fail(&Error{Offset: start, Tag: tag, Reason: "zero value present"})
	}
	d.single(tag)
	if d.err != nil {
		return 0
	}
	return v
}

// Int reads a zigzag-encoded signed integer; it is 0 when absent.
func (d *Decoder) Int(tag uint32) int64 {
	u := d.Uint(tag)
	return int64(u>>1) ^ -int64(u&1)
}

// Bool reads a boolean; it is false when absent. Only 1 encodes true.
func (d *Decoder) Bool(tag uint32) bool {
	start := d.offset()
	v := d.Uint(tag)
	if v > 1 {
		d.Fail(&Error{Offset: start, Tag: tag, Reason: fmt.Sprintf("boolean %d", v)})
		return false
	}
	return v == 1
}

// present reads a singular length-prefixed field, rejecting an empty one.
func (d *Decoder) present(tag uint32) ([]byte, bool) {
	start := d.offset()
	if !d.next(tag, wireBytes) {
		return nil, false
	}
	v := d.raw(tag)
	if d.err == nil && len(v) == 0 {
		d.Fail(&Error{Offset: start, Tag: tag, Reason: "zero value present"})
	}
	d.single(tag)
	return v, d.err == nil
}

// Bytes reads a byte string; it is nil when absent. The result is a copy.
func (d *Decoder) Bytes(tag uint32) []byte {
	v, ok := d.present(tag)
	if !ok {
		return nil
	}
	return bytes.Clone(v)
}

// String reads a string, which must be valid UTF-8; it is "" when absent.
func (d *Decoder) String(tag uint32) string {
	start := d.offset()
	v, ok := d.present(tag)
	if !ok {
		return ""
	}
	if !utf8.Valid(v) {
		d.Fail(&Error{Offset: start, Tag: tag, Reason: "invalid UTF-8"})
		return ""
	}
	return string(v)
}

// Message decodes a nested message into m and reports whether it was present
// and valid. An absent message leaves m untouched.
func (d *Decoder) Message(tag uint32, m Unmarshaler) bool {
	start := d.offset()
	v, ok := d.present(tag)
	if !ok {
		return false
	}
	// v is non-empty and followed by no second occurrence; its contents start
	// after the key and length.
	d.sub(v, start+keyLen(tag)+uvarintLen(uint64(len(v))), m.UnmarshalCanonical)
	return d.err == nil
}

func keyLen(tag uint32) int { return uvarintLen(uint64(tag) << 1) }

func uvarintLen(v uint64) int {
	var buf [binary.MaxVarintLen64]byte
	return binary.PutUvarint(buf[:], v)
}

// sub decodes b, found at offset base, with fn one level deeper.
func (d *Decoder) sub(b []byte, base int, fn func(*Decoder)) {
	if d.err != nil {
		return
	}
	if d.depth >= MaxDepth {
		d.Fail(&Error{Offset: base, Reason: fmt.Sprintf("nested deeper than %d", MaxDepth)})
		return
	}
	sd := &Decoder{b: b, size: len(b), base: base, depth: d.depth + 1}
	fn(sd)
	sd.end()
	d.Fail(sd.err)
}

// repeated calls fn with each element of a repeated field and the element's
// offset, stopping at the first error.
func (d *Decoder) repeated(tag uint32, fn func(v []byte, at int)) {
	if !d.next(tag, wireBytes) {
		return
	}
	for i := 0; ; i++ {
		if i == MaxElements {
			d.failf(tag, "more than %d elements", MaxElements)
			return
		}
		v := d.raw(tag)
		if d.err != nil {
			return
		}
		fn(v, d.offset()-len(v))
		t, w, ok := d.peek()
		if !ok || t != tag {
			return
		}
		if w != wireBytes {
			d.failf(t, "wire type %d", w)
			return
		}
		d.uvarint(t)
	}
}

// Strings reads a repeated string field; it is nil when absent.
func (d *Decoder) Strings(tag uint32) []string {
	var out []string
	d.repeated(tag, func(v []byte, at int) {
		if !utf8.Valid(v) {
			d.Fail(&Error{Offset: at, Tag: tag, Reason: "invalid UTF-8"})
			return
		}
		out = append(out, string(v))
	})
	if d.err != nil {
		return nil
	}
	return out
}

// BytesList reads a repeated bytes field; it is nil when absent. The elements
// are copies; an empty element is a non-nil empty slice.
func (d *Decoder) BytesList(tag uint32) [][]byte {
	var out [][]byte
	d.repeated(tag, func(v []byte, _ int) { out = append(out, append([]byte{}, v...)) })
	if d.err != nil {
		return nil
	}
	return out
}

// Messages reads a repeated message field, calling elem with a fresh Decoder
// for each element in order. Each element must be read completely, like a
// message passed to Unmarshal.
func (d *Decoder) Messages(tag uint32, elem func(d *Decoder)) {
	d.repeated(tag, func(v []byte, at int) { d.sub(v, at, elem) })
}

// end rejects whatever was not read.
func (d *Decoder) end() {
	if t, _, ok := d.peek(); ok {
		d.failf(t, "unexpected field")
	}
}
