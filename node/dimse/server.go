package dimse

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dicomesh/dicomesh/node/archive"
	"github.com/dicomesh/dicomesh/node/audit"
	"github.com/dicomesh/dicomesh/node/ingest"
)

// Store is where received instances go: the node, which audits the import
// before the study becomes visible.
type Store interface {
	Store(ctx context.Context, study string, metas []archive.InstanceMeta, data [][]byte) error
}

// Spooler is a Store that can keep an instance durably as it arrives and
// commit an association's instances together at its end: far fewer archive
// commits than one per instance. A Store that implements it is used so.
type Spooler interface {
	// BeginSpool starts keeping one instance for the association; its
	// bytes (a Part 10 file) are written to the SpoolFile as they arrive.
	BeginSpool(ctx context.Context, assoc string) (SpoolFile, error)
	CommitSpool(ctx context.Context, assoc string) error
}

// SpoolFile receives one instance. Writing it as the PDUs arrive lets the
// disk take most of it before the last one: the sender waits only for the
// rest to be synced.
type SpoolFile interface {
	io.Writer
	// Keep makes the instance durable; the sender is told it is stored
	// only once Keep returns nil. After an error the file is as if unused.
	Keep() error
	// Discard drops the instance: refused, or the association ended first.
	Discard()
}

// Config configures a Server.
type Config struct {
	AET   string
	Store Store
	// Finder answers C-FIND; nil refuses the query/retrieve models.
	Finder Finder
	// Mover answers C-MOVE: it resolves a destination AE title and sends a
	// study there; nil refuses C-MOVE.
	Mover Mover
	// AllowedCallers, if not empty, are the calling AE titles accepted.
	AllowedCallers []string
	// WithActor attaches who acts (the calling AE and its address) to a
	// context for the store.
	WithActor func(context.Context, audit.Actor) context.Context
	// MaxPDU is the largest PDU this server receives (default 256 KiB).
	MaxPDU uint32
	// MaxObjectBytes bounds one received instance (default 2 GiB).
	MaxObjectBytes int
	// IdleTimeout ends an association without traffic (default 60 s).
	IdleTimeout time.Duration
	Logger      *slog.Logger
}

// Server is a DIMSE service class provider: C-ECHO and C-STORE.
type Server struct {
	cfg Config
	wg  sync.WaitGroup
}

// NewServer returns a server for cfg.
func NewServer(cfg Config) *Server {
	if cfg.MaxPDU == 0 {
		cfg.MaxPDU = 256 << 10
	}
	if cfg.MaxObjectBytes == 0 {
		cfg.MaxObjectBytes = 2 << 30
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 60 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg}
}

// Serve accepts associations on l until ctx ends, then waits for the open
// ones to finish.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	defer s.wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			stop := context.AfterFunc(ctx, func() { c.Close() }) // shutdown ends open associations
			defer stop()
			if err := s.association(ctx, c); err != nil && !errors.Is(err, io.EOF) {
				s.cfg.Logger.Info("association ended", "remote", c.RemoteAddr().String(), "err", err)
			}
		}()
	}
}

// Transfer syntaxes accepted, in order of preference; instances are stored
// as received, never re-encoded.
var syntaxes = []string{
	"1.2.840.10008.1.2.1",    // explicit VR little endian
	"1.2.840.10008.1.2",      // implicit VR little endian
	"1.2.840.10008.1.2.4.50", // JPEG baseline
	"1.2.840.10008.1.2.4.70", // JPEG lossless
	"1.2.840.10008.1.2.4.90", // JPEG 2000 lossless
	"1.2.840.10008.1.2.4.91", // JPEG 2000
	"1.2.840.10008.1.2.5",    // RLE
}

const verification = "1.2.840.10008.1.1"

// supported reports whether an abstract syntax is served: verification,
// the storage SOP classes, and C-FIND when a Finder is set.
func (s *Server) supported(abstract string) bool {
	switch {
	case abstract == verification, strings.HasPrefix(abstract, "1.2.840.10008.5.1.4.1.1."):
		return true
	case abstract == studyRootFind, abstract == patientRootFind:
		return s.cfg.Finder != nil
	case abstract == studyRootMove, abstract == patientRootMove:
		return s.cfg.Mover != nil && s.cfg.Finder != nil
	}
	return false
}

