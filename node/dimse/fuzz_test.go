package dimse

import (
	"bytes"
	"testing"
)

// FuzzDecoders: no input makes the PDU, P-DATA and command-set decoders
// panic or read past what they were given.
func FuzzDecoders(f *testing.F) {
	rq := associateAC(associateRQ{called: "A", calling: "B"}, []accepted{{id: 1, syntax: "1.2.840.10008.1.2"}}, 1<<16)
	f.Add(rq)
	f.Add(pdataCommand(1, responseCommand(command{sopClass: "1.2", sopInstance: "1.3", messageID: 7}, 0x8001, 0)))
	f.Add(responseCommand(command{messageID: 1}, 0x8030, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseAssociateRQ(b)
		if ps, err := parsePData(b); err == nil {
			for _, p := range ps {
				parseCommand(p.data)
			}
		}
		parseCommand(b)
		parseIdentifier(b, true)
		parseIdentifier(b, false)
		readPDU(bytes.NewReader(b), 1<<16)
	})
}

// TestCommandRoundTrip: a response command set parses back.
func TestCommandRoundTrip(t *testing.T) {
	m, err := parseCommand(responseCommand(command{sopClass: "1.2.840.10008.5.1.4.1.1.2", sopInstance: "1.2.3", messageID: 9}, 0x8001, 0xA700))
	if err != nil || m.field != 0x8001 || m.messageID != 0 || m.sopClass != "1.2.840.10008.5.1.4.1.1.2" || m.sopInstance != "1.2.3" {
		t.Fatalf("%+v %v", m, err)
	}
}
