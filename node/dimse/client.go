package dimse

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// Destination is a remote DICOM application entity, such as the local PACS.
type Destination struct {
	AET  string
	Host string
	Port int
	// CallingAET is this node's AE title.
	CallingAET string
}

// Object is one instance to send: its Part 10 bytes.
type Object struct{ Data []byte }

// SendResult counts what a C-STORE association achieved.
type SendResult struct {
	Sent     int
	Failed   int
	Statuses map[uint16]int // C-STORE response statuses other than success
}

// metaOf reads the SOP class, SOP instance and transfer syntax from a Part
// 10 file's meta group (explicit VR little endian), and where the data set
// starts.
func metaOf(b []byte) (class, instance, syntax string, start int, err error) {
	if len(b) < 132 || string(b[128:132]) != "DICM" {
		return "", "", "", 0, errors.New("not a Part 10 file")
	}
	p := 132
	for p+8 <= len(b) && binary.LittleEndian.Uint16(b[p:]) == 0x0002 {
		elem := binary.LittleEndian.Uint16(b[p+2:])
		vr := string(b[p+4 : p+6])
		var n, hdr int
		switch vr {
		case "OB", "OW", "UN", "SQ", "UT":
			if p+12 > len(b) {
				return "", "", "", 0, errors.New("truncated file meta")
			}
			n, hdr = int(binary.LittleEndian.Uint32(b[p+8:])), 12
		default:
			n, hdr = int(binary.LittleEndian.Uint16(b[p+6:])), 8
		}
		if n < 0 || p+hdr+n > len(b) {
			return "", "", "", 0, errors.New("file meta element overruns the file")
		}
		v := trimUID(b[p+hdr : p+hdr+n])
		switch elem {
		case 0x0002:
			class = v
		case 0x0003:
			instance = v
		case 0x0010:
			syntax = v
		}
		p += hdr + n
	}
	if class == "" || instance == "" || syntax == "" {
		return "", "", "", 0, errors.New("file meta lacks SOP class, SOP instance or transfer syntax")
	}
	return class, instance, syntax, p, nil
}

// Send C-STOREs objects to dest over one association: one presentation
// context per SOP class and transfer syntax, each instance sent as stored.
func Send(ctx context.Context, dest Destination, objects []Object) (SendResult, error) {
	res := SendResult{Statuses: map[uint16]int{}}
	type pcKey struct{ class, syntax string }
	ids := map[pcKey]byte{}
	var order []pcKey
	for _, o := range objects {
		class, _, syntax, _, err := metaOf(o.Data)
		if err != nil {
			return res, err
		}
		k := pcKey{class, syntax}
		if _, ok := ids[k]; !ok {
			if len(ids) == 128 {
				return res, errors.New("more than 128 kinds of instance in one association")
			}
			ids[k] = byte(2*len(ids) + 1)
			order = append(order, k)
		}
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(dest.Host, strconv.Itoa(dest.Port)))
	if err != nil {
		return res, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	} else {
		c.SetDeadline(time.Now().Add(10 * time.Minute))
	}
	r := bufio.NewReaderSize(c, 64<<10)

	// A-ASSOCIATE-RQ.
	b := make([]byte, 68)
	binary.BigEndian.PutUint16(b[0:], 1)
	copy(b[4:20], aeField(dest.AET))
	copy(b[20:36], aeField(dest.CallingAET))
	b = append(b, item(0x10, []byte(applicationContext))...)
	for _, k := range order {
		v := []byte{ids[k], 0, 0, 0}
		v = append(v, item(0x30, uidBytes(k.class))...)
		v = append(v, item(0x40, uidBytes(k.syntax))...)
		b = append(b, item(0x20, v)...)
	}
	var max [4]byte
	binary.BigEndian.PutUint32(max[:], 256<<10)
	user := item(0x51, max[:])
	user = append(user, item(0x52, uidBytes(implementationUID))...)
	user = append(user, item(0x55, []byte(implementationName))...)
	b = append(b, item(0x50, user)...)
	if err := writePDU(c, pduAssociateRQ, b); err != nil {
		return res, err
	}
	typ, body, err := readPDU(r, 64<<10)
	if err != nil {
		return res, err
	}
	if typ != pduAssociateAC {
		return res, fmt.Errorf("dimse: %s refused the association (PDU type %d)", dest.AET, typ)
	}
	accepted, peerMax, err := parseAssociateAC(body)
	if err != nil {
		return res, err
	}
	if peerMax == 0 || peerMax > 1<<24 {
		peerMax = 1 << 24
	}
	for i, o := range objects {
		class, instance, syntax, start, _ := metaOf(o.Data)
		pc := ids[pcKey{class, syntax}]
		if !accepted[pc] {
			res.Failed++
			res.Statuses[0x0122]++ // SOP class not supported
			continue
		}
		cmd := storeCommand(class, instance, uint16(i+1))
		if err := writePDU(c, pduData, pdataCommand(pc, cmd)); err != nil {
			return res, err
		}
		ds := o.Data[start:]
		chunk := int(peerMax) - 12
		for len(ds) > 0 {
			n := min(len(ds), chunk)
			flags := byte(0x00)
			if n == len(ds) {
				flags = 0x02
			}
			pv := binary.BigEndian.AppendUint32(nil, uint32(n+2))
			pv = append(pv, pc, flags)
			if err := writePDU(c, pduData, append(pv, ds[:n]...)); err != nil {
				return res, err
			}
			ds = ds[n:]
		}
		status, err := readStatus(r)
		if err != nil {
			return res, err
		}
		if status == 0 || status&0xF000 == 0xB000 { // success or warning
			res.Sent++
		} else {
			res.Failed++
			res.Statuses[status]++
		}
	}
	writePDU(c, pduReleaseRQ, []byte{0, 0, 0, 0})
	readPDU(r, 64<<10)
	return res, nil
}

