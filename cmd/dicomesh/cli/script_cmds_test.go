package cli

import (
	"encoding/binary"
	"os"

	"github.com/rogpeppe/go-internal/testscript"
)

// scriptCmds are extra commands for the scripts in testdata/script.
var scriptCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	// flip-middle-byte PATH inverts the bits of the byte in the middle of a
	// file, as tampering or media damage would.
	"flip-middle-byte": func(ts *testscript.TestScript, neg bool, args []string) {
		if neg || len(args) != 1 {
			ts.Fatalf("usage: flip-middle-byte PATH")
		}
		b, err := os.ReadFile(ts.MkAbs(args[0]))
		ts.Check(err)
		b[len(b)/2] ^= 0xff
		ts.Check(os.WriteFile(ts.MkAbs(args[0]), b, 0o600))
	},
	// dicom-bomb PATH writes a small Part 10 file whose first dataset element
	// declares a length of nearly 4 GiB.
	"dicom-bomb": func(ts *testscript.TestScript, neg bool, args []string) {
		if neg || len(args) != 1 {
			ts.Fatalf("usage: dicom-bomb PATH")
		}
		ts.Check(os.WriteFile(ts.MkAbs(args[0]), dicomBomb(), 0o644))
	},
}

func dicomBomb() []byte {
	b := make([]byte, 128, 184)
	b = append(b, "DICM"...)
	// (0002,0010) UI Transfer Syntax UID = explicit VR little endian.
	ts := "1.2.840.10008.1.2.1\x00"
	b = append(b, 0x02, 0x00, 0x10, 0x00, 'U', 'I')
	b = binary.LittleEndian.AppendUint16(b, uint16(len(ts)))
	b = append(b, ts...)
	// (0010,0010) OB with a 4-byte length of 0xFFFFFFF0.
	b = append(b, 0x10, 0x00, 0x10, 0x00, 'O', 'B', 0, 0)
	b = binary.LittleEndian.AppendUint32(b, 0xFFFFFFF0)
	for len(b) < 184 {
		b = append(b, 0)
	}
	return b
}
