package node

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"text/template"

	"github.com/BurntSushi/toml"
	ma "github.com/multiformats/go-multiaddr"
)

// Config is a node's configuration, kept in config.toml in its home.
type Config struct {
	// Facility is the human-readable name of this facility in the federation.
	Facility string `toml:"facility"`
	// HTTP is the listen address of the API, DICOMweb and metrics listener.
	HTTP string `toml:"http"`
	// P2P lists the libp2p listen multiaddrs.
	P2P []string `toml:"p2p"`
	// Announce lists the libp2p multiaddrs other members dial, when they
	// differ from the listen addresses (a port forwarded by a firewall, a
	// proxy); empty means the listen addresses.
	Announce []string `toml:"announce"`
	// DICOM is the listen address of the DIMSE service.
	DICOM string `toml:"dicom"`
	// AET is the node's DICOM application entity title.
	AET string `toml:"aet"`
	// IngestWorkers is how many files are parsed and stored in parallel.
	IngestWorkers int `toml:"ingest_workers"`
	// ArchivePerFileSync syncs each block file instead of the archive's
	// whole file system once per study (see archive.Config.PerFileSync).
	ArchivePerFileSync bool `toml:"archive_per_file_sync"`
}

// DefaultConfig returns a configuration that listens on loopback only.
func DefaultConfig() Config {
	return Config{
		Facility:      "My Hospital",
		HTTP:          "127.0.0.1:8480",
		P2P:           []string{"/ip4/127.0.0.1/tcp/4801"},
		DICOM:         "127.0.0.1:11112",
		AET:           "DICOMESH",
		IngestWorkers: 4,
	}
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	if strings.TrimSpace(c.Facility) == "" {
		return errors.New("config: facility name is empty")
	}
	for _, a := range []struct{ name, addr string }{{"http", c.HTTP}, {"dicom", c.DICOM}} {
		if a.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return fmt.Errorf("config: %s listen address %q: %w", a.name, a.addr, err)
		}
	}
	for _, a := range c.Announce {
		if _, err := ma.NewMultiaddr(a); err != nil {
			return fmt.Errorf("config: announce address %q: %w", a, err)
		}
	}
	if n := len(c.AET); n == 0 || n > 16 || strings.ContainsAny(c.AET, "\\\x00\r\n") || strings.TrimSpace(c.AET) != c.AET {
		return fmt.Errorf("config: AE title %q must be 1 to 16 characters without backslash, control characters or surrounding spaces", c.AET)
	}
	if c.IngestWorkers < 1 || c.IngestWorkers > 256 {
		return fmt.Errorf("config: ingest_workers %d must be between 1 and 256", c.IngestWorkers)
	}
	return nil
}

var configTemplate = template.Must(template.New("config").Parse(`# dicomesh node configuration.
# Everything listens on loopback by default: expose a listener on purpose only.

# The name other members of the federation see for this facility.
facility = {{printf "%q" .Facility}}

# HTTP listener: JSON API, DICOMweb, /healthz, /readyz and /metrics.
http = {{printf "%q" .HTTP}}

# libp2p listen addresses (multiaddrs) for the federation.
p2p = [{{range $i, $a := .P2P}}{{if $i}}, {{end}}{{printf "%q" $a}}{{end}}]

# The libp2p addresses other members dial, when they are not the listen
# addresses: the public address and port a firewall forwards to this node.
# Empty: the listen addresses are announced.
announce = [{{range $i, $a := .Announce}}{{if $i}}, {{end}}{{printf "%q" $a}}{{end}}]

# DIMSE listener (C-ECHO, C-STORE, C-FIND, C-MOVE) and its AE title.
dicom = {{printf "%q" .DICOM}}
aet = {{printf "%q" .AET}}

# Files parsed and stored in parallel during ingest.
ingest_workers = {{.IngestWorkers}}

# A stored study is made durable with one syncfs of the archive's file system.
# Set to true when the archive shares a busy file system with other programs:
# each block file is then synced on its own (slower).
archive_per_file_sync = {{.ArchivePerFileSync}}
`))

// MarshalTOML renders c as a commented TOML file.
func (c Config) MarshalTOML() []byte {
	var b bytes.Buffer
	if err := configTemplate.Execute(&b, c); err != nil {
		panic(err) // the template and Config are fixed; an error is a programming error
	}
	return b.Bytes()
}

// LoadConfig reads the home's config.toml. Unknown keys are an error, so a typo
// never silently falls back to a default.
func LoadConfig(h Home) (Config, error) {
	data, err := os.ReadFile(h.ConfigPath())
	if err != nil {
		return Config{}, fmt.Errorf("load config: %w", err)
	}
	c := DefaultConfig()
	md, err := toml.Decode(string(data), &c)
	if err != nil {
		return Config{}, fmt.Errorf("load config %s: %w", h.ConfigPath(), err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return Config{}, fmt.Errorf("load config %s: unknown key %q", h.ConfigPath(), und[0].String())
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("load config %s: %w", h.ConfigPath(), err)
	}
	return c, nil
}