func (s *Server) association(ctx context.Context, c net.Conn) error {
	r := bufio.NewReaderSize(c, 64<<10)
	c.SetDeadline(time.Now().Add(s.cfg.IdleTimeout))
	typ, body, err := readPDU(r, 64<<10)
	if err != nil {
		return err
	}
	if typ != pduAssociateRQ {
		writePDU(c, pduAbort, []byte{0, 0, 0, 0})
		return fmt.Errorf("%w: PDU type %d before association", ErrMalformed, typ)
	}
	rq, err := parseAssociateRQ(body)
	if err != nil {
		writePDU(c, pduAbort, []byte{0, 0, 2, 0})
		return err
	}
	if !strings.EqualFold(rq.called, s.cfg.AET) {
		return writePDU(c, pduAssociateRJ, associateRJ(7))
	}
	if len(s.cfg.AllowedCallers) > 0 && !contains(s.cfg.AllowedCallers, rq.calling) {
		return writePDU(c, pduAssociateRJ, associateRJ(3))
	}
	ctxs := map[byte]accepted{}
	var answers []accepted
	for _, pc := range rq.contexts {
		a := accepted{id: pc.id, result: 3, syntax: "1.2.840.10008.1.2"}
		if s.supported(pc.abstract) {
			a.result = 4
			for _, want := range syntaxes {
				if contains(pc.syntaxes, want) {
					a.result, a.syntax = 0, want
					break
				}
			}
		}
		answers = append(answers, a)
		if a.result == 0 {
			ctxs[pc.id] = a
		}
	}
	peerMax := rq.maxPDU
	if peerMax == 0 || peerMax > 1<<24 {
		peerMax = 1 << 24
	}
	if err := writePDU(c, pduAssociateAC, associateAC(rq, answers, s.cfg.MaxPDU)); err != nil {
		return err
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	assoc := fmt.Sprintf("%d-%x", time.Now().UnixNano(), rnd) // a folder name: never from the peer
	actx := ctx
	if s.cfg.WithActor != nil {
		actx = s.cfg.WithActor(ctx, audit.Actor{User: "dicom:" + rq.calling, Address: c.RemoteAddr().String()})
	}
	if sp, ok := s.cfg.Store.(Spooler); ok {
		// The association is over, however it ended: what was
		// acknowledged is committed. The commit may wait for another
		// writer of the same study; if the server stops first, it gives
		// up and the spool, which survives a crash as well, is committed
		// at the next start.
		defer func() {
			if err := sp.CommitSpool(actx, assoc); err != nil {
				s.cfg.Logger.Error("cannot commit the association's instances; they stay spooled", "err", err)
			}
		}()
	}
	// in is the request being received: its command, then its data set (for
	// C-STORE a Part 10 file, built as it arrives and spooled as it grows).
	var in incoming
	defer in.discard()
	// body is reused for every PDU: what is kept of one is copied.
	for {
		c.SetDeadline(time.Now().Add(s.cfg.IdleTimeout))
		typ, body, err = readPDUInto(r, s.cfg.MaxPDU+6, body)
		if err != nil {
			writePDU(c, pduAbort, []byte{0, 0, 2, 0})
			return err
		}
		switch typ {
		case pduReleaseRQ:
			// Every acknowledged instance is durable in the spool: the
			// peer is released at once, and the deferred commit makes
			// the study visible after.
			return writePDU(c, pduReleaseRP, []byte{0, 0, 0, 0})
		case pduAbort:
			return errors.New("aborted by the peer")
		case pduData:
		default:
			writePDU(c, pduAbort, []byte{0, 0, 2, 0})
			return fmt.Errorf("%w: unexpected PDU type %d", ErrMalformed, typ)
		}
		pdvs, err := parsePData(body)
		if err != nil {
			writePDU(c, pduAbort, []byte{0, 0, 2, 0})
			return err
		}
		for _, p := range pdvs {
			if _, ok := ctxs[p.ctx]; !ok {
				writePDU(c, pduAbort, []byte{0, 0, 2, 0})
				return fmt.Errorf("%w: data on presentation context %d, not accepted", ErrMalformed, p.ctx)
			}
			if p.command {
				if in.ready {
					writePDU(c, pduAbort, []byte{0, 0, 2, 0})
					return fmt.Errorf("%w: a command set before the data set of the last", ErrMalformed)
				}
				in.cmd, in.pc = append(in.cmd, p.data...), p.ctx
				if len(in.cmd) > 64<<10 {
					writePDU(c, pduAbort, []byte{0, 0, 2, 0})
					return fmt.Errorf("%w: command set too large", ErrMalformed)
				}
				if !p.last {
					continue
				}
				m, err := parseCommand(in.cmd)
				if err != nil {
					writePDU(c, pduAbort, []byte{0, 0, 2, 0})
					return err
				}
				switch {
				case m.field == cEchoRQ:
					if err := s.respond(c, in.pc, m, 0x8030, 0x0000, peerMax); err != nil {
						return err
					}
					in.reset()
					continue
				case m.noDataSet:
					// C-CANCEL: every operation here has ended before
					// the next request is read, so there is nothing to
					// cancel.
					in.reset()
					continue
				}
				in.m, in.ready = m, true
				if m.field == cStoreRQ {
					s.beginStore(actx, assoc, ctxs[in.pc].syntax, &in)
				}
				continue
			}
			if !in.ready {
				writePDU(c, pduAbort, []byte{0, 0, 2, 0})
				return fmt.Errorf("%w: a data set without a C-STORE, C-FIND or C-MOVE request", ErrMalformed)
			}
			in.data = append(in.data, p.data...)
			if len(in.data)-in.start > s.cfg.MaxObjectBytes {
				writePDU(c, pduAbort, []byte{0, 0, 2, 0})
				return fmt.Errorf("instance larger than %d bytes", s.cfg.MaxObjectBytes)
			}
			in.spool(p.data)
			if !p.last {
				continue
			}
			syntax := ctxs[in.pc].syntax
			switch in.m.field {
			case cMoveRQ:
				err = s.answerMove(actx, c, in.pc, syntax, in.m, in.data, peerMax)
			case cFindRQ:
				err = s.answerFind(actx, c, in.pc, syntax, in.m, in.data, peerMax)
			case cStoreRQ:
				err = s.respond(c, in.pc, in.m, 0x8001, s.store(actx, &in), peerMax)
			default:
				writePDU(c, pduAbort, []byte{0, 0, 2, 0})
				return fmt.Errorf("%w: a data set for command %#x", ErrMalformed, in.m.field)
			}
			if err != nil {
				return err
			}
			in.reset() // what was kept was copied: the buffers serve the next
		}
	}
}

// incoming is the request being received on an association.
type incoming struct {
	cmd   []byte  // command set fragments
	pc    byte    // its presentation context
	m     command // parsed, once ready
	ready bool    // the command set is complete; its data set follows
	data  []byte  // the data set; for C-STORE a Part 10 file from the start
	start int     // where the data set begins in data
	file  SpoolFile
	err   error // of the spool file: the instance is refused at its end
}

// spool writes a data set fragment to the spool file.
func (in *incoming) spool(p []byte) {
	if in.file != nil && in.err == nil {
		_, in.err = in.file.Write(p)
	}
}

// discard drops an instance being spooled.
func (in *incoming) discard() {
	if in.file != nil {
		in.file.Discard()
		in.file = nil
	}
}

func (in *incoming) reset() {
	in.discard()
	in.cmd, in.data = in.cmd[:0], in.data[:0]
	in.m, in.ready, in.start, in.err = command{}, false, 0, nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if strings.EqualFold(strings.TrimSpace(x), s) {
			return true
		}
	}
	return false
}

