package canon

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// msg exercises every field kind, nested messages included.
type msg struct {
	U     uint64
	I     int64
	B     bool
	Raw   []byte
	S     string
	Sub   *msg
	List  []string
	Blobs [][]byte
	Subs  []*msg
}

func (m *msg) MarshalCanonical(e *Encoder) {
	e.Uint(1, m.U)
	e.Int(2, m.I)
	e.Bool(3, m.B)
	e.Bytes(4, m.Raw)
	e.String(5, m.S)
	if m.Sub != nil {
		e.Message(6, m.Sub)
	}
	e.Strings(7, m.List)
	e.BytesList(8, m.Blobs)
	e.Messages(9, len(m.Subs), func(i int) Marshaler { return m.Subs[i] })
}

func (m *msg) UnmarshalCanonical(d *Decoder) {
	m.U = d.Uint(1)
	m.I = d.Int(2)
	m.B = d.Bool(3)
	m.Raw = d.Bytes(4)
	m.S = d.String(5)
	var sub msg
	if d.Message(6, &sub) {
		m.Sub = &sub
	}
	m.List = d.Strings(7)
	m.Blobs = d.BytesList(8)
	d.Messages(9, func(d *Decoder) {
		var s msg
		s.UnmarshalCanonical(d)
		m.Subs = append(m.Subs, &s)
	})
}

func mustHex(t testing.TB, h string) []byte {
	t.Helper()
	b, err := hex.DecodeString(h)
	if err != nil {
		t.Fatalf("bad hex %q: %v", h, err)
	}
	return b
}

func TestVectors(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    *msg
		hex  string
	}{
		{"empty", &msg{}, ""},
		{"uint", &msg{U: 300}, "02ac02"},
		{"max uint", &msg{U: 1<<64 - 1}, "02ffffffffffffffffff01"},
		{"negative int", &msg{I: -1}, "0401"},
		{"positive int", &msg{I: 1}, "0402"},
		{"min int", &msg{I: -1 << 63}, "04ffffffffffffffffff01"},
		{"bool and string", &msg{B: true, S: "hé"}, "0601" + "0b03" + "68c3a9"},
		{"bytes", &msg{Raw: []byte{0, 0xff}}, "0902" + "00ff"},
		{"nested", &msg{Sub: &msg{U: 1}}, "0d02" + "0201"},
		{"empty nested is omitted", &msg{U: 1, Sub: &msg{}}, "0201"},
		{"repeated keeps empty elements", &msg{List: []string{"", "a"}}, "0f00" + "0f0161"},
		{"repeated bytes", &msg{Blobs: [][]byte{{1}, {}}}, "110101" + "1100"},
		{"repeated messages", &msg{Subs: []*msg{{U: 2}, {}}}, "13020202" + "1300"},
		{"all fields", &msg{
			U: 1, I: 2, B: true, Raw: []byte{7}, S: "s", Sub: &msg{B: true},
			List: []string{"x"}, Blobs: [][]byte{{8}}, Subs: []*msg{{S: "t"}},
		}, "0201" + "0404" + "0601" + "090107" + "0b0173" + "0d020601" + "0f0178" + "110108" + "13030b0174"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Marshal(tc.m)
			if hex.EncodeToString(got) != tc.hex {
				t.Fatalf("encoding %x, want %s", got, tc.hex)
			}
			var back msg
			if err := Unmarshal(got, &back); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(Marshal(&back), got) {
				t.Fatal("decode then encode changed the bytes")
			}
		})
	}
}

