package dimse

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// PDU types (PS3.8 9.3).
const (
	pduAssociateRQ = 0x01
	pduAssociateAC = 0x02
	pduAssociateRJ = 0x03
	pduData        = 0x04
	pduReleaseRQ   = 0x05
	pduReleaseRP   = 0x06
	pduAbort       = 0x07
)

// ErrMalformed reports a PDU or command set that breaks the standard.
var ErrMalformed = errors.New("dimse: malformed PDU")

// readPDU reads one PDU whose length is at most max: the length is checked
// before anything is allocated.
func readPDU(r io.Reader, max uint32) (typ byte, body []byte, err error) {
	return readPDUInto(r, max, nil)
}

// readPDUInto is readPDU reading the body into buf when it is large enough.
func readPDUInto(r io.Reader, max uint32, buf []byte) (typ byte, body []byte, err error) {
	var h [6]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, buf, err
	}
	n := binary.BigEndian.Uint32(h[2:])
	if n > max {
		return 0, buf, fmt.Errorf("%w: PDU of %d bytes (limit %d)", ErrMalformed, n, max)
	}
	if uint32(cap(buf)) < n {
		buf = make([]byte, n)
	}
	body = buf[:n]
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, body, err
	}
	return h[0], body, nil
}

func writePDU(w io.Writer, typ byte, body []byte) error {
	h := []byte{typ, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(h[2:], uint32(len(body)))
	_, err := w.Write(append(h, body...))
	return err
}

// presentationContext is one proposed context.
type presentationContext struct {
	id       byte
	abstract string
	syntaxes []string
}

// associateRQ is what the calling AE proposes.
type associateRQ struct {
	called, calling string
	contexts        []presentationContext
	maxPDU          uint32
}

func trimUID(b []byte) string { return strings.TrimRight(string(b), "\x00 ") }

// parseAssociateRQ parses an A-ASSOCIATE-RQ body.
func parseAssociateRQ(b []byte) (associateRQ, error) {
	var rq associateRQ
	if len(b) < 68 {
		return rq, fmt.Errorf("%w: short A-ASSOCIATE-RQ", ErrMalformed)
	}
	rq.called = strings.TrimSpace(string(b[4:20]))
	rq.calling = strings.TrimSpace(string(b[20:36]))
	items := b[68:]
	for len(items) > 0 {
		if len(items) < 4 {
			return rq, fmt.Errorf("%w: truncated item", ErrMalformed)
		}
		t, n := items[0], int(binary.BigEndian.Uint16(items[2:]))
		if len(items) < 4+n {
			return rq, fmt.Errorf("%w: item of %d bytes overruns the PDU", ErrMalformed, n)
		}
		v := items[4 : 4+n]
		items = items[4+n:]
		switch t {
		case 0x20:
			if len(v) < 4 {
				return rq, fmt.Errorf("%w: short presentation context", ErrMalformed)
			}
			pc := presentationContext{id: v[0]}
			subs := v[4:]
			for len(subs) > 0 {
				if len(subs) < 4 {
					return rq, fmt.Errorf("%w: truncated sub-item", ErrMalformed)
				}
				st, sn := subs[0], int(binary.BigEndian.Uint16(subs[2:]))
				if len(subs) < 4+sn {
					return rq, fmt.Errorf("%w: sub-item overruns its context", ErrMalformed)
				}
				sv := trimUID(subs[4 : 4+sn])
				subs = subs[4+sn:]
				switch st {
				case 0x30:
					pc.abstract = sv
				case 0x40:
					pc.syntaxes = append(pc.syntaxes, sv)
				}
			}
			rq.contexts = append(rq.contexts, pc)
		case 0x50:
			for len(v) >= 4 {
				st, sn := v[0], int(binary.BigEndian.Uint16(v[2:]))
				if len(v) < 4+sn {
					return rq, fmt.Errorf("%w: user item overruns", ErrMalformed)
				}
				if st == 0x51 && sn == 4 {
					rq.maxPDU = binary.BigEndian.Uint32(v[4:8])
				}
				v = v[4+sn:]
			}
		}
	}
	return rq, nil
}

func item(t byte, v []byte) []byte {
	b := []byte{t, 0, 0, 0}
	binary.BigEndian.PutUint16(b[2:], uint16(len(v)))
	return append(b, v...)
}

func uidBytes(s string) []byte {
	b := []byte(s)
	if len(b)%2 == 1 {
		b = append(b, 0)
	}
	return b
}

func aeField(s string) []byte {
	return []byte(fmt.Sprintf("%-16s", s))[:16]
}

// accepted is a context's answer: a result (0 acceptance, 3 abstract
// syntax not supported, 4 transfer syntaxes not supported) and the
// transfer syntax chosen.
type accepted struct {
	id     byte
	result byte
	syntax string
}

const (
	applicationContext = "1.2.840.10008.3.1.1.1"
	implementationUID  = "1.2.826.0.1.3680043.10.1484.1"
	implementationName = "DICOMESH"
)

func associateAC(rq associateRQ, ctxs []accepted, maxPDU uint32) []byte {
	b := make([]byte, 68)
	binary.BigEndian.PutUint16(b[0:], 1)
	copy(b[4:20], aeField(rq.called))
	copy(b[20:36], aeField(rq.calling))
	b = append(b, item(0x10, []byte(applicationContext))...)
	for _, c := range ctxs {
		v := []byte{c.id, 0, c.result, 0}
		v = append(v, item(0x40, uidBytes(c.syntax))...)
		b = append(b, item(0x21, v)...)
	}
	var max [4]byte
	binary.BigEndian.PutUint32(max[:], maxPDU)
	user := item(0x51, max[:])
	user = append(user, item(0x52, uidBytes(implementationUID))...)
	user = append(user, item(0x55, []byte(implementationName))...)
	return append(b, item(0x50, user)...)
}

// associateRJ refuses an association: result 1 (permanent), source 1
// (service user), reason 3 (calling AE not recognized) or 7 (called AE not
// recognized).
func associateRJ(reason byte) []byte { return []byte{0, 1, 1, reason} }

// pdv is one presentation data value of a P-DATA-TF.
type pdv struct {
	ctx     byte
	command bool
	last    bool
	data    []byte
}

func parsePData(b []byte) ([]pdv, error) {
	var out []pdv
	for len(b) > 0 {
		if len(b) < 6 {
			return nil, fmt.Errorf("%w: truncated PDV", ErrMalformed)
		}
		n := binary.BigEndian.Uint32(b)
		if n < 2 || uint64(n) > uint64(len(b)-4) {
			return nil, fmt.Errorf("%w: PDV of %d bytes overruns", ErrMalformed, n)
		}
		out = append(out, pdv{ctx: b[4], command: b[5]&1 == 1, last: b[5]&2 == 2, data: b[6 : 4+n]})
		b = b[4+n:]
	}
	return out, nil
}

func pdataCommand(ctx byte, cmd []byte) []byte {
	b := make([]byte, 6, 6+len(cmd))
	binary.BigEndian.PutUint32(b, uint32(len(cmd)+2))
	b[4], b[5] = ctx, 0x03
	return append(b, cmd...)
}
