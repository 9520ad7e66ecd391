package ingest

import (
	"archive/zip"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// source is one candidate instance: a file on disk or a zip entry.
type source struct {
	path string // as reported: a file, or "archive.zip!entry"
	disk string // the file on disk that holds it; "" if there is none
	open func() ([]byte, error)
	size int64 // expected bytes, for the run's memory budget; 0 if unknown
}

// failed is a source that is rejected without being read.
func failed(path, disk string, err error) source {
	return source{path: path, disk: disk, open: func() ([]byte, error) { return nil, err }}
}

// readHead reads the first bytes of a candidate and rejects it as not DICOM
// when they plainly are not.
func readHead(r io.Reader) ([]byte, error) {
	head := make([]byte, metaStart)
	n, err := io.ReadFull(r, head)
	head = head[:n]
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, reject(ErrUnreadable, "%v", err)
	}
	if !isPart10(head) && !plausibleDataset(head) && !(n >= 8 && string(head[:4]) == "DICM") {
		return nil, reject(ErrNotDICOM, "no DICM magic at offset 128")
	}
	return head, nil
}

// readRest reads the rest of a candidate whose first bytes are head. size
// is what it declares (-1 if unknown); it never reads past max bytes in all.
func readRest(r io.Reader, head []byte, size, max int64) ([]byte, error) {
	if size > max {
		return nil, reject(ErrTooLarge, "%d bytes (limit %d)", size, max)
	}
	if len(head) < metaStart {
		return head, nil
	}
	hint := size
	if hint < metaStart {
		hint = metaStart
	}
	// bytes.Buffer.ReadFrom keeps bytes.MinRead bytes free for each read:
	// with that much spare capacity a file of the size stat gave is read
	// without the buffer ever growing (and being copied and cleared).
	buf := bytes.NewBuffer(getReadBuf(int(hint) + bytes.MinRead))
	buf.Write(head)
	if _, err := buf.ReadFrom(io.LimitReader(r, max+1-int64(len(head)))); err != nil {
		return nil, reject(ErrUnreadable, "%v", err)
	}
	if int64(buf.Len()) > max {
		return nil, reject(ErrTooLarge, "more than %d bytes", max)
	}
	return buf.Bytes(), nil
}

// readBufs recycles the buffers candidates are read into: a fresh buffer
// for every file cost its page faults and its zeroing, about a tenth of an
// ingest's CPU.
var readBufs sync.Pool

// Buffers from 64 KiB to maxPooledRead bytes are recycled.
const maxPooledRead = 16 << 20

func getReadBuf(n int) []byte {
	if p, ok := readBufs.Get().(*[]byte); ok && cap(*p) >= n {
		return (*p)[:0]
	}
	return make([]byte, 0, n)
}

// releaseRead recycles the buffer of data returned by a source's open; data
// must not be used after.
func releaseRead(data []byte) {
	if c := cap(data); c >= 64<<10 && c <= maxPooledRead {
		data = data[:0]
		readBufs.Put(&data)
	}
}

// ReadAll reads r to its end, or to its first limit bytes, into a recycled
// buffer (for instances that do not come from files: STOW-RS parts).
// Release gives the buffer back once nothing uses the bytes.
func ReadAll(r io.Reader, limit int64) ([]byte, error) {
	buf := bytes.NewBuffer(getReadBuf(64 << 10))
	_, err := buf.ReadFrom(io.LimitReader(r, limit))
	return buf.Bytes(), err
}

// Release recycles the buffer of data returned by ReadAll; data must not be
// used after.
func Release(data []byte) { releaseRead(data) }

// readFile reads a candidate file of at most max bytes, stopping after the
// first bytes when they plainly are not DICOM.
func readFile(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, reject(ErrUnreadable, "%v", errors.Unwrap(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, reject(ErrUnreadable, "%v", err)
	}
	head, err := readHead(f)
	if err != nil {
		return nil, err
	}
	return readRest(f, head, fi.Size(), max)
}

func isDICOMDIR(name string) bool { return isoName(name, "DICOMDIR") }

func isZip(name string) bool { return strings.EqualFold(filepath.Ext(name), ".zip") }

// discovery lists the sources under the paths of a run.
type discovery struct {
	r    *run
	out  []source
	seen map[string]bool // absolute paths of files already listed
}

func (d *discovery) claim(path string) bool {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = filepath.Clean(path)
	}
	if d.seen[abs] {
		return false
	}
	d.seen[abs] = true
	return true
}

// path adds what path holds. Only a path that cannot be looked at is an
// error.
func (d *discovery) path(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	switch {
	case fi.IsDir():
		return d.folder(p)
	case isDICOMDIR(filepath.Base(p)):
		if !d.media(p) {
			// The index is unusable: take the media folder as it is.
			return d.folder(filepath.Dir(p))
		}
	default:
		d.file(p)
	}
	return nil
}

// file adds one file on disk: an instance candidate or a zip archive.
func (d *discovery) file(p string) {
	if !d.claim(p) {
		return
	}
	if isZip(p) {
		d.zip(p)
		return
	}
	max := d.r.cfg.MaxFileBytes
	var size int64
	if fi, err := os.Stat(p); err == nil {
		size = min(fi.Size(), max)
	}
	d.out = append(d.out, source{path: p, disk: p, size: size, open: func() ([]byte, error) { return readFile(p, max) }})
}

