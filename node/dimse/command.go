package dimse

import (
	"encoding/binary"
	"fmt"
)

// Command fields (PS3.7 E.1).
const (
	cStoreRQ = 0x0001
	cMoveRQ  = 0x0021
	cEchoRQ  = 0x0030
)

// command is the part of a request's command set the server uses.
type command struct {
	field       uint16
	messageID   uint16
	sopClass    string
	sopInstance string
	moveDest    string // (0000,0600), C-MOVE only
	noDataSet   bool   // (0000,0800) is 0101H: no data set follows
}

// parseCommand reads a command set: implicit VR little endian elements of
// group 0000.
func parseCommand(b []byte) (command, error) {
	var m command
	seen := false
	for len(b) > 0 {
		if len(b) < 8 {
			return m, fmt.Errorf("%w: truncated command element", ErrMalformed)
		}
		group, elem := binary.LittleEndian.Uint16(b), binary.LittleEndian.Uint16(b[2:])
		n := binary.LittleEndian.Uint32(b[4:])
		if group != 0x0000 || uint64(n) > uint64(len(b)-8) {
			return m, fmt.Errorf("%w: command element (%04x,%04x) of %d bytes", ErrMalformed, group, elem, n)
		}
		v := b[8 : 8+n]
		b = b[8+n:]
		switch elem {
		case 0x0002:
			m.sopClass = trimUID(v)
		case 0x0100:
			if len(v) != 2 {
				return m, fmt.Errorf("%w: command field of %d bytes", ErrMalformed, len(v))
			}
			m.field, seen = binary.LittleEndian.Uint16(v), true
		case 0x0110:
			if len(v) == 2 {
				m.messageID = binary.LittleEndian.Uint16(v)
			}
		case 0x1000:
			m.sopInstance = trimUID(v)
		case 0x0600:
			m.moveDest = trimUID(v)
		case 0x0800:
			m.noDataSet = len(v) == 2 && binary.LittleEndian.Uint16(v) == 0x0101
		}
	}
	if !seen {
		return m, fmt.Errorf("%w: no command field", ErrMalformed)
	}
	return m, nil
}

// responseCommand builds the response to rq, without a data set.
func responseCommand(rq command, field, status uint16) []byte {
	return responseWith(rq, field, status, false)
}

// responseWith builds the response to rq; withData says a data set follows.
func responseWith(rq command, field, status uint16, withData bool) []byte {
	var b []byte
	el := func(elem uint16, v []byte) {
		b = binary.LittleEndian.AppendUint16(b, 0x0000)
		b = binary.LittleEndian.AppendUint16(b, elem)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	us := func(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
	if rq.sopClass != "" {
		el(0x0002, uidBytes(rq.sopClass))
	}
	el(0x0100, us(field))
	el(0x0120, us(rq.messageID))
	if withData {
		el(0x0800, us(0x0000))
	} else {
		el(0x0800, us(0x0101)) // no data set
	}
	el(0x0900, us(status))
	if rq.sopInstance != "" {
		el(0x1000, uidBytes(rq.sopInstance))
	}
	head := binary.LittleEndian.AppendUint16(nil, 0x0000)
	head = binary.LittleEndian.AppendUint16(head, 0x0000)
	head = binary.LittleEndian.AppendUint32(head, 4)
	head = binary.LittleEndian.AppendUint32(head, uint32(len(b)))
	return append(head, b...)
}

// moveResponse is a C-MOVE-RSP with its sub-operation counts.
func moveResponse(rq command, status uint16, remaining, completed, failed int) []byte {
	var b []byte
	el := func(elem uint16, v []byte) {
		b = binary.LittleEndian.AppendUint16(b, 0x0000)
		b = binary.LittleEndian.AppendUint16(b, elem)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	us := func(v int) []byte { return binary.LittleEndian.AppendUint16(nil, uint16(v)) }
	el(0x0002, uidBytes(rq.sopClass))
	el(0x0100, us(0x8021))
	el(0x0120, us(int(rq.messageID)))
	el(0x0800, us(0x0101))
	el(0x0900, us(int(status)))
	if status == 0xFF00 {
		el(0x1020, us(remaining))
	}
	el(0x1021, us(completed))
	el(0x1022, us(failed))
	el(0x1023, us(0))
	head := binary.LittleEndian.AppendUint16(nil, 0x0000)
	head = binary.LittleEndian.AppendUint16(head, 0x0000)
	head = binary.LittleEndian.AppendUint32(head, 4)
	head = binary.LittleEndian.AppendUint32(head, uint32(len(b)))
	return append(head, b...)
}
