package ingest

import (
	"compress/flate"
	"encoding/binary"
	"io"
)

// A small Part 10 byte builder for tests: elements, items and delimiters in
// any of the three uncompressed encodings, file meta, and whole instances.

const (
	tsImplicitLE = "1.2.840.10008.1.2"
	tsExplicitLE = "1.2.840.10008.1.2.1"
	tsExplicitBE = "1.2.840.10008.1.2.2"
	tsJPEG       = "1.2.840.10008.1.2.4.50"
	ctImage      = "1.2.840.10008.5.1.4.1.1.2"
)

type byteOrder interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

type enc struct {
	order    byteOrder
	implicit bool
}

var (
	explicitLE = enc{binary.LittleEndian, false}
	implicitLE = enc{binary.LittleEndian, true}
	explicitBE = enc{binary.BigEndian, false}
)

func encOf(ts string) enc {
	switch ts {
	case tsImplicitLE:
		return implicitLE
	case tsExplicitBE:
		return explicitBE
	}
	return explicitLE
}

func longForm(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		return true
	}
	return false
}

// header appends an element header declaring length.
func (e enc) header(b []byte, group, el uint16, vr string, length uint32) []byte {
	b = e.order.AppendUint16(b, group)
	b = e.order.AppendUint16(b, el)
	if e.implicit {
		return e.order.AppendUint32(b, length)
	}
	b = append(b, vr...)
	if longForm(vr) {
		b = append(b, 0, 0)
		return e.order.AppendUint32(b, length)
	}
	return e.order.AppendUint16(b, uint16(length))
}

// raw appends an element with value v.
func (e enc) raw(b []byte, group, el uint16, vr string, v []byte) []byte {
	return append(e.header(b, group, el, vr, uint32(len(v))), v...)
}

// str appends a text element padded to even length.
func (e enc) str(b []byte, group, el uint16, vr, v string) []byte {
	if len(v)%2 == 1 {
		if vr == "UI" {
			v += "\x00"
		} else {
			v += " "
		}
	}
	return e.raw(b, group, el, vr, []byte(v))
}

func (e enc) us(b []byte, group, el uint16, v uint16) []byte {
	return e.raw(b, group, el, "US", e.order.AppendUint16(nil, v))
}

// item appends an item header.
func (e enc) item(b []byte, length uint32) []byte {
	b = e.order.AppendUint16(b, 0xFFFE)
	b = e.order.AppendUint16(b, 0xE000)
	return e.order.AppendUint32(b, length)
}

func (e enc) delim(b []byte, el uint16) []byte {
	b = e.order.AppendUint16(b, 0xFFFE)
	b = e.order.AppendUint16(b, el)
	return e.order.AppendUint32(b, 0)
}

func (e enc) itemEnd(b []byte) []byte { return e.delim(b, 0xE00D) }
func (e enc) seqEnd(b []byte) []byte  { return e.delim(b, 0xE0DD) }

// sequence appends a sequence of undefined length holding items of
// undefined length.
func (e enc) sequence(b []byte, group, el uint16, items ...[]byte) []byte {
	b = e.header(b, group, el, "SQ", undefinedLength)
	for _, it := range items {
		b = e.item(b, undefinedLength)
		b = append(b, it...)
		b = e.itemEnd(b)
	}
	return e.seqEnd(b)
}

// fileMeta returns the preamble, magic and file meta group (explicit VR
// little endian, with its group length).
func fileMeta(class, sop, ts string) []byte {
	var g []byte
	g = explicitLE.raw(g, 0x0002, 0x0001, "OB", []byte{0, 1})
	g = explicitLE.str(g, 0x0002, 0x0002, "UI", class)
	g = explicitLE.str(g, 0x0002, 0x0003, "UI", sop)
	g = explicitLE.str(g, 0x0002, 0x0010, "UI", ts)
	g = explicitLE.str(g, 0x0002, 0x0012, "UI", "1.2.826.0.1.3680043.10.1")
	out := append(make([]byte, 128), "DICM"...)
	out = explicitLE.raw(out, 0x0002, 0x0000, "UL", binary.LittleEndian.AppendUint32(nil, uint32(len(g))))
	return append(out, g...)
}

// inst describes a test instance.
type inst struct {
	ts                               string
	class, sop, study, series        string
	patientID, patientName, modality string
	number                           int
	// head holds more elements between (0008,0060) and (0010,0010), tail
	// elements after group 0028 and before the pixel data; both must
	// already be in the instance's encoding.
	head, tail []byte
	// pixels replaces the native 4x4 pixel data element.
	pixels []byte
}

