package ingest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dicomesh/dicomesh/node/archive"
)

func TestParseAccepts(t *testing.T) {
	encapsulated := func() []byte {
		e := explicitLE
		b := e.header(nil, 0x7FE0, 0x0010, "OB", undefinedLength)
		b = e.item(b, 0) // empty basic offset table
		b = e.item(b, 6)
		b = append(b, 0xFF, 0xD8, 0xFF, 0xD9, 0, 0)
		b = e.item(b, 2)
		b = append(b, 0xFF, 0xD9)
		return e.seqEnd(b)
	}
	privateSeq := func(e enc) []byte {
		// A private sequence: UN of undefined length in implicit VR.
		var it []byte
		it = e.str(it, 0x0009, 0x0010, "LO", "ACME")
		return e.sequence(e.str(nil, 0x0009, 0x0010, "LO", "ACME"), 0x0009, 0x1001, it)
	}
	noGroupLength := func() []byte {
		b := ct(1).bytes()
		// Drop (0002,0000): 12 bytes after the magic.
		return append(b[:132:132], b[144:]...)
	}
	// unSeq is UN of undefined length holding a sequence in implicit VR, as
	// the standard has it.
	unSeq := func(group, el uint16) []byte {
		var b []byte
		if group%2 == 1 {
			b = explicitLE.str(b, group, 0x0010, "LO", "ACME")
		}
		b = explicitLE.header(b, group, el, "UN", undefinedLength)
		b = implicitLE.item(b, undefinedLength)
		b = implicitLE.str(b, 0x0008, 0x1150, "UI", ctImage)
		b = implicitLE.itemEnd(b)
		return implicitLE.seqEnd(b)
	}
	tests := []struct {
		name string
		data []byte
		ts   string
	}{
		{"private UN sequence in implicit VR", func() []byte { i := ct(1); i.head = unSeq(0x0009, 0x1001); return i.bytes() }(), tsExplicitLE},
		{"public UN sequence in implicit VR", func() []byte { i := ct(1); i.head = unSeq(0x0008, 0x1140); return i.bytes() }(), tsExplicitLE},
		{"explicit VR little endian", ct(1).bytes(), tsExplicitLE},
		{"implicit VR little endian", func() []byte { i := ct(1); i.ts = tsImplicitLE; return i.bytes() }(), tsImplicitLE},
		{"explicit VR big endian", func() []byte { i := ct(1); i.ts = tsExplicitBE; return i.bytes() }(), tsExplicitBE},
		{"no file meta group length", noGroupLength(), tsExplicitLE},
		{"encapsulated pixel data", func() []byte { i := ct(1); i.ts = tsJPEG; i.pixels = encapsulated(); return i.bytes() }(), tsJPEG},
		{"sequences nested 16 deep", func() []byte { i := ct(1); i.head = nested(explicitLE, MaxDepth); return i.bytes() }(), tsExplicitLE},
		{"defined-length sequences nested 16 deep, implicit VR", func() []byte {
			i := ct(1)
			i.ts, i.head = tsImplicitLE, nestedDefined(implicitLE, MaxDepth)
			return i.bytes()
		}(), tsImplicitLE},
		{"private sequence of undefined length, implicit VR", func() []byte {
			i := ct(1)
			i.ts, i.head = tsImplicitLE, privateSeq(implicitLE)
			return i.bytes()
		}(), tsImplicitLE},
		{"large private element after the parsed groups", func() []byte {
			i := ct(1)
			i.tail = explicitLE.raw(nil, 0x0029, 0x1010, "OB", make([]byte, 1<<16))
			return i.bytes()
		}(), tsExplicitLE},
	}
	want := archive.InstanceMeta{
		SOPClassUID: ctImage, SOPInstanceUID: "1.2.826.0.1.3680043.10.2.1",
		SeriesInstanceUID: "1.2.826.0.1.3680043.10.4.1", StudyInstanceUID: "1.2.826.0.1.3680043.10.3.1",
		PatientID: "MRN0001", PatientName: "DOE^JANE", StudyDate: "20240131", Modality: "CT",
		SeriesNumber: 1, InstanceNumber: 1,
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse(tt.data)
			if err != nil {
				t.Fatal(err)
			}
			w := want
			w.TransferSyntaxUID = tt.ts
			if diff := cmp.Diff(w, m); diff != "" {
				t.Errorf("meta (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseUsesFileMetaForMissingSOPUIDs(t *testing.T) {
	i := ct(7)
	b := i.bytes()
	// Blank the dataset's SOP Class and Instance UIDs by renaming their tags
	// to private ones; the file meta still carries both.
	for _, el := range []uint16{0x0016, 0x0018} {
		h := explicitLE.header(nil, 0x0008, el, "UI", 0)[:6]
		at := bytes.Index(b[200:], h[:4]) + 200
		binary.LittleEndian.PutUint16(b[at:], 0x0009)
	}
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if m.SOPClassUID != i.class || m.SOPInstanceUID != i.sop {
		t.Errorf("got class %q instance %q", m.SOPClassUID, m.SOPInstanceUID)
	}
}

type hostileInput struct {
	name string
	data []byte
	want error
}

// hostile returns crafted inputs with the sentinel each must be rejected
// with. They are built once; callers must not modify them.
var hostile = sync.OnceValue(makeHostile)

func makeHostile() []hostileInput {
	e := explicitLE
	valid := ct(1).bytes()
	withHead := func(head []byte) []byte { i := ct(1); i.head = head; return i.bytes() }
	withTail := func(tail []byte) []byte { i := ct(1); i.tail = tail; return i.bytes() }
	withPixels := func(px []byte) []byte { i := ct(1); i.ts, i.pixels = tsJPEG, px; return i.bytes() }
	withUIDs := func(f func(*inst)) []byte { i := ct(1); f(&i); return i.bytes() }
	withTS := func(ts string) []byte {
		return append(fileMeta(ctImage, "1.2.3", ts), e.str(nil, 0x0008, 0x0016, "UI", ctImage)...)
	}
	metaLength := func(delta int) []byte {
		b := ct(1).bytes()
		n := binary.LittleEndian.Uint32(b[140:])
		binary.LittleEndian.PutUint32(b[140:], uint32(int(n)+delta))
		return b
	}
	seqWith := func(body []byte) []byte {
		b := e.header(nil, 0x0008, 0x1140, "SQ", undefinedLength)
		return append(b, body...)
	}
	implicitDeep := func() []byte {
		i := ct(1)
		i.ts, i.head = tsImplicitLE, nestedDefined(implicitLE, 100)
		return i.bytes()
	}
	return []hostileInput{
		{"empty", nil, ErrNotDICOM},
		{"viewer program", []byte("MZ\x90\x00\x03\x00\x00\x00 This program cannot be run in DOS mode"), ErrNotDICOM},
		{"text", []byte("This CD contains a DICOM viewer.\r\n"), ErrNotDICOM},
		{"131 bytes", make([]byte, 131), ErrNotDICOM},
		{"raw explicit dataset", valid[bytes.Index(valid, []byte{8, 0, 5, 0}):], ErrNoFileMeta},
		{"raw implicit dataset", func() []byte {
			i := ct(1)
			i.ts = tsImplicitLE
			b := i.bytes()
			return b[bytes.Index(b, []byte{8, 0, 5, 0, 10, 0, 0, 0}):]
		}(), ErrNoFileMeta},
		{"magic without preamble", valid[128:], ErrNoFileMeta},
		{"184-byte huge declared length", bomb184(), ErrMalformed},
		{"4 GiB declared pixel data", withTail(e.header(nil, 0x7FE0, 0x0010, "OW", 0xFFFFFFF0)), ErrMalformed},
		{"truncated", valid[:len(valid)/2], ErrMalformed},
		{"truncated in the file meta", valid[:140], ErrMalformed},
		{"truncated by one byte", valid[:len(valid)-1], ErrMalformed},
		{"sequences nested 17 deep", withHead(nested(e, MaxDepth+1)), ErrTooLarge},
		{"sequences nested 10000 deep", withHead(nested(e, 10000)), ErrTooLarge},
		{"defined-length sequences nested 100 deep, implicit VR", implicitDeep(), ErrTooLarge},
		{"file meta group length too long", metaLength(+8), ErrMalformed},
		{"file meta group length too short", metaLength(-8), ErrMalformed},
		{"file meta group length overruns", metaLength(1 << 30), ErrMalformed},
		{"no transfer syntax", append(append(make([]byte, 128), "DICM"...), e.str(nil, 0x0002, 0x0002, "UI", ctImage)...), ErrMalformed},
		{"no dataset", fileMeta(ctImage, "1.2.3", tsExplicitLE), ErrMalformed},
		{"deflated", withTS("1.2.840.10008.1.2.1.99"), ErrUnsupported},
		{"private transfer syntax", withTS("1.2.3.4.5"), ErrUnsupported},
		{"path-like transfer syntax", withTS("../../etc"), ErrInvalidUID},
		{"path-like SOP Instance UID", withUIDs(func(i *inst) { i.sop = "../../etc/passwd" }), ErrInvalidUID},
		{"path-like Study UID", withUIDs(func(i *inst) { i.study = "1.2/../../x" }), ErrInvalidUID},
		{"leading zero in a Series UID", withUIDs(func(i *inst) { i.series = "1.02.3" }), ErrInvalidUID},
		{"65-character SOP Instance UID", withUIDs(func(i *inst) { i.sop = "1." + strings.Repeat("2", 63) }), ErrInvalidUID},
		{"multi-valued Study UID", withUIDs(func(i *inst) { i.study = `1.2.3\1.2.4` }), ErrInvalidUID},
		{"no Series UID", withUIDs(func(i *inst) { i.series = "" }), ErrInvalidUID},
		{"no Study UID", withUIDs(func(i *inst) { i.study = "" }), ErrInvalidUID},
		{"invalid VR", withHead([]byte{8, 0, 0x30, 0x10, 'u', '!', 2, 0, 'A', ' '}), ErrMalformed},
		{"SV VR", withHead(e.raw(nil, 0x0008, 0x1030, "SV", make([]byte, 8))), ErrUnsupported},
		{"undefined length on a text element", withHead(e.header(nil, 0x0008, 0x1030, "UT", undefinedLength)), ErrMalformed},
		{"short length FFFF", withHead(append(e.header(nil, 0x0008, 0x1030, "LO", 0xFFFF), make([]byte, 0xFFFF)...)), ErrMalformed},
		{"undefined length on OB", withTail(append(e.header(nil, 0x0029, 0x1010, "OB", undefinedLength), e.seqEnd(nil)...)), ErrMalformed},
		{"item outside a sequence", withHead(e.item(nil, 0)), ErrMalformed},
		{"element directly in a sequence", withHead(seqWith(append(e.str(nil, 0x0008, 0x1150, "UI", ctImage), e.seqEnd(nil)...))), ErrMalformed},
		{"sequence without delimiter", withTail(e.header(nil, 0x0040, 0xA730, "SQ", undefinedLength)), ErrMalformed},
		{"sequence delimiter with a length", withHead(seqWith(e.item(nil, 0x0DD0)[:4])), ErrMalformed},
		{"item without delimiter", withHead(seqWith(e.item(nil, undefinedLength))), ErrMalformed},
		{"item overruns its sequence", func() []byte {
			b := e.header(nil, 0x0008, 0x1140, "SQ", 8)
			b = e.item(b, 16)
			return withHead(b)
		}(), ErrMalformed},
		{"pixel data without offset table", withPixels(e.seqEnd(e.header(nil, 0x7FE0, 0x0010, "OB", undefinedLength))), ErrMalformed},
		{"pixel fragment of undefined length", withPixels(e.item(e.item(e.header(nil, 0x7FE0, 0x0010, "OB", undefinedLength), 0), undefinedLength)), ErrMalformed},
		{"pixel fragment of 4 GiB", withPixels(e.item(e.item(e.header(nil, 0x7FE0, 0x0010, "OB", undefinedLength), 0), 0xFFFFFFF0)), ErrMalformed},
		{"pixel data without delimiter", withPixels(e.item(e.header(nil, 0x7FE0, 0x0010, "OB", undefinedLength), 0)), ErrMalformed},
		{"numeric value past the bound, implicit VR", func() []byte {
			i := ct(1)
			i.ts, i.head = tsImplicitLE, implicitLE.raw(nil, 0x0008, 0x1161, "UL", make([]byte, MaxNumericBytes+4))
			return i.bytes()
		}(), ErrTooLarge},
		{"numeric values past the bound", func() []byte {
			var b []byte
			for range MaxNumericBytes/0xFFF0 + 1 {
				b = e.raw(b, 0x0008, 0x1161, "UL", make([]byte, 0xFFF0))
			}
			return withHead(b)
		}(), ErrTooLarge},
		{"too many elements", func() []byte {
			var b []byte
			for range MaxElements {
				b = e.header(b, 0x0009, 0x1000, "LO", 0)
			}
			return withHead(b)
		}(), ErrTooLarge},
		{"UN sequence in implicit VR inside a parsed sequence", func() []byte {
			var it []byte
			it = e.str(it, 0x0009, 0x0010, "LO", "ACME")
			it = e.header(it, 0x0009, 0x1001, "UN", undefinedLength)
			it = implicitLE.item(it, undefinedLength)
			it = implicitLE.str(it, 0x0008, 0x1150, "UI", ctImage)
			it = implicitLE.seqEnd(implicitLE.itemEnd(it))
			return withHead(e.sequence(nil, 0x0008, 0x1140, it))
		}(), ErrUnsupported},
		{"huge length in a private element", withHead(append(e.str(nil, 0x0009, 0x0010, "LO", "ACME"), e.header(nil, 0x0009, 0x1001, "UT", 0xFFFFFFF0)...)), ErrMalformed},
		{"binary specific character set", func() []byte {
			b := fileMeta(ctImage, "1.2.3", tsExplicitLE)
			return e.us(b, 0x0008, 0x0005, 1)
		}(), ErrMalformed},
		{"DICOMDIR", dicomdir(`DICOM\IM1`), ErrDirectory},
	}
}

func TestParseRejects(t *testing.T) {
	for _, tt := range hostile() {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.data)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			var re *RejectError
			if !errors.As(err, &re) || re.Err == nil {
				t.Fatalf("%T is not a *RejectError", err)
			}
			if strings.ContainsAny(err.Error(), "\n\x00") {
				t.Errorf("error %q has control characters", err)
			}
		})
	}
}

