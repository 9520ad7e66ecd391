package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/dicomesh/dicomesh/node/dimse"
)

// pacsFile lists the DICOM destinations the node pushes to.
const pacsFile = "pacs.json"

// PACS is a named DICOM destination.
type PACS struct {
	Name string `json:"name"`
	AET  string `json:"aet"`
	Host string `json:"host"`
	Port int    `json:"port"`
}

// PACSList returns the destinations configured in h, by name.
func PACSList(h Home) ([]PACS, error) {
	b, err := os.ReadFile(h.Path(pacsFile))
	if errors.Is(err, os.ErrNotExist) {
		return []PACS{}, nil
	}
	if err != nil {
		return nil, err
	}
	var ps []PACS
	if err := json.Unmarshal(b, &ps); err != nil {
		return nil, fmt.Errorf("read %s: %w", pacsFile, err)
	}
	return ps, nil
}

// AddPACS adds or replaces a destination.
func AddPACS(h Home, p PACS) error {
	if p.Name == "" || p.AET == "" || len(p.AET) > 16 || p.Host == "" || p.Port <= 0 || p.Port > 65535 {
		return errors.New("pacs: a name, an AE title of 1 to 16 characters, a host and a port are needed")
	}
	ps, err := PACSList(h)
	if err != nil {
		return err
	}
	out := []PACS{p}
	for _, q := range ps {
		if q.Name != p.Name {
			out = append(out, q)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	b, _ := json.MarshalIndent(out, "", "  ")
	return writeFileAtomic(h.Path(pacsFile), append(b, '\n'), 0o600)
}

// Destination resolves a configured PACS by name or AE title.
func (n *Node) Destination(name string) (dimse.Destination, error) {
	ps, err := PACSList(n.Home)
	if err != nil {
		return dimse.Destination{}, err
	}
	for _, p := range ps {
		if p.Name == name || p.AET == name {
			return dimse.Destination{AET: p.AET, Host: p.Host, Port: p.Port, CallingAET: n.Config.AET}, nil
		}
	}
	return dimse.Destination{}, fmt.Errorf("no PACS named %q (dicomesh pacs add)", name)
}
