package node

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/node/archive"
)

// Layout of a node's home directory. Everything below it belongs to the node.
const (
	identityFile = "keys/identity.key"
	configFile   = "config.toml"
	archiveDir   = "archive"
	auditDir     = "audit"
	rejectDir    = "rejected"
)

// ErrNotInitialized is returned when a home directory has no identity yet.
var ErrNotInitialized = errors.New("node: home not initialized (run dicomesh init)")

// ErrAlreadyInitialized is returned by Init when the home already holds an identity.
var ErrAlreadyInitialized = errors.New("node: home already initialized")

// PermissionError reports a secret file or directory readable by others.
type PermissionError struct {
	Path string
	Mode fs.FileMode
}

func (e *PermissionError) Error() string {
	return fmt.Sprintf("%s has mode %04o: secrets must not be readable by group or others (chmod 0600 files, 0700 directories)", e.Path, e.Mode.Perm())
}

// Home is a node's data directory.
type Home string

// Path returns the absolute path of name inside the home.
func (h Home) Path(name string) string { return filepath.Join(string(h), filepath.FromSlash(name)) }

// ArchiveDir is where the study store lives.
func (h Home) ArchiveDir() string { return h.Path(archiveDir) }

// AuditDir is where the audit log lives.
func (h Home) AuditDir() string { return h.Path(auditDir) }

// RejectDir is where rejected input is kept aside.
func (h Home) RejectDir() string { return h.Path(rejectDir) }

// ConfigPath is the node's TOML configuration file.
func (h Home) ConfigPath() string { return h.Path(configFile) }

// Init creates the home directory (0700), a new facility identity (0600) and a
// commented configuration file. It refuses to overwrite an existing identity.
func Init(h Home, cfg Config) (*crypto.Identity, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(h.Path(identityFile)); err == nil {
		return nil, fmt.Errorf("init %s: %w", h, ErrAlreadyInitialized)
	}
	for _, d := range []string{".", "keys", archiveDir, auditDir, rejectDir} {
		if err := os.MkdirAll(h.Path(d), 0o700); err != nil {
			return nil, fmt.Errorf("init %s: %w", h, err)
		}
		if err := os.Chmod(h.Path(d), 0o700); err != nil {
			return nil, fmt.Errorf("init %s: %w", h, err)
		}
	}
	id, err := crypto.GenerateIdentity(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("init %s: %w", h, err)
	}
	text, err := id.MarshalText()
	if err != nil {
		return nil, fmt.Errorf("init %s: %w", h, err)
	}
	if err := writeFileAtomic(h.Path(identityFile), text, 0o600); err != nil {
		return nil, fmt.Errorf("init %s: %w", h, err)
	}
	if err := writeFileAtomic(h.ConfigPath(), cfg.MarshalTOML(), 0o600); err != nil {
		return nil, fmt.Errorf("init %s: %w", h, err)
	}
	// The archive's folders now, not at the first ingest.
	if err := archive.Prepare(h.ArchiveDir()); err != nil {
		return nil, fmt.Errorf("init %s: %w", h, err)
	}
	return id, nil
}

// LoadIdentity reads the facility identity, refusing key files or a keys
// directory that group or others can read.
func LoadIdentity(h Home) (*crypto.Identity, error) {
	path := h.Path(identityFile)
	if err := checkPrivate(filepath.Dir(path), 0o077); err != nil {
		return nil, err
	}
	if err := checkPrivate(path, 0o077); err != nil {
		return nil, err
	}
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load identity: %w", err)
	}
	id, err := crypto.ParseIdentity(text)
	if err != nil {
		return nil, fmt.Errorf("load identity %s: %w", path, err)
	}
	return id, nil
}

func checkPrivate(path string, forbidden fs.FileMode) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return ErrNotInitialized
	}
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&forbidden != 0 {
		return &PermissionError{Path: path, Mode: fi.Mode()}
	}
	return nil
}

// writeFileAtomic writes data to a temporary file, syncs it, renames it over
// path and syncs the directory, so that path holds either the old or the new
// contents after a crash.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
