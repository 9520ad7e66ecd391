package audit

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dicomesh/dicomesh/crypto/canon"
)

func TestRecordRoundTrip(t *testing.T) {
	for i := range 50 {
		r := sample(i)
		r.Time = epoch.Add(time.Duration(i) * time.Millisecond)
		r.Subtype = Coded{System: "DCM", Code: "110122", Display: "Login"}
		b, err := encodeRecord(&r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeRecord(b, 7)
		if err != nil {
			t.Fatal(err)
		}
		r.Index = 7
		if diff := cmp.Diff(r, got); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s", diff)
		}
		if again := canon.Marshal(&got); !bytes.Equal(again, b) {
			t.Fatal("re-encoding differs")
		}
	}
}

func TestRecordValidate(t *testing.T) {
	ok := sample(1)
	ok.Time = epoch
	tests := []struct {
		name   string
		mutate func(*Record)
	}{
		{"unknown event", func(r *Record) { r.Event = "999999" }},
		{"no event", func(r *Record) { r.Event = "" }},
		{"unknown action", func(r *Record) { r.Action = "X" }},
		{"unknown outcome", func(r *Record) { r.Outcome = numOutcomes }},
		{"no time", func(r *Record) { r.Time = time.Time{} }},
		{"invalid utf-8", func(r *Record) { r.User = "a\xffb" }},
		{"too large", func(r *Record) { r.Query = strings.Repeat("q", MaxRecordSize) }},
	}
	if _, err := encodeRecord(&ok); err != nil {
		t.Fatalf("valid record refused: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok
			tt.mutate(&r)
			_, err := encodeRecord(&r)
			if !errors.Is(err, ErrInvalidRecord) {
				t.Fatalf("err = %v, want ErrInvalidRecord", err)
			}
			if strings.Contains(err.Error(), "HOSP") {
				t.Errorf("error %q carries record contents", err)
			}
		})
	}
}

func TestOutcomeCodes(t *testing.T) {
	want := map[Outcome]int{Success: 0, MinorFailure: 4, SeriousFailure: 8, MajorFailure: 12, Denied: 4}
	for o, c := range want {
		if o.Code() != c {
			t.Errorf("%v.Code() = %d, want %d", o, o.Code(), c)
		}
		p, err := ParseOutcome(o.String())
		if err != nil || p != o {
			t.Errorf("ParseOutcome(%q) = %v, %v", o.String(), p, err)
		}
	}
}

// FuzzRecord: whatever decodes re-encodes to the same bytes.
func FuzzRecord(f *testing.F) {
	for i := range 10 {
		r := sample(i)
		r.Time = epoch
		b, _ := encodeRecord(&r)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b, 0)
		if err != nil {
			return
		}
		if again := canon.Marshal(&r); !bytes.Equal(again, b) {
			t.Fatalf("decoded record re-encodes differently")
		}
	})
}