// ct returns a valid CT instance in explicit VR little endian.
func ct(n int) inst {
	return inst{
		ts:    tsExplicitLE,
		class: ctImage, sop: "1.2.826.0.1.3680043.10.2." + itoa(n),
		study: "1.2.826.0.1.3680043.10.3.1", series: "1.2.826.0.1.3680043.10.4.1",
		patientID: "MRN0001", patientName: "DOE^JANE", modality: "CT", number: n,
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func (i inst) bytes() []byte {
	e := encOf(i.ts)
	var d []byte
	d = e.str(d, 0x0008, 0x0005, "CS", "ISO_IR 100")
	if i.class != "" {
		d = e.str(d, 0x0008, 0x0016, "UI", i.class)
	}
	if i.sop != "" {
		d = e.str(d, 0x0008, 0x0018, "UI", i.sop)
	}
	d = e.str(d, 0x0008, 0x0020, "DA", "20240131")
	d = e.str(d, 0x0008, 0x0060, "CS", i.modality)
	d = append(d, i.head...)
	d = e.str(d, 0x0010, 0x0010, "PN", i.patientName)
	d = e.str(d, 0x0010, 0x0020, "LO", i.patientID)
	if i.study != "" {
		d = e.str(d, 0x0020, 0x000D, "UI", i.study)
	}
	if i.series != "" {
		d = e.str(d, 0x0020, 0x000E, "UI", i.series)
	}
	d = e.str(d, 0x0020, 0x0011, "IS", "1")
	d = e.str(d, 0x0020, 0x0013, "IS", itoa(i.number))
	d = e.us(d, 0x0028, 0x0002, 1)
	d = e.str(d, 0x0028, 0x0004, "CS", "MONOCHROME2")
	d = e.us(d, 0x0028, 0x0010, 4)
	d = e.us(d, 0x0028, 0x0011, 4)
	d = e.us(d, 0x0028, 0x0100, 16)
	d = e.us(d, 0x0028, 0x0101, 12)
	d = e.us(d, 0x0028, 0x0102, 11)
	d = e.us(d, 0x0028, 0x0103, 0)
	d = append(d, i.tail...)
	if i.pixels != nil {
		d = append(d, i.pixels...)
	} else {
		d = e.raw(d, 0x7FE0, 0x0010, "OW", make([]byte, 32))
	}
	return append(fileMeta(i.class, i.sop, i.ts), d...)
}

// dicomdir returns a DICOMDIR whose image records reference ids, each a
// backslash-separated Referenced File ID.
func dicomdir(ids ...string) []byte {
	e := explicitLE
	var d []byte
	d = e.str(d, 0x0004, 0x1130, "CS", "TESTCD")
	var items [][]byte
	var it []byte
	it = e.str(it, 0x0004, 0x1430, "CS", "PATIENT")
	it = e.str(it, 0x0010, 0x0020, "LO", "MRN0001")
	items = append(items, it)
	for _, id := range ids {
		it = nil
		it = e.str(it, 0x0004, 0x1430, "CS", "IMAGE")
		it = e.str(it, 0x0004, 0x1500, "CS", id)
		it = e.str(it, 0x0004, 0x1510, "UI", ctImage)
		items = append(items, it)
	}
	d = e.sequence(d, 0x0004, 0x1220, items...)
	return append(fileMeta(mediaDirectory, "1.2.826.0.1.3680043.10.9", tsExplicitLE), d...)
}

// nested returns n Referenced Image Sequences nested in each other, all of
// undefined length.
func nested(e enc, n int) []byte {
	var b []byte
	for range n {
		b = e.header(b, 0x0008, 0x1140, "SQ", undefinedLength)
		b = e.item(b, undefinedLength)
	}
	for range n {
		b = e.itemEnd(b)
		b = e.seqEnd(b)
	}
	return b
}

// nestedDefined returns n Referenced Image Sequences nested in each other,
// all of defined length.
func nestedDefined(e enc, n int) []byte {
	var b []byte
	for range n {
		var in []byte
		in = e.item(in, uint32(len(b)))
		in = append(in, b...)
		b = e.header(nil, 0x0008, 0x1140, "SQ", uint32(len(in)))
		b = append(b, in...)
	}
	return b
}

// bomb184 is a 184-byte Part 10 file whose Patient Name declares a length of
// 0xFFFFFFF0 bytes.
func bomb184() []byte {
	g := explicitLE.str(nil, 0x0002, 0x0010, "UI", tsExplicitLE)
	b := append(make([]byte, 128), "DICM"...)
	b = explicitLE.raw(b, 0x0002, 0x0000, "UL", binary.LittleEndian.AppendUint32(nil, uint32(len(g))))
	b = append(b, g...)
	return explicitLE.header(b, 0x0010, 0x0010, "UC", 0xFFFFFFF0)
}

func zipCompressor(w io.Writer) (io.WriteCloser, error) { return flate.NewWriter(w, flate.BestSpeed) }
