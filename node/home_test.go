package node

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInitWritesPrivateKeys(t *testing.T) {
	h := Home(filepath.Join(t.TempDir(), "home"))
	id, err := Init(h, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{
		string(h):            0o700,
		h.Path("keys"):       0o700,
		h.Path(identityFile): 0o600,
		h.ConfigPath():       0o600,
		h.ArchiveDir():       0o700, // laid out now, not at the first ingest
		filepath.Join(h.ArchiveDir(), "blocks", "aa"): 0o700,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %04o, want %04o", path, got, want)
		}
	}
	got, err := LoadIdentity(h)
	if err != nil {
		t.Fatal(err)
	}
	if !got.SignKey().Equal(id.SignKey()) || got.Recipient().String() != id.Recipient().String() {
		t.Error("loaded identity differs from the one Init made")
	}
	if _, err := Init(h, DefaultConfig()); !errors.Is(err, ErrAlreadyInitialized) {
		t.Errorf("second Init: got %v, want ErrAlreadyInitialized", err)
	}
}

func TestLoadIdentityRefusesWidePermissions(t *testing.T) {
	for _, tc := range []struct {
		name string
		path func(Home) string
		mode os.FileMode
	}{
		{"key file group-readable", func(h Home) string { return h.Path(identityFile) }, 0o640},
		{"key file world-readable", func(h Home) string { return h.Path(identityFile) }, 0o604},
		{"keys dir world-listable", func(h Home) string { return h.Path("keys") }, 0o705},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := Home(t.TempDir())
			if _, err := Init(h, DefaultConfig()); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(tc.path(h), tc.mode); err != nil {
				t.Fatal(err)
			}
			_, err := LoadIdentity(h)
			var pe *PermissionError
			if !errors.As(err, &pe) || pe.Path != tc.path(h) {
				t.Fatalf("LoadIdentity: got %v, want PermissionError for %s", err, tc.path(h))
			}
		})
	}
}

func TestLoadIdentityNotInitialized(t *testing.T) {
	if _, err := LoadIdentity(Home(t.TempDir())); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("got %v, want ErrNotInitialized", err)
	}
}

func TestConfigRoundTripAndStrictness(t *testing.T) {
	h := Home(t.TempDir())
	cfg := DefaultConfig()
	cfg.Facility = `St. "Quoted" Hospital`
	cfg.P2P = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/4999"}
	cfg.Announce = []string{"/dns4/pacs.example.org/tcp/4801"}
	if _, err := Init(h, cfg); err != nil {
		t.Fatal(err)
	}
	got, err := LoadConfig(h)
	if err != nil {
		t.Fatal(err)
	}
	if got.Facility != cfg.Facility || strings.Join(got.P2P, ",") != strings.Join(cfg.P2P, ",") || got.AET != cfg.AET ||
		strings.Join(got.Announce, ",") != strings.Join(cfg.Announce, ",") {
		t.Errorf("config round trip: got %+v, want %+v", got, cfg)
	}

	bad := map[string]string{
		"unknown key":  "facility = \"x\"\nhtpp = \"127.0.0.1:1\"\n",
		"bad address":  "facility = \"x\"\nhttp = \"nonsense\"\n",
		"long AE":      "facility = \"x\"\naet = \"ABCDEFGHIJKLMNOPQ\"\n",
		"empty name":   "facility = \"\"\n",
		"not toml":     "facility = \n",
		"zero workers": "facility = \"x\"\ningest_workers = 0\n",
		"bad announce": "facility = \"x\"\nannounce = [\"127.0.0.1:4801\"]\n",
	}
	for name, text := range bad {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(h.ConfigPath(), []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadConfig(h); err == nil {
				t.Errorf("LoadConfig accepted %q", text)
			}
		})
	}
}