// parseAssociateAC returns the accepted presentation contexts and the
// peer's maximum PDU length.
func parseAssociateAC(b []byte) (map[byte]bool, uint32, error) {
	acc := map[byte]bool{}
	var max uint32
	if len(b) < 68 {
		return nil, 0, fmt.Errorf("%w: short A-ASSOCIATE-AC", ErrMalformed)
	}
	items := b[68:]
	for len(items) >= 4 {
		t, n := items[0], int(binary.BigEndian.Uint16(items[2:]))
		if len(items) < 4+n {
			return nil, 0, fmt.Errorf("%w: item overruns", ErrMalformed)
		}
		v := items[4 : 4+n]
		items = items[4+n:]
		switch t {
		case 0x21:
			if len(v) >= 4 && v[2] == 0 {
				acc[v[0]] = true
			}
		case 0x50:
			for len(v) >= 4 {
				st, sn := v[0], int(binary.BigEndian.Uint16(v[2:]))
				if len(v) < 4+sn {
					break
				}
				if st == 0x51 && sn == 4 {
					max = binary.BigEndian.Uint32(v[4:8])
				}
				v = v[4+sn:]
			}
		}
	}
	return acc, max, nil
}

func storeCommand(class, instance string, msgID uint16) []byte {
	var b []byte
	el := func(elem uint16, v []byte) {
		b = binary.LittleEndian.AppendUint16(b, 0x0000)
		b = binary.LittleEndian.AppendUint16(b, elem)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	us := func(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
	el(0x0002, uidBytes(class))
	el(0x0100, us(cStoreRQ))
	el(0x0110, us(msgID))
	el(0x0700, us(0))
	el(0x0800, us(0x0000))
	el(0x1000, uidBytes(instance))
	head := binary.LittleEndian.AppendUint16(nil, 0x0000)
	head = binary.LittleEndian.AppendUint16(head, 0x0000)
	head = binary.LittleEndian.AppendUint32(head, 4)
	head = binary.LittleEndian.AppendUint32(head, uint32(len(b)))
	return append(head, b...)
}

// readStatus reads PDUs until a complete response command and returns its
// status.
func readStatus(r *bufio.Reader) (uint16, error) {
	var cmd []byte
	for {
		typ, body, err := readPDU(r, 1<<24)
		if err != nil {
			return 0, err
		}
		if typ != pduData {
			return 0, fmt.Errorf("dimse: PDU type %d while waiting for a response", typ)
		}
		pdvs, err := parsePData(body)
		if err != nil {
			return 0, err
		}
		for _, p := range pdvs {
			if !p.command {
				continue
			}
			cmd = append(cmd, p.data...)
			if p.last {
				return statusOf(cmd)
			}
		}
	}
}

func statusOf(cmd []byte) (uint16, error) {
	for b := cmd; len(b) >= 8; {
		elem := binary.LittleEndian.Uint16(b[2:])
		n := binary.LittleEndian.Uint32(b[4:])
		if uint64(n) > uint64(len(b)-8) {
			break
		}
		if elem == 0x0900 && n == 2 {
			return binary.LittleEndian.Uint16(b[8:]), nil
		}
		b = b[8+n:]
	}
	return 0, fmt.Errorf("%w: response without a status", ErrMalformed)
}
