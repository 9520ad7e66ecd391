// Package canon is the canonical encoding of everything dicomesh signs.
//
// A message is a sequence of fields. Each field is a uvarint key (tag<<1 |
// wire type; wire type 0 carries a uvarint, 1 carries length-prefixed bytes)
// followed by its value. The encoding is canonical: tags strictly increase,
// except that the elements of a repeated field follow each other under one
// tag; singular fields holding their zero value are omitted; varints are
// minimal; strings are valid UTF-8; nested messages are length-prefixed.
//
// The decoder is strict: it rejects unknown or out-of-order fields, a
// singular field present twice or present with its zero value, non-minimal
// varints, lengths past the end, trailing bytes, invalid UTF-8 and nesting
// deeper than MaxDepth. Hence every input that decodes re-encodes to exactly
// the same bytes, and a signature over the bytes is a signature over the value.
//
// The package performs no I/O.
package canon
