package dicomweb

import (
	"testing"

	"github.com/dicomesh/dicomesh/node/dicomweb/part10"
)

func TestFrameAccept(t *testing.T) {
	const jls = "1.2.840.10008.1.2.4.70"
	for _, tc := range []struct {
		accept, stored string
		mt, ts         string
	}{
		{"", part10.ExplicitVRLittleEndian, "application/octet-stream", part10.ExplicitVRLittleEndian},
		{"", part10.ImplicitVRLittleEndian, "application/octet-stream", part10.ExplicitVRLittleEndian},
		{`multipart/related; type="application/octet-stream"; transfer-syntax=*`, jls, "application/octet-stream", jls},
		{`multipart/related; type=application/octet-stream; transfer-syntax=*`, part10.ImplicitVRLittleEndian, "application/octet-stream", part10.ImplicitVRLittleEndian},
		{`multipart/related; type="image/jpeg"; transfer-syntax=` + jls, jls, "image/jpeg", jls},
		{`multipart/related; type="application/octet-stream"`, jls, "", ""},
		{"", part10.ExplicitVRBigEndian, "", ""},
		{`multipart/related; type="image/jpeg"`, part10.ExplicitVRLittleEndian, "", ""},
	} {
		mt, ts, ok := frameAccept(tc.accept, tc.stored)
		if mt != tc.mt || ts != tc.ts || ok != (tc.mt != "") {
			t.Errorf("%q for %s: %q %q %v, want %q %q", tc.accept, tc.stored, mt, ts, ok, tc.mt, tc.ts)
		}
	}
}
