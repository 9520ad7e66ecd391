package dimse

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/dicomesh/dicomesh/internal/synth"
	"github.com/dicomesh/dicomesh/node/archive"
)

// spoolRecorder is a Spooler that keeps spool files in memory.
type spoolRecorder struct {
	mu        sync.Mutex
	kept      [][]byte
	discarded int
	commits   int
}

type recordedFile struct {
	s   *spoolRecorder
	buf bytes.Buffer
}

func (f *recordedFile) Write(p []byte) (int, error) { return f.buf.Write(p) }
func (f *recordedFile) Keep() error {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	f.s.kept = append(f.s.kept, f.buf.Bytes())
	return nil
}
func (f *recordedFile) Discard() {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	f.s.discarded++
}

func (s *spoolRecorder) BeginSpool(context.Context, string) (SpoolFile, error) {
	return &recordedFile{s: s}, nil
}
func (s *spoolRecorder) CommitSpool(context.Context, string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commits++
	return nil
}
func (s *spoolRecorder) Store(context.Context, string, []archive.InstanceMeta, [][]byte) error {
	panic("a Spooler's Store was called")
}

// rawAssociation opens an association for one storage context (id 1).
func rawAssociation(t *testing.T, addr, class, syntax string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	b := make([]byte, 68)
	binary.BigEndian.PutUint16(b, 1)
	copy(b[4:20], aeField("NODE"))
	copy(b[20:36], aeField("TEST"))
	b = append(b, item(0x10, []byte(applicationContext))...)
	pc := append([]byte{1, 0, 0, 0}, item(0x30, uidBytes(class))...)
	pc = append(pc, item(0x40, uidBytes(syntax))...)
	b = append(b, item(0x20, pc)...)
	b = append(b, item(0x50, item(0x51, []byte{0, 1, 0, 0}))...)
	if err := writePDU(c, pduAssociateRQ, b); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	typ, body, err := readPDU(r, 1<<16)
	if err != nil || typ != pduAssociateAC {
		t.Fatalf("association: PDU %d, %v", typ, err)
	}
	if acc, _, err := parseAssociateAC(body); err != nil || !acc[1] {
		t.Fatalf("context not accepted: %v %v", acc, err)
	}
	return c, r
}

func dataPDV(last bool, p []byte) []byte {
	flags := byte(0)
	if last {
		flags = 0x02
	}
	pv := binary.BigEndian.AppendUint32(nil, uint32(len(p)+2))
	return append(append(pv, 1, flags), p...)
}

// TestSpooledAsItArrives: a C-STORE's data set reaches the spool file PDU
// by PDU and is kept before the success status; a C-CANCEL (a command
// without a data set) is passed over; an instance cut off by the end of
// the association is discarded, and what was acknowledged is committed.
func TestSpooledAsItArrives(t *testing.T) {
	spec, _ := synth.DefaultSpec("cr")
	spec.Rows, spec.Cols = 64, 64
	var file []byte
	synth.Instances(spec, func(_ string, data []byte) error {
		if file == nil {
			file = data
		}
		return nil
	})
	class, instance, syntax, start, err := metaOf(file)
	if err != nil {
		t.Fatal(err)
	}
	ds := file[start:]

	rec := &spoolRecorder{}
	srv := NewServer(Config{AET: "NODE", Store: rec})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, l); close(done) }()
	defer func() { cancel(); <-done }()

	c, r := rawAssociation(t, l.Addr().String(), class, syntax)
	writePDU(c, pduData, pdataCommand(1, storeCommand(class, instance, 1)))
	half := len(ds) / 2
	writePDU(c, pduData, dataPDV(false, ds[:half]))
	writePDU(c, pduData, dataPDV(true, ds[half:]))
	if st, err := readStatus(r); err != nil || st != 0 {
		t.Fatalf("C-STORE status %#x, %v", st, err)
	}
	rec.mu.Lock()
	if len(rec.kept) != 1 || !bytes.HasSuffix(rec.kept[0], ds) || !bytes.Equal(rec.kept[0][128:132], []byte("DICM")) {
		t.Fatalf("kept %d files; the first is not a Part 10 file of the data set", len(rec.kept))
	}
	rec.mu.Unlock()

	cancelCmd := responseCommand(command{messageID: 1}, 0x0FFF, 0) // C-CANCEL-RQ: no data set
	if m, _ := parseCommand(cancelCmd); !m.noDataSet {
		t.Fatal("the C-CANCEL command set has a data set")
	}
	writePDU(c, pduData, pdataCommand(1, cancelCmd))
	// The association goes on: the next instance starts, and is cut off.
	writePDU(c, pduData, pdataCommand(1, storeCommand(class, instance+".2", 2)))
	writePDU(c, pduData, dataPDV(false, ds[:half]))
	c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rec.mu.Lock()
		kept, discarded, commits := len(rec.kept), rec.discarded, rec.commits
		rec.mu.Unlock()
		if commits == 1 {
			if kept != 1 || discarded != 1 {
				t.Fatalf("after the cut: %d kept, %d discarded, want 1 and 1", kept, discarded)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the association's spool was never committed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
