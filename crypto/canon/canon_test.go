package canon

import (
	"bytes"
	"encoding/hex"
	"errors"
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

func TestVectors(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    *msg
		hex  string
	}{
		{"empty", &msg{}, ""},
		{"uint", &msg{U: 300}, "02ac02"},
		{"negative int", &msg{I: -1}, "0401"},
		{"bool and string", &msg{B: true, S: "hé"}, "0601" + "0b03" + "68c3a9"},
		{"nested", &msg{Sub: &msg{U: 1}}, "0d02" + "0201"},
		{"repeated keeps empty elements", &msg{List: []string{"", "a"}}, "0f00" + "0f0161"},
		{"repeated messages", &msg{Subs: []*msg{{U: 2}, {}}}, "13020202" + "1300"},
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

func TestRejectsNonCanonical(t *testing.T) {
	deep := []byte{0x02, 0x01}
	for range MaxDepth + 1 {
		deep = append([]byte{0x0d, byte(len(deep))}, deep...)
	}
	for name, h := range map[string]string{
		"unknown field":      "1401",
		"out of order":       "0401" + "0201",
		"repeated singular":  "0201" + "0202",
		"zero present":       "0200",
		"empty bytes":        "0900",
		"non-minimal varint": "028100",
		"length past end":    "0905aa",
		"trailing byte":      "020180",
		"bool of 2":          "0602",
		"invalid UTF-8":      "0b01ff",
		"wrong wire type":    "0301",
		"empty nested":       "0d00",
		"bad nested":         "0d021401",
		"tag zero":           "0001",
	} {
		t.Run(name, func(t *testing.T) {
			b, _ := hex.DecodeString(h)
			var m msg
			if err := Unmarshal(b, &m); !errors.Is(err, ErrNonCanonical) {
				t.Fatalf("%s: got %v", h, err)
			}
		})
	}
	var m msg
	if err := Unmarshal(deep, &m); !errors.Is(err, ErrNonCanonical) {
		t.Fatalf("nesting deeper than MaxDepth: %v", err)
	}
	// One level less is fine.
	if err := Unmarshal(deep[2:], &m); err != nil {
		t.Fatalf("nesting at MaxDepth: %v", err)
	}
}

func FuzzRoundTrip(f *testing.F) {
	for _, h := range []string{"", "02ac02", "0601" + "0b03" + "68c3a9", "0d020201", "0f000f0161", "130202021300", "028100", "0d021401"} {
		b, _ := hex.DecodeString(h)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m msg
		if err := Unmarshal(b, &m); err != nil {
			return
		}
		if got := Marshal(&m); !bytes.Equal(got, b) {
			t.Fatalf("decoded %x but re-encoded %x", b, got)
		}
	})
}