func TestDecodedValues(t *testing.T) {
	in := mustHex(t, "02ac02"+"0403"+"0601"+"090107"+"0b0368c3a9"+"0d020601"+"0f00"+"0f0178"+"1100"+"13020201")
	var got msg
	if err := Unmarshal(in, &got); err != nil {
		t.Fatal(err)
	}
	want := msg{
		U: 300, I: -2, B: true, Raw: []byte{7}, S: "hé", Sub: &msg{B: true},
		List: []string{"", "x"}, Blobs: [][]byte{{}}, Subs: []*msg{{U: 1}},
	}
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("decoded %+v, want %+v", got, want)
	}
	// Byte fields are copies: changing the input afterwards changes nothing.
	for i := range in {
		in[i] = 0
	}
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("decoded value aliases the input: %+v", got)
	}
}

func TestRejectsNonCanonical(t *testing.T) {
	for _, tc := range []struct {
		name   string
		hex    string
		offset int
		tag    uint32
	}{
		{"unknown field", "1401", 0, 10},
		{"unknown field after known", "0201" + "1401", 2, 10},
		{"string field as varint", "0201" + "0a01", 2, 5},
		{"out of order", "0401" + "0201", 2, 1},
		{"repeated singular", "0201" + "0202", 2, 1},
		{"repeated singular bytes", "090101" + "090102", 3, 4},
		{"repeated nested", "0d020201" + "0d020201", 4, 6},
		{"zero uint present", "0200", 0, 1},
		{"zero int present", "0400", 0, 2},
		{"false present", "0600", 0, 3},
		{"empty bytes present", "0900", 0, 4},
		{"empty string present", "0b00", 0, 5},
		{"empty nested present", "0d00", 0, 6},
		{"non-minimal value", "028100", 1, 1},
		{"non-minimal key", "8200" + "01", 0, 0},
		{"non-minimal length", "098100", 1, 4},
		{"varint overflow", "02ffffffffffffffffff02", 1, 1},
		{"truncated varint", "0280", 1, 1},
		{"truncated key", "80", 0, 0},
		{"length past end", "0905aa", 1, 4},
		{"trailing byte", "020180", 2, 0},
		{"bool of 2", "0602", 0, 3},
		{"invalid UTF-8", "0b01ff", 0, 5},
		{"invalid UTF-8 in list", "0f0161" + "0f01ff", 5, 7},
		{"wrong wire type varint", "0301", 0, 1},
		{"wrong wire type bytes", "0801", 0, 4},
		{"wrong wire type in list", "0f0161" + "0e01", 3, 7},
		{"bad nested", "0d021401", 2, 10},
		{"bad nested offset", "0201" + "0d02" + "0200", 4, 1},
		{"bad element", "13020200", 2, 1},
		{"tag zero", "0001", 0, 0},
		{"tag too large", "feffffff3f01", 0, 0},
		{"repeated field split", "0f0161" + "110101" + "0f0162", 6, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m msg
			err := Unmarshal(mustHex(t, tc.hex), &m)
			if !errors.Is(err, ErrNonCanonical) {
				t.Fatalf("%s: got %v", tc.hex, err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%s: %T is not *Error", tc.hex, err)
			}
			if e.Offset != tc.offset || e.Tag != tc.tag {
				t.Errorf("%s: %v: offset %d field %d, want offset %d field %d", tc.hex, err, e.Offset, e.Tag, tc.offset, tc.tag)
			}
		})
	}
}

func TestDepthLimit(t *testing.T) {
	nest := func(levels int) []byte {
		b := []byte{0x02, 0x01}
		for range levels {
			b = append([]byte{0x0d, byte(len(b))}, b...)
		}
		return b
	}
	var m msg
	if err := Unmarshal(nest(MaxDepth), &m); err != nil {
		t.Fatalf("nesting at MaxDepth: %v", err)
	}
	if err := Unmarshal(nest(MaxDepth+1), &m); !errors.Is(err, ErrNonCanonical) {
		t.Fatalf("nesting deeper than MaxDepth: %v", err)
	}
}

