package dimse

import (
	"bufio"
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

// Spooler is a Store that can keep an instance durably at once and commit
// an association's instances together at its end: far fewer archive
// commits than one per instance. A Store that implements it is used so.
type Spooler interface {
	Spool(ctx context.Context, assoc string, data []byte) error
	CommitSpool(ctx context.Context, assoc string) error
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
	var once sync.Once
	commitSpool := func() {
		sp, ok := s.cfg.Store.(Spooler)
		if !ok {
			return
		}
		once.Do(func() {
			// The association is over, however it ended: what was
			// acknowledged is committed (the spool survives a crash).
			cctx := context.WithoutCancel(ctx)
			if s.cfg.WithActor != nil {
				cctx = s.cfg.WithActor(cctx, audit.Actor{User: "dicom:" + rq.calling, Address: c.RemoteAddr().String()})
			}
			if err := sp.CommitSpool(cctx, assoc); err != nil {
				s.cfg.Logger.Error("cannot commit the association's instances; they stay spooled", "err", err)
			}
		})
	}
	defer commitSpool()
	actx := ctx
	if s.cfg.WithActor != nil {
		actx = s.cfg.WithActor(ctx, audit.Actor{User: "dicom:" + rq.calling, Address: c.RemoteAddr().String()})
	}
	var cmd, data, file []byte
	var cmdCtx byte
	for {
		c.SetDeadline(time.Now().Add(s.cfg.IdleTimeout))
		typ, body, err := readPDU(r, s.cfg.MaxPDU+6)
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
				cmd, cmdCtx = append(cmd, p.data...), p.ctx
				if len(cmd) > 64<<10 {
					writePDU(c, pduAbort, []byte{0, 0, 2, 0})
					return fmt.Errorf("%w: command set too large", ErrMalformed)
				}
				if !p.last {
					continue
				}
				m, err := parseCommand(cmd)
				if err != nil {
					writePDU(c, pduAbort, []byte{0, 0, 2, 0})
					return err
				}
				if m.field == cEchoRQ {
					if err := s.respond(c, cmdCtx, m, 0x8030, 0x0000, peerMax); err != nil {
						return err
					}
					cmd = nil
				}
				continue
			}
			data = append(data, p.data...)
			if len(data) > s.cfg.MaxObjectBytes {
				writePDU(c, pduAbort, []byte{0, 0, 2, 0})
				return fmt.Errorf("instance larger than %d bytes", s.cfg.MaxObjectBytes)
			}
			if !p.last {
				continue
			}
			m, err := parseCommand(cmd)
			if err == nil && m.field == cMoveRQ {
				if err := s.answerMove(actx, c, cmdCtx, ctxs[cmdCtx].syntax, m, data, peerMax); err != nil {
					return err
				}
				cmd, data = cmd[:0], data[:0]
				continue
			}
			if err == nil && m.field == cFindRQ {
				if err := s.answerFind(actx, c, cmdCtx, ctxs[cmdCtx].syntax, m, data, peerMax); err != nil {
					return err
				}
				cmd, data = cmd[:0], data[:0]
				continue
			}
			if err != nil || m.field != cStoreRQ {
				writePDU(c, pduAbort, []byte{0, 0, 2, 0})
				return fmt.Errorf("%w: a data set without a C-STORE or C-FIND request", ErrMalformed)
			}
			status := s.store(actx, assoc, ctxs[cmdCtx].syntax, m, data, &file)
			if err := s.respond(c, cmdCtx, m, 0x8001, status, peerMax); err != nil {
				return err
			}
			// The stored instance was copied: the buffers serve the next.
			cmd, data = cmd[:0], data[:0]
		}
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if strings.EqualFold(strings.TrimSpace(x), s) {
			return true
		}
	}
	return false
}

// store wraps a received data set in a Part 10 file, passes it through the
// guarded parser and commits it; the status says how it went. Success
// means the instance is durably stored: the response waits for the commit.
// A Spooler copies what it keeps, so the file is built in *buf, which
// serves the association's next instance too.
func (s *Server) store(ctx context.Context, assoc, syntax string, m command, data []byte, buf *[]byte) uint16 {
	var dst []byte
	if _, ok := s.cfg.Store.(Spooler); ok {
		dst = (*buf)[:0]
	}
	file := part10(dst, m.sopClass, m.sopInstance, syntax, data)
	*buf = file
	meta, err := ingest.Parse(file)
	if err != nil {
		s.cfg.Logger.Info("C-STORE refused", "sop", m.sopInstance, "err", err)
		return 0xC000 // cannot understand
	}
	if sp, ok := s.cfg.Store.(Spooler); ok {
		if err := sp.Spool(ctx, assoc, file); err != nil {
			s.cfg.Logger.Warn("C-STORE could not be spooled", "sop", m.sopInstance, "err", err)
			return 0xA700
		}
		return 0x0000
	}
	if err := s.cfg.Store.Store(ctx, meta.StudyInstanceUID, []archive.InstanceMeta{meta}, [][]byte{file}); err != nil {
		s.cfg.Logger.Warn("C-STORE could not be stored", "sop", m.sopInstance, "err", err)
		return 0xA700 // out of resources
	}
	return 0x0000
}

// part10 builds a DICOM file in dst: preamble, "DICM", a file meta group
// from the association, then the data set as received.
func part10(dst []byte, class, instance, syntax string, data []byte) []byte {
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
	out := slices.Grow(dst[:0], 128+4+12+len(meta)+len(data))[:128]
	clear(out)
	out = append(out, "DICM"...)
	out = el(out, 0x0000, "UL", binary.LittleEndian.AppendUint32(nil, uint32(len(meta))))
	out = append(out, meta...)
	return append(out, data...)
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
