package consent

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/dicomesh/dicomesh/crypto/canon"
)

func TestDirectiveEncoding(t *testing.T) {
	d := Directive{
		ID: "c1", Patient: "H|7", Effect: EffectDeny,
		Facilities: []string{"B"}, Purposes: []Purpose{Research},
		NotBefore: time.UnixMilli(1000).UTC(), NotAfter: time.UnixMilli(2000).UTC(),
		RecordedBy: "r", RecordedAt: time.UnixMilli(500).UTC(),
	}
	got := canon.Marshal(&d)
	want := "03026331" + // 1 ID "c1"
		"0503487c37" + // 2 Patient "H|7"
		"0602" + // 3 Effect deny
		"090142" + // 4 Facilities ["B"]
		"0b06485245534348" + // 5 Purposes ["HRESCH"]
		"0cd00f" + // 6 NotBefore 1000 ms, zigzag 2000
		"0ea01f" + // 7 NotAfter 2000 ms, zigzag 4000
		"110172" + // 8 RecordedBy "r"
		"12e807" // 9 RecordedAt 500 ms, zigzag 1000
	if hex.EncodeToString(got) != want {
		t.Fatalf("encoding\n%x\nwant\n%s", got, want)
	}
	var back Directive
	if err := canon.Unmarshal(got, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, d) {
		t.Fatalf("decoded %+v\nwant %+v", back, d)
	}

	// A directive with only the required fields keeps its zero times.
	min := Directive{ID: "m", Patient: "H|1", Effect: EffectPermit, RecordedBy: "r"}
	var minBack Directive
	if err := canon.Unmarshal(canon.Marshal(&min), &minBack); err != nil || !reflect.DeepEqual(minBack, min) {
		t.Fatalf("decoded %+v, %v", minBack, err)
	}
}

func TestDirectiveDecodingValidates(t *testing.T) {
	valid := Directive{ID: "c1", Patient: "H|7", Effect: EffectPermit, RecordedBy: "r"}
	for name, mod := range map[string]func(d *Directive){
		"no id":             func(d *Directive) { d.ID = "" },
		"no patient":        func(d *Directive) { d.Patient = "" },
		"no recorder":       func(d *Directive) { d.RecordedBy = "" },
		"effect 0":          func(d *Directive) { d.Effect = 0 },
		"effect 3":          func(d *Directive) { d.Effect = 3 },
		"unknown purpose":   func(d *Directive) { d.Purposes = []Purpose{"FUN"} },
		"unsorted purposes": func(d *Directive) { d.Purposes = []Purpose{Treat, EmergencyTreat} },
		"duplicate purpose": func(d *Directive) { d.Purposes = []Purpose{Treat, Treat} },
		"empty facility":    func(d *Directive) { d.Facilities = []string{""} },
		"unsorted":          func(d *Directive) { d.Facilities = []string{"B", "A"} },
		"empty period":      func(d *Directive) { d.NotBefore, d.NotAfter = t0, t0 },
		"reversed period":   func(d *Directive) { d.NotBefore, d.NotAfter = t0, t0.Add(-time.Hour) },
		"before 1970":       func(d *Directive) { d.RecordedAt = time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC) },
	} {
		t.Run(name, func(t *testing.T) {
			d := valid
			mod(&d)
			if err := d.Validate(); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate: %v", err)
			}
			var back Directive
			if err := canon.Unmarshal(canon.Marshal(&d), &back); !errors.Is(err, ErrInvalid) {
				t.Fatalf("decoding an invalid directive: %v", err)
			}
		})
	}
	if err := valid.Validate(); err != nil {
		t.Fatal(err)
	}
	d := Directive{ID: "n", Patient: "H|1", Effect: EffectDeny, RecordedBy: "r",
		Facilities: []string{"C", "A", "C"}, Purposes: []Purpose{Treat, EmergencyTreat, Treat}}
	d.Normalize()
	if err := d.Validate(); err != nil || !reflect.DeepEqual(d.Facilities, []string{"A", "C"}) {
		t.Fatalf("normalized %v %v: %v", d.Facilities, d.Purposes, err)
	}
}

func TestPolicyEncoding(t *testing.T) {
	p := DefaultPolicy()
	var back Policy
	if err := canon.Unmarshal(canon.Marshal(p), &back); err != nil || !reflect.DeepEqual(back, p) {
		t.Fatalf("decoded %+v, %v", back, err)
	}
	if err := canon.Unmarshal([]byte{0x02, 0x03}, &back); !errors.Is(err, ErrInvalid) {
		t.Fatalf("mode 3 decoded: %v", err)
	}
	if err := canon.Unmarshal(nil, &back); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty policy decoded: %v", err)
	}
}

func FuzzDirective(f *testing.F) {
	f.Add(canon.Marshal(&Directive{ID: "c1", Patient: "H|7", Effect: EffectDeny, RecordedBy: "r",
		Facilities: []string{"A", "B"}, Purposes: []Purpose{EmergencyTreat, Treat}, NotBefore: t0, NotAfter: t0.Add(time.Hour)}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Directive
		if err := canon.Unmarshal(b, &d); err != nil {
			return
		}
		if err := d.Validate(); err != nil {
			t.Fatalf("decoded an invalid directive: %v", err)
		}
		if got := canon.Marshal(&d); !bytes.Equal(got, b) {
			t.Fatalf("decoded %x but re-encoded %x", b, got)
		}
	})
}
