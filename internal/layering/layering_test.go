package layering

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/dicomesh/dicomesh"

type pkg struct {
	ImportPath string
	Name       string
	Doc        string
	Imports    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"/...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 3 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

// rel returns the import path relative to the module ("" for the root).
func rel(path string) string {
	return strings.TrimPrefix(strings.TrimPrefix(path, module), "/")
}

func under(path, dir string) bool { return path == dir || strings.HasPrefix(path, dir+"/") }

// pure packages perform no I/O, read no clock and never log.
var pure = []string{"crypto", "consent"}

// ioImports are standard packages a pure package must not import.
var ioImports = map[string]bool{
	"os": true, "os/exec": true, "os/signal": true, "net": true, "net/http": true,
	"log": true, "log/slog": true, "syscall": true, "io/ioutil": true,
	"math/rand": true, "math/rand/v2": true, "path/filepath": true,
}

func TestPurePackagesDoNoIO(t *testing.T) {
	for _, p := range listPackages(t) {
		r := rel(p.ImportPath)
		for _, dir := range pure {
			if !under(r, dir) {
				continue
			}
			for _, imp := range p.Imports {
				if ioImports[imp] || strings.HasPrefix(imp, "net/") {
					t.Errorf("%s is pure but imports %s", r, imp)
				}
				if strings.HasPrefix(imp, module) && !under(rel(imp), "crypto") && !under(rel(imp), "consent") {
					t.Errorf("%s is pure but imports %s", r, imp)
				}
			}
		}
	}
}

// rank orders the layers: a package may import only packages of a lower or
// equal rank that are not its ancestors (nothing below node imports node).
func rank(r string) int {
	switch {
	case under(r, "crypto"), under(r, "consent"), under(r, "internal"):
		return 0
	case under(r, "registry"):
		return 1
	case under(r, "federation"):
		return 2
	case under(r, "node"):
		return 3
	case under(r, "simnet"):
		return 4
	case under(r, "cmd"), under(r, "bench"):
		return 5
	}
	return -1
}

func TestImportsPointDown(t *testing.T) {
	for _, p := range listPackages(t) {
		r := rel(p.ImportPath)
		if rank(r) < 0 {
			t.Errorf("package %s is in no layer: add it to rank() and ARCHITECTURE.md", r)
			continue
		}
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module+"/") {
				continue
			}
			ir := rel(imp)
			if rank(ir) > rank(r) {
				t.Errorf("%s imports %s, which is above it", r, ir)
			}
			if strings.HasPrefix(r, ir+"/") {
				t.Errorf("%s imports its parent %s", r, ir)
			}
		}
	}
}

func TestOnlyCompositionRootsBuildHosts(t *testing.T) {
	for _, p := range listPackages(t) {
		r := rel(p.ImportPath)
		for _, imp := range p.Imports {
			if imp != "github.com/libp2p/go-libp2p" {
				continue
			}
			if !(r == "node" || under(r, "simnet") || under(r, "cmd")) {
				t.Errorf("%s constructs libp2p hosts; only node, simnet and cmd may", r)
			}
		}
	}
}

func TestEveryPackageHasDoc(t *testing.T) {
	for _, p := range listPackages(t) {
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("package %s has no doc comment (add a doc.go)", rel(p.ImportPath))
		}
	}
}
