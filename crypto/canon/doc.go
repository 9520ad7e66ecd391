// Package canon is the canonical encoding of everything dicomesh signs.
//
// # Wire format
//
// A message is a sequence of fields. Each field is a uvarint key, tag<<1 | wire
// type, followed by its value: wire type 0 carries a uvarint, wire type 1 a
// uvarint length and that many bytes. Tags are 1 to 2^32-1.
//
//	Uint       wire 0, the value
//	Int        wire 0, zigzag: 0, -1, 1, -2 ... are 0, 1, 2, 3 ...
//	Bool       wire 0, true is 1
//	Bytes      wire 1
//	String     wire 1, valid UTF-8
//	Message    wire 1, the nested message's encoding
//	Strings, BytesList, Messages
//	           one wire-1 field per element, consecutive, under one tag
//
// # Canonical form
//
// Tags strictly increase, except that the elements of a repeated field follow
// each other under one tag. A singular field holding its zero value (0, false,
// empty bytes or string, a message that encodes to nothing) is omitted, so an
// absent nested message and an empty one are the same value. Elements of a
// repeated field are always present, even when empty, so a list keeps its
// length. Varints are minimal. Strings are valid UTF-8: the Encoder writes
// invalid sequences as U+FFFD rather than fail.
//
// The decoder is strict. It rejects unknown or out-of-order fields, a singular
// field present twice or present with its zero value, a wrong wire type,
// non-minimal or overflowing varints, lengths past the end, trailing bytes,
// invalid UTF-8, nesting deeper than MaxDepth and repeated fields with more
// than MaxElements elements. Hence every input that decodes re-encodes to
// exactly the same bytes, and a signature over the bytes is a signature over
// the value. Such errors are *Error values, which carry the byte offset and
// wrap ErrNonCanonical.
//
// # Use
//
// A type implements Marshaler and Unmarshaler by calling the Encoder's and
// Decoder's methods for each field in increasing tag order:
//
//	func (c *Cmd) MarshalCanonical(e *canon.Encoder) {
//		e.String(1, c.Kind)
//		e.Uint(2, c.Seq)
//		e.Strings(3, c.Tokens)
//	}
//
//	func (c *Cmd) UnmarshalCanonical(d *canon.Decoder) {
//		c.Kind = d.String(1)
//		c.Seq = d.Uint(2)
//		c.Tokens = d.Strings(3)
//		if c.Kind == "" {
//			d.Fail(ErrMissingKind)
//		}
//	}
//
// Calling them out of order is a programming error and panics. The Decoder's
// error is sticky, like cryptobyte's: after the first problem every read
// returns a zero value. Decoded byte fields are copies of the input.
//
// The package performs no I/O, reads no clock and never logs.
package canon
