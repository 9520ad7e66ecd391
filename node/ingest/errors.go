package ingest

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error Parse returns, and every Rejection's Err, is a
// *RejectError that unwraps to one of them.
var (
	// ErrNotDICOM marks a file that plainly is not DICOM: no Part 10 header
	// and nothing that looks like a raw dataset. Run skips such files.
	ErrNotDICOM = errors.New("not DICOM")
	// ErrNoFileMeta marks what looks like a DICOM dataset without the Part 10
	// preamble, magic and file meta group, so without a transfer syntax.
	ErrNoFileMeta = errors.New("DICOM dataset without Part 10 file meta")
	// ErrMalformed marks a file whose structure is broken: a length that
	// overruns the file, a missing delimiter, nesting beyond MaxDepth.
	ErrMalformed = errors.New("malformed DICOM")
	// ErrTooLarge marks input beyond a size or count limit.
	ErrTooLarge = errors.New("too large")
	// ErrUnsupported marks well-formed DICOM in an encoding the parser does
	// not handle (deflated or private transfer syntaxes, OV/SV/UV elements).
	ErrUnsupported = errors.New("unsupported DICOM encoding")
	// ErrInvalidUID marks a missing or malformed UID (PS3.5 9.1).
	ErrInvalidUID = errors.New("invalid UID")
	// ErrDirectory marks a DICOMDIR: an index of media, not an instance.
	ErrDirectory = errors.New("DICOMDIR media directory")
	// ErrMissing marks a file a DICOMDIR references that is not on the media.
	ErrMissing = errors.New("referenced file missing")
	// ErrUnreadable marks a file that could not be read.
	ErrUnreadable = errors.New("unreadable")
	// ErrBusy marks an instance whose study another writer holds open.
	ErrBusy = errors.New("study busy")
)

// RejectError says why one input was not stored. Its Error method does not
// repeat Path, which callers print beside it.
type RejectError struct {
	Path   string // file, or "archive.zip!entry"; empty from Parse
	Reason string // what was wrong, for people; UIDs and offsets, never PHI
	Err    error  // one of the sentinels, possibly wrapping a cause
}

func (e *RejectError) Error() string {
	if e.Reason == "" {
		return e.Err.Error()
	}
	return e.Err.Error() + ": " + e.Reason
}

func (e *RejectError) Unwrap() error { return e.Err }

// reject returns a *RejectError for sentinel with a formatted reason.
func reject(sentinel error, format string, args ...any) *RejectError {
	return &RejectError{Err: sentinel, Reason: fmt.Sprintf(format, args...)}
}

// withPath returns err as a *RejectError carrying path. An error that is not
// a *RejectError becomes one wrapping ErrUnreadable.
func withPath(err error, path string) *RejectError {
	var re *RejectError
	if errors.As(err, &re) {
		c := *re
		c.Path = path
		return &c
	}
	return &RejectError{Path: path, Err: ErrUnreadable, Reason: err.Error()}
}
