package archive

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/dicomesh/dicomesh/crypto"
)

// ErrNotFound is returned when a study or instance is not in the archive.
var ErrNotFound = errors.New("archive: not found")

// Config configures Open.
type Config struct {
	// Dir is the archive's directory (blocks and index live below it).
	Dir string
	// Owner is the facility identity. Study keys are sealed to its recipient, and
	// the index is encrypted with a key derived from it.
	Owner *crypto.Identity
	// NoSync skips fsync. Only for tests and benchmarks that measure it.
	NoSync bool
	// PerFileSync makes a study durable by syncing each block file and
	// directory instead of one syncfs(2) of the block store's file system
	// at commit. syncfs is faster (424 against 289 MB/s committing CT
	// slices here) but also flushes what other programs wrote to that
	// file system; set this when the archive shares a busy one. Always on
	// where syncfs does not exist.
	PerFileSync bool
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Logger receives operational messages (never PHI); nil discards them.
	Logger *slog.Logger
	// BeforeCommit, if set, is called by Tx.Commit with the new version of
	// a study (Root set, every block durable) just before the commit point.
	// An error aborts the commit: the Tx is rolled back and Commit returns
	// the error. The node appends its audit record here, so that no study
	// becomes visible without one.
	BeforeCommit func(ctx context.Context, st Study) error
}

// InstanceMeta is what ingest extracts from one DICOM instance. All strings are
// the trimmed DICOM values; PatientName is in DICOM PN form (FAMILY^GIVEN).
type InstanceMeta struct {
	SOPClassUID       string
	SOPInstanceUID    string
	SeriesInstanceUID string
	StudyInstanceUID  string
	TransferSyntaxUID string

	PatientID         string
	IssuerOfPatientID string
	PatientName       string
	PatientBirthDate  string // YYYYMMDD
	PatientSex        string // M, F, O or empty

	StudyDate        string // YYYYMMDD
	StudyTime        string
	StudyDescription string
	AccessionNumber  string
	StudyID          string
	Referrer         string // referring physician, PN form

	Modality          string
	BodyPartExamined  string
	SeriesDescription string
	SeriesNumber      int
	InstanceNumber    int
}

// Instance describes one stored instance.
type Instance struct {
	SOPInstanceUID    string
	SOPClassUID       string
	TransferSyntaxUID string
	Number            int
	Size              int64    // bytes of the original instance
	SHA256            [32]byte // of the original bytes
	Root              cid.Cid  // root of the encrypted object's DAG
	Compressed        bool     // zstd-compressed before encryption
	Shuffled          bool     // bytes de-interleaved in pairs before compression
}

// Series describes one stored series.
type Series struct {
	UID         string
	Number      int
	Modality    string
	BodyPart    string
	Description string
	Instances   []Instance // ordered by Number, then SOPInstanceUID
}

// Study is the index record of one stored study (its latest version).
type Study struct {
	UID         string
	PatientID   string
	Issuer      string
	PatientName string
	BirthDate   string
	Sex         string
	StudyDate   string
	StudyTime   string
	Description string
	Accession   string
	StudyID     string   `json:",omitempty"`
	Referrer    string   `json:",omitempty"` // referring physician
	Modalities  []string // sorted, distinct
	BodyParts   []string // sorted, distinct
	Series      []Series // ordered by Number, then UID; nil in Studies results
	SeriesCount int      // len(Series) of the full record
	Instances   int
	Bytes       int64 // original bytes of all instances
	Version     int   // 1 for the first commit, +1 for each commit that changed it
	Root        cid.Cid
	StoredAt    time.Time
	// Source is the facility a received study came from, and
	// SourceManifest its manifest id in the registry; both are empty for
	// the facility's own studies.
	Source         string `json:",omitempty"`
	SourceManifest string `json:",omitempty"`
	// LocalPatientID and LocalIssuer are, for a received study, the
	// patient as this facility knows them: the study is served to local
	// systems under them (import reconciliation).
	LocalPatientID string `json:",omitempty"`
	LocalIssuer    string `json:",omitempty"`
}

// Query selects studies. Zero fields match everything; string fields match
// exactly except PatientName, which matches case-insensitively: as a
// pattern when it holds the DICOM wildcards * or ?, else as a prefix; with
// FuzzyName, a prefix of any one name component matches too. A received
// study matches PatientID and Issuer under the local patient it was
// reconciled to.
type Query struct {
	PatientID   string
	Issuer      string
	PatientName string
	FuzzyName   bool
	Modality    string
	DateFrom    string // YYYYMMDD, inclusive
	DateTo      string // YYYYMMDD, inclusive
	Accession   string
	Limit       int
}