func TestBomb184IsThe184ByteFile(t *testing.T) {
	if n := len(bomb184()); n != 184 {
		t.Fatalf("bomb is %d bytes", n)
	}
}

func TestValidUID(t *testing.T) {
	tests := []struct {
		uid string
		ok  bool
	}{
		{"1.2.840.10008.1.2.1", true},
		{"0", true},
		{"1.0.2", true},
		{"2.25.329800735698586629295641978511506172918", true},
		{"1." + strings.Repeat("2", 62), true},
		{"1." + strings.Repeat("2", 63), false},
		{"", false},
		{".", false},
		{"1..2", false},
		{"1.2.", false},
		{".1.2", false},
		{"1.02", false},
		{"00", false},
		{"../../etc", false},
		{"1.2/3", false},
		{"1.2 ", false},
		{"1.2\x00", false},
		{`1.2\3`, false},
		{"1.2.a", false},
		{"１.2", false},
	}
	for _, tt := range tests {
		if err := validUID(tt.uid); (err == nil) != tt.ok {
			t.Errorf("validUID(%q) = %v, want ok %v", tt.uid, err, tt.ok)
		}
	}
}

func TestRejectError(t *testing.T) {
	err := withPath(reject(ErrMalformed, "element (0010,0010) at offset 172 declares 4294967280 bytes"), "in/broken.dcm")
	if err.Path != "in/broken.dcm" || !errors.Is(err, ErrMalformed) || errors.Is(err, ErrNotDICOM) {
		t.Fatalf("%#v", err)
	}
	if got, want := err.Error(), "malformed DICOM: element (0010,0010) at offset 172 declares 4294967280 bytes"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	other := withPath(errors.New("permission denied"), "x")
	if !errors.Is(other, ErrUnreadable) {
		t.Errorf("a plain error became %v", other)
	}
}