// beginStore starts a C-STORE's Part 10 file (its preamble and file meta)
// and, with a Spooler, its spool file, which the data set is written to as
// it arrives.
func (s *Server) beginStore(ctx context.Context, assoc, syntax string, in *incoming) {
	in.data = part10Header(in.data[:0], in.m.sopClass, in.m.sopInstance, syntax)
	in.start = len(in.data)
	sp, ok := s.cfg.Store.(Spooler)
	if !ok {
		return
	}
	if in.file, in.err = sp.BeginSpool(ctx, assoc); in.err == nil {
		_, in.err = in.file.Write(in.data)
	}
}

// store passes a received Part 10 file through the guarded parser and keeps
// it; the status says how it went. Success means the instance is durably
// stored: the response waits for the spool file's sync, or the commit.
func (s *Server) store(ctx context.Context, in *incoming) uint16 {
	m, file := in.m, in.data
	meta, err := ingest.Parse(file)
	if err != nil {
		s.cfg.Logger.Info("C-STORE refused", "sop", m.sopInstance, "err", err)
		return 0xC000 // cannot understand
	}
	if _, ok := s.cfg.Store.(Spooler); ok {
		if in.err == nil {
			in.err = in.file.Keep()
			in.file = nil
		}
		if in.err != nil {
			s.cfg.Logger.Warn("C-STORE could not be spooled", "sop", m.sopInstance, "err", in.err)
			return 0xA700 // out of resources
		}
		return 0x0000
	}
	// A Store may keep what it is given; in.data serves the next instance.
	if err := s.cfg.Store.Store(ctx, meta.StudyInstanceUID, []archive.InstanceMeta{meta}, [][]byte{bytes.Clone(file)}); err != nil {
		s.cfg.Logger.Warn("C-STORE could not be stored", "sop", m.sopInstance, "err", err)
		return 0xA700 // out of resources
	}
	return 0x0000
}

