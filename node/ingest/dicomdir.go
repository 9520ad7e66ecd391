package ingest

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// maxFileIDComponents bounds the components of a Referenced File ID (the
// standard allows 8).
const maxFileIDComponents = 16

// fileIDs parses a DICOMDIR and returns the Referenced File IDs of its
// directory records, in record order, each once.
func fileIDs(data []byte) ([][]string, error) {
	ds, l, err := decode(data)
	if err != nil {
		return nil, err
	}
	if l.class != mediaDirectory {
		return nil, reject(ErrMalformed, "DICOMDIR has media storage SOP class %q, not %s", l.class, mediaDirectory)
	}
	el, err := ds.FindElementByTag(tag.DirectoryRecordSequence)
	if err != nil {
		return nil, reject(ErrMalformed, "DICOMDIR has no directory record sequence")
	}
	items, _ := el.Value.GetValue().([]*dicom.SequenceItemValue)
	var ids [][]string
	seen := map[string]bool{}
	for _, it := range items {
		elems, _ := it.GetValue().([]*dicom.Element)
		for _, e := range elems {
			if e.Tag != tag.ReferencedFileID {
				continue
			}
			id, _ := e.Value.GetValue().([]string)
			key := strings.Join(id, `\`)
			if len(id) == 0 || seen[key] {
				continue
			}
			seen[key] = true
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// isoName reports whether a name on disk is the file ID component c as
// media copied from ISO 9660 may spell it: in any case, with or without a
// ";1" version suffix and a trailing dot.
func isoName(name, c string) bool {
	if i := strings.LastIndexByte(name, ';'); i >= 0 && i < len(name)-1 && strings.Trim(name[i+1:], "0123456789") == "" {
		name = name[:i]
	}
	name = strings.TrimSuffix(name, ".")
	return strings.EqualFold(name, c)
}

// safeComponent reports whether c can only name an entry inside its parent
// folder.
func safeComponent(c string) bool {
	if c == "" || c == "." || c == ".." || len(c) > 255 {
		return false
	}
	for i := 0; i < len(c); i++ {
		switch b := c[i]; {
		case b <= ' ' || b >= 0x7F, b == '/', b == '\\', b == ':', b == '*', b == '?':
			return false
		}
	}
	return true
}

// resolver finds the files a DICOMDIR references below its folder. Each
// component is matched case-insensitively, an exact match first; symbolic
// links are never followed, so a reference cannot leave the folder.
type resolver struct {
	root string
	dirs map[string][]fs.DirEntry
}

func newResolver(dicomdir string) *resolver {
	return &resolver{root: filepath.Dir(dicomdir), dirs: map[string][]fs.DirEntry{}}
}

// resolve returns the path of the file id names. When it fails, the path is
// where the file was expected.
func (r *resolver) resolve(id []string) (string, error) {
	ref := strings.Join(id, `\`)
	// Where the file was expected, for the report; never opened.
	at := r.root + string(filepath.Separator) + ref
	if len(id) > maxFileIDComponents {
		return at, reject(ErrMalformed, "DICOMDIR references %q: more than %d components", ref, maxFileIDComponents)
	}
	for _, c := range id {
		if !safeComponent(c) {
			return at, reject(ErrMalformed, "DICOMDIR references unsafe file ID %q", ref)
		}
	}
	p := r.root
	for i, c := range id {
		entries, ok := r.dirs[p]
		if !ok {
			entries, _ = os.ReadDir(p)
			r.dirs[p] = entries
		}
		var match fs.DirEntry
		for _, e := range entries {
			if e.Name() == c {
				match = e
				break
			}
			if match == nil && isoName(e.Name(), c) {
				match = e
			}
		}
		last := i == len(id)-1
		if match == nil || (last && !match.Type().IsRegular()) || (!last && !match.IsDir()) {
			return filepath.Join(append([]string{p}, id[i:]...)...), reject(ErrMissing, "DICOMDIR references %s", ref)
		}
		p = filepath.Join(p, match.Name())
	}
	return p, nil
}