// folder adds a folder recursively. Files a DICOMDIR in it references come
// first, in the DICOMDIR's order; every other file is added too, so media
// whose DICOMDIR is incomplete lose nothing. DICOMDIR files themselves are
// indexes, not sources.
func (d *discovery) folder(root string) error {
	var files, dirs []string
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if p == root {
				return err
			}
			if d.claim(p) {
				d.out = append(d.out, failed(p, "", reject(ErrUnreadable, "%v", errors.Unwrap(err))))
			}
			if e != nil && e.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		switch {
		case !e.Type().IsRegular():
		case isDICOMDIR(e.Name()):
			dirs = append(dirs, p)
		default:
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range dirs {
		d.media(p)
	}
	for _, p := range files {
		d.file(p)
	}
	return nil
}

// media adds the files a DICOMDIR references. A DICOMDIR that cannot be read
// is itself rejected, and media reports false.
func (d *discovery) media(p string) bool {
	if !d.claim(p) {
		return true
	}
	data, err := readFile(p, d.r.cfg.MaxFileBytes)
	var ids [][]string
	if err == nil {
		ids, err = fileIDs(data)
	}
	if err != nil {
		d.out = append(d.out, source{path: p, disk: p, open: func() ([]byte, error) { return data, err }})
		d.r.cfg.Logger.Warn("unusable DICOMDIR, walking its folder instead", "path", p, "err", err)
		return false
	}
	res := newResolver(p)
	for _, id := range ids {
		f, err := res.resolve(id)
		if err != nil {
			d.out = append(d.out, failed(f, "", err))
			continue
		}
		d.file(f)
	}
	return true
}

// zipArchive is one zip being ingested: its entries share a budget of
// decompressed bytes.
type zipArchive struct {
	mu     sync.Mutex
	budget int64
	limit  int64
}

// reserve takes n bytes from the budget, if there are that many left.
func (z *zipArchive) reserve(n int64) bool {
	z.mu.Lock()
	defer z.mu.Unlock()
	if n > z.budget {
		return false
	}
	z.budget -= n
	return true
}

func (z *zipArchive) refund(n int64) {
	z.mu.Lock()
	z.budget += n
	z.mu.Unlock()
}

// zip adds the entries of a zip archive. Entries are read into memory, never
// extracted, so their names cannot reach outside; each entry is bounded by
// MaxFileBytes and the archive's total by MaxZipBytes and MaxZipRatio times
// its size, counting what is actually decompressed, not what it declares.
// Entries named DICOMDIR are skipped: every entry is read anyway.
func (d *discovery) zip(p string) {
	zr, err := zip.OpenReader(p)
	if err != nil {
		d.out = append(d.out, failed(p, p, reject(ErrMalformed, "unreadable zip archive: %v", err)))
		return
	}
	cfg := d.r.cfg
	if len(zr.File) > cfg.MaxZipEntries {
		zr.Close()
		d.out = append(d.out, failed(p, p, reject(ErrTooLarge, "zip archive has %d entries (limit %d)", len(zr.File), cfg.MaxZipEntries)))
		return
	}
	d.r.closers = append(d.r.closers, zr)
	var size int64
	if fi, err := os.Stat(p); err == nil {
		size = fi.Size()
	}
	z := &zipArchive{limit: min(cfg.MaxZipBytes, max(minZipBudget, size*int64(cfg.MaxZipRatio)))}
	z.budget = z.limit
	for _, f := range zr.File {
		if f.FileInfo().IsDir() || isDICOMDIR(baseName(f.Name)) {
			continue
		}
		size := int64(min(f.UncompressedSize64, uint64(cfg.MaxFileBytes)))
		d.out = append(d.out, source{path: p + "!" + f.Name, disk: p, size: size, open: func() ([]byte, error) { return z.read(f, cfg.MaxFileBytes) }})
	}
}

// minZipBudget is the least a zip may expand to, whatever its size.
const minZipBudget = 64 << 20

// read reads one entry. The budget is reserved for the size the entry
// declares: the zip reader fails an entry that expands past it.
func (z *zipArchive) read(f *zip.File, max int64) ([]byte, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, reject(ErrMalformed, "zip entry: %v", err)
	}
	defer rc.Close()
	head, err := readHead(rc)
	if err != nil {
		return nil, zipEntryErr(err)
	}
	if f.UncompressedSize64 > uint64(max) {
		return nil, reject(ErrTooLarge, "zip entry declares %d bytes (limit %d)", f.UncompressedSize64, max)
	}
	size := int64(f.UncompressedSize64)
	if !z.reserve(size) {
		return nil, reject(ErrTooLarge, "zip archive expands past %d bytes", z.limit)
	}
	data, err := readRest(rc, head, size, size)
	z.refund(size - int64(len(data)))
	return data, zipEntryErr(err)
}

// zipEntryErr reports a failure to decompress an entry as malformed.
func zipEntryErr(err error) error {
	var re *RejectError
	if errors.As(err, &re) && re.Err == ErrUnreadable {
		return reject(ErrMalformed, "zip entry: %s", re.Reason)
	}
	return err
}

// baseName is the last component of a zip entry name, with either
// separator.
func baseName(name string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	return name
}