// part10Header builds the start of a DICOM file in dst: preamble, "DICM"
// and a file meta group from the association.
func part10Header(dst []byte, class, instance, syntax string) []byte {
	el := func(b []byte, elem uint16, vr string, v []byte) []byte {
		b = binary.LittleEndian.AppendUint16(b, 0x0002)
		b = binary.LittleEndian.AppendUint16(b, elem)
		b = append(b, vr...)
		if vr == "OB" {
			b = append(b, 0, 0)
			b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
		} else {
			b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
		}
		return append(b, v...)
	}
	var meta []byte
	meta = el(meta, 0x0001, "OB", []byte{0, 1})
	meta = el(meta, 0x0002, "UI", uidBytes(class))
	meta = el(meta, 0x0003, "UI", uidBytes(instance))
	meta = el(meta, 0x0010, "UI", uidBytes(syntax))
	meta = el(meta, 0x0012, "UI", uidBytes(implementationUID))
	meta = el(meta, 0x0013, "SH", []byte(implementationName))
	out := slices.Grow(dst[:0], 128+4+12+len(meta))[:128]
	clear(out)
	out = append(out, "DICM"...)
	out = el(out, 0x0000, "UL", binary.LittleEndian.AppendUint32(nil, uint32(len(meta))))
	return append(out, meta...)
}

// respond sends a response command set, in fragments the peer accepts.
func (s *Server) respond(c net.Conn, ctx byte, rq command, field, status uint16, peerMax uint32) error {
	cmd := responseCommand(rq, field, status)
	if uint32(len(cmd))+6 > peerMax {
		return fmt.Errorf("the peer's max PDU %d is too small for a response", peerMax)
	}
	return writePDU(c, pduData, pdataCommand(ctx, cmd))
}

// answerFind runs a C-FIND and sends a pending response with an identifier
// per match, then the final status.
func (s *Server) answerFind(ctx context.Context, c net.Conn, pc byte, syntax string, m command, data []byte, peerMax uint32) error {
	explicit := syntax != "1.2.840.10008.1.2"
	id, err := parseIdentifier(data, explicit)
	if err != nil {
		return s.respond(c, pc, m, 0x8020, 0xA900, peerMax) // identifier does not match SOP class
	}
	matches, err := s.find(ctx, id)
	if err != nil {
		return s.respond(c, pc, m, 0x8020, 0xC000, peerMax) // unable to process (no audit, no answer)
	}
	for _, row := range matches {
		if err := writePDU(c, pduData, pdataCommand(pc, responseWith(m, 0x8020, 0xFF00, true))); err != nil {
			return err
		}
		ds := encodeIdentifier(id.keys, row, explicit)
		max := int(peerMax) - 12
		for len(ds) > 0 {
			n := min(len(ds), max)
			flags := byte(0x00)
			if n == len(ds) {
				flags = 0x02
			}
			pv := binary.BigEndian.AppendUint32(nil, uint32(n+2))
			pv = append(pv, pc, flags)
			if err := writePDU(c, pduData, append(pv, ds[:n]...)); err != nil {
				return err
			}
			ds = ds[n:]
		}
	}
	return s.respond(c, pc, m, 0x8020, 0x0000, peerMax)
}

// C-MOVE information models served.
const (
	studyRootMove   = "1.2.840.10008.5.1.4.1.2.2.2"
	patientRootMove = "1.2.840.10008.5.1.4.1.2.1.2"
)

// Mover sends studies to DICOM destinations for C-MOVE: the node, which
// audits the export and serves received studies under the local patient.
type Mover interface {
	Destination(aet string) (Destination, error)
	Push(ctx context.Context, studyUID string, dest Destination) (SendResult, error)
}

// answerMove sends the studies the identifier selects to the move
// destination, reporting the counts.
func (s *Server) answerMove(ctx context.Context, c net.Conn, pc byte, syntax string, m command, data []byte, peerMax uint32) error {
	send := func(status uint16, remaining, completed, failed int) error {
		return writePDU(c, pduData, pdataCommand(pc, moveResponse(m, status, remaining, completed, failed)))
	}
	id, err := parseIdentifier(data, syntax != "1.2.840.10008.1.2")
	if err != nil {
		return send(0xA900, 0, 0, 0)
	}
	dest, err := s.cfg.Mover.Destination(m.moveDest)
	if err != nil {
		return send(0xA801, 0, 0, 0) // move destination unknown
	}
	matches, err := s.find(ctx, id)
	if err != nil {
		return send(0xC000, 0, 0, 0)
	}
	seen := map[string]bool{}
	var studies []string
	for _, row := range matches {
		if uid := row[tk(0x0020, 0x000D)]; !seen[uid] {
			seen[uid] = true
			studies = append(studies, uid)
		}
	}
	completed, failed := 0, 0
	for i, uid := range studies {
		res, err := s.cfg.Mover.Push(ctx, uid, dest)
		completed += res.Sent
		failed += res.Failed
		if err != nil {
			failed++
		}
		if i+1 < len(studies) {
			if err := send(0xFF00, len(studies)-i-1, completed, failed); err != nil {
				return err
			}
		}
	}
	status := uint16(0x0000)
	if failed > 0 {
		status = 0xB000 // sub-operations complete, one or more failures
	}
	return send(status, 0, completed, failed)
}
