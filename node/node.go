package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/libp2p/go-libp2p/core/host"

	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/federation"
	"github.com/dicomesh/dicomesh/node/archive"
	"github.com/dicomesh/dicomesh/node/audit"
	"github.com/dicomesh/dicomesh/node/ingest"
)

// Options are the run-time dependencies of a node that do not belong in its
// configuration file.
type Options struct {
	// Logger receives operational logs (never PHI); nil discards them.
	Logger *slog.Logger
	// NoSync turns off fsync in the stores. Only for tests and measurements.
	NoSync bool
}

// Node is one facility's node, opened on its home directory.
type Node struct {
	Home     Home
	Config   Config
	Identity *crypto.Identity
	// FacilityID is the facility's libp2p peer id, derived from its signing
	// key: how the federation and the audit trail name it.
	FacilityID string
	Archive    *archive.Archive
	// Audit is the facility's audit log. Every operation on patient data
	// through the node is recorded there before it proceeds.
	Audit *audit.Log

	log *slog.Logger

	slotsMu sync.Mutex
	slots   map[string]*spoolSlots // spool files made ahead and the key, by association

	// receiving are the studies being pulled, by root CID: their checked
	// instances are readable before the commit.
	receiving sync.Map

	rtMu    sync.Mutex
	rt      *fedRuntime // while running in a federation
	running *running    // while Run runs
}

// running is what Run shares with operations that arrive while it runs.
type running struct {
	ctx     context.Context
	h       host.Host
	members *federation.Members
}

// Open loads the identity and configuration from h and opens the stores.
func Open(h Home, opt Options) (*Node, error) {
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	id, err := LoadIdentity(h)
	if err != nil {
		return nil, err
	}
	cfg, err := LoadConfig(h)
	if err != nil {
		return nil, err
	}
	pid, err := PeerID(id)
	if err != nil {
		return nil, err
	}
	n := &Node{Home: h, Config: cfg, Identity: id, FacilityID: pid.String(), log: log}
	acfg := audit.DefaultConfig()
	acfg.Dir = h.AuditDir()
	acfg.Facility = n.FacilityID
	acfg.Key = id.PrivateSignKey()
	acfg.Logger = log.With("component", "audit")
	if n.Audit, err = audit.Open(context.Background(), acfg); err != nil {
		return nil, fmt.Errorf("open node %s: %w", h, err)
	}
	n.Archive, err = archive.Open(archive.Config{
		Dir:          h.ArchiveDir(),
		Owner:        id,
		NoSync:       opt.NoSync,
		PerFileSync:  cfg.ArchivePerFileSync,
		Logger:       log.With("component", "archive"),
		BeforeCommit: n.auditImport,
	})
	if err != nil {
		n.Audit.Close()
		return nil, fmt.Errorf("open node %s: %w", h, err)
	}
	return n, nil
}

// Close releases the node's stores.
func (n *Node) Close() error {
	n.slotsMu.Lock()
	for _, sl := range n.slots {
		sl.close()
	}
	n.slots = nil
	n.slotsMu.Unlock()
	return errors.Join(n.Archive.Close(), n.Audit.Close())
}

// Ingest stores the DICOM instances found under paths (files, folders,
// DICOMDIR media, zip archives). Rejected input is kept aside in the home's
// rejected folder. progress, if not nil, is called as files are processed.
func (n *Node) Ingest(ctx context.Context, progress func(ingest.Progress), paths ...string) (ingest.Report, error) {
	cfg := ingest.DefaultConfig()
	cfg.Archive = n.Archive
	cfg.QuarantineDir = n.Home.RejectDir()
	cfg.Workers = n.Config.IngestWorkers
	cfg.Logger = n.log.With("component", "ingest")
	cfg.Progress = progress
	rep, err := ingest.Run(ctx, cfg, paths...)
	if qerr := n.queuePublish(rep.Studies); qerr != nil && err == nil {
		err = fmt.Errorf("the studies are stored but could not be queued for publication: %w", qerr)
	}
	return rep, err
}