func TestElementLimit(t *testing.T) {
	elems := bytes.Repeat([]byte{0x0f, 0x00}, MaxElements)
	var m msg
	if err := Unmarshal(elems, &m); err != nil || len(m.List) != MaxElements {
		t.Fatalf("MaxElements elements: %d, %v", len(m.List), err)
	}
	m = msg{}
	if err := Unmarshal(append(elems, 0x0f, 0x00), &m); !errors.Is(err, ErrNonCanonical) {
		t.Fatalf("MaxElements+1 elements: %v", err)
	}
}

// semantic rejects U above 10 through Fail.
type semantic struct{ U uint64 }

var errTooBig = errors.New("too big")

func (s *semantic) UnmarshalCanonical(d *Decoder) {
	if s.U = d.Uint(1); s.U > 10 {
		d.Fail(errTooBig)
	}
	d.Fail(errors.New("only the first error is kept"))
}

func TestFail(t *testing.T) {
	var s semantic
	if err := Unmarshal([]byte{0x02, 11}, &s); err != errTooBig {
		t.Fatalf("got %v, want the error passed to Fail", err)
	}
	// An encoding error met first wins over a later Fail.
	if err := Unmarshal([]byte{0x02, 0}, &s); !errors.Is(err, ErrNonCanonical) {
		t.Fatalf("got %v", err)
	}
}

func TestEncoderReplacesInvalidUTF8(t *testing.T) {
	got := Marshal(&msg{S: "a\xffb", List: []string{"\xc3"}})
	var back msg
	if err := Unmarshal(got, &back); err != nil {
		t.Fatal(err)
	}
	if back.S != "a\uFFFDb" || back.List[0] != "\uFFFD" {
		t.Fatalf("decoded %q %q", back.S, back.List)
	}
}

type badOrder struct{ write func(e *Encoder) }

func (b badOrder) MarshalCanonical(e *Encoder) { b.write(e) }

func TestEncoderPanicsOnMisuse(t *testing.T) {
	for name, write := range map[string]func(e *Encoder){
		"descending":       func(e *Encoder) { e.Uint(2, 1); e.Uint(1, 1) },
		"same tag twice":   func(e *Encoder) { e.Uint(1, 1); e.Uint(1, 2) },
		"zero after value": func(e *Encoder) { e.Bytes(3, nil); e.String(3, "x") },
		"list twice":       func(e *Encoder) { e.Strings(1, []string{"a"}); e.Strings(1, []string{"b"}) },
		"tag zero":         func(e *Encoder) { e.Bool(0, true) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			Marshal(badOrder{write})
		})
	}
}

type badRead struct{}

func (badRead) UnmarshalCanonical(d *Decoder) { d.Uint(2); d.Uint(1) }

func TestDecoderPanicsOnMisuse(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	Unmarshal(nil, badRead{})
}

func TestMessageNilIsOmitted(t *testing.T) {
	got := Marshal(badOrder{func(e *Encoder) { e.Message(1, nil); e.Uint(2, 5) }})
	if hex.EncodeToString(got) != "0405" {
		t.Fatalf("got %x", got)
	}
}

func TestErrorText(t *testing.T) {
	var m msg
	err := Unmarshal(mustHex(t, "0200"), &m)
	if err == nil || !strings.Contains(err.Error(), "byte 0, field 1") {
		t.Fatalf("got %v", err)
	}
}

func FuzzRoundTrip(f *testing.F) {
	for _, h := range []string{
		"", "02ac02", "0601" + "0b03" + "68c3a9", "0d020201", "0f000f0161", "130202021300",
		"028100", "0d021401", "110101" + "1100", "13030b0174", "0d0d0d0b0d090d070d050d030d0102",
	} {
		f.Add(mustHex(f, h))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m msg
		if err := Unmarshal(b, &m); err != nil {
			if !errors.Is(err, ErrNonCanonical) {
				t.Fatalf("error %v does not wrap ErrNonCanonical", err)
			}
			return
		}
		if got := Marshal(&m); !bytes.Equal(got, b) {
			t.Fatalf("decoded %x but re-encoded %x", b, got)
		}
	})
}
