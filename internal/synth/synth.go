package synth

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// ErrSpec is wrapped by every error about a Spec that cannot be generated.
var ErrSpec = errors.New("synth: invalid spec")

// Patient is the demographics written into every instance of a study.
type Patient struct {
	Family    string `json:"family"`
	Given     string `json:"given"`
	ID        string `json:"id"`
	Issuer    string `json:"issuer"`
	BirthDate string `json:"birth_date"` // YYYYMMDD or empty
	Sex       string `json:"sex"`        // M, F, O or empty
}

// Spec describes a study to generate. Every file is a pure function of it.
type Spec struct {
	Preset string // ct, mr or cr
	// Slices is the number of axial slices (ct), images per series (mr), or
	// views (cr: posteroanterior, then left lateral, alternating).
	Slices      int
	Rows, Cols  int
	Seed        int64 // UIDs, times and noise derive from it
	Patient     Patient
	StudyDate   string // YYYYMMDD
	Accession   string
	Description string
	Referrer    string // referring physician, FAMILY^GIVEN; may be empty
	Institution string // may be empty
}

// Presets lists the presets DefaultSpec knows.
var Presets = []string{"ct", "mr", "cr"}

// DefaultSpec returns the spec of a preset with seed 1: ct is 400 axial
// slices of 512x512 (about 210 MB), mr four series of 24 images of 256x256,
// cr one 1024x1024 chest radiograph.
func DefaultSpec(preset string) (Spec, error) {
	s := Spec{
		Preset:      preset,
		Seed:        1,
		Patient:     Patient{Family: "DOE", Given: "JANE", ID: "MRN0001", Issuer: "RURAL-HOSP", BirthDate: "19580214", Sex: "F"},
		Referrer:    "REFERRER^ROSA",
		Institution: "RURAL HOSPITAL",
	}
	switch preset {
	case "ct":
		s.Slices, s.Rows, s.Cols = 400, 512, 512
		s.StudyDate, s.Accession, s.Description = "20260301", "ACC1001", "CT CHEST ABDOMEN PELVIS"
	case "mr":
		s.Slices, s.Rows, s.Cols = 24, 256, 256
		s.StudyDate, s.Accession, s.Description = "20260115", "ACC1002", "MR BRAIN"
	case "cr":
		s.Slices, s.Rows, s.Cols = 1, 1024, 1024
		s.StudyDate, s.Accession, s.Description = "20251120", "ACC1003", "CR CHEST"
	default:
		return Spec{}, fmt.Errorf("%w: unknown preset %q (want ct, mr or cr)", ErrSpec, preset)
	}
	return s, nil
}

// Validate reports whether the spec can be generated: a known preset, sizes
// within bounds, dates that are dates, and text that fits its DICOM value
// representation (no backslash, no control characters, within length).
func (s Spec) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrSpec}, a...)...)
	}
	switch s.Preset {
	case "ct", "mr", "cr":
	default:
		return bad("unknown preset %q (want ct, mr or cr)", s.Preset)
	}
	if s.Rows < 16 || s.Rows > 4096 || s.Cols < 16 || s.Cols > 4096 {
		return bad("rows and cols must be within 16..4096, not %dx%d", s.Rows, s.Cols)
	}
	if s.Slices < 1 || s.Slices > 10000 {
		return bad("slices must be within 1..10000, not %d", s.Slices)
	}
	if !isDate(s.StudyDate) {
		return bad("study date %q is not YYYYMMDD", s.StudyDate)
	}
	if s.Patient.BirthDate != "" && !isDate(s.Patient.BirthDate) {
		return bad("birth date %q is not YYYYMMDD", s.Patient.BirthDate)
	}
	switch s.Patient.Sex {
	case "", "M", "F", "O":
	default:
		return bad("sex %q is not M, F, O or empty", s.Patient.Sex)
	}
	for _, f := range []struct {
		name, v, forbid string
		max             int
	}{
		{"family name", s.Patient.Family, `\^=`, 64},
		{"given name", s.Patient.Given, `\^=`, 64},
		{"patient name", s.Patient.Family + "^" + s.Patient.Given, `\=`, 64},
		{"patient id", s.Patient.ID, `\`, 64},
		{"issuer", s.Patient.Issuer, `\`, 64},
		{"accession", s.Accession, `\`, 16},
		{"description", s.Description, `\`, 64},
		{"referrer", s.Referrer, `\=`, 64},
		{"institution", s.Institution, `\`, 64},
	} {
		if n := utf8.RuneCountInString(f.v); n > f.max {
			return bad("%s is %d characters, at most %d", f.name, n, f.max)
		}
		if !utf8.ValidString(f.v) || strings.ContainsAny(f.v, f.forbid) || strings.IndexFunc(f.v, unicode.IsControl) >= 0 {
			return bad("%s holds a character its VR forbids", f.name)
		}
		if f.v != strings.TrimSpace(f.v) {
			return bad("%s has leading or trailing spaces", f.name)
		}
	}
	return nil
}

func isDate(s string) bool {
	if len(s) != 8 {
		return false
	}
	_, err := time.Parse("20060102", s)
	return err == nil
}

// Series describes one series of a generated study.
type Series struct {
	Number      int    `json:"number"`
	UID         string `json:"series_uid"`
	Modality    string `json:"modality"`
	Description string `json:"description"`
	BodyPart    string `json:"body_part"`
	Instances   int    `json:"instances"`
}

// File is one written instance.
type File struct {
	Path              string // as written: dir joined with the relative name
	SOPInstanceUID    string
	SeriesInstanceUID string
	Size              int64
	SHA256            [32]byte
}

// Study is what Write produced.
type Study struct {
	UID     string
	Patient Patient
	Series  []Series
	Files   []File
}

// Bytes is the total size of the study's files.
func (s Study) Bytes() int64 {
	var n int64
	for _, f := range s.Files {
		n += f.Size
	}
	return n
}

// ManifestName is the file Write puts beside the series folders.
const ManifestName = "manifest.json"

// Manifest is the content of manifest.json: the spec, the UIDs and every
// file's relative path, size and SHA-256. It is itself a pure function of the
// Spec.
type Manifest struct {
	Generator   string         `json:"generator"`
	Preset      string         `json:"preset"`
	Seed        int64          `json:"seed"`
	Rows        int            `json:"rows"`
	Cols        int            `json:"cols"`
	StudyUID    string         `json:"study_uid"`
	StudyDate   string         `json:"study_date"`
	Accession   string         `json:"accession"`
	Description string         `json:"description"`
	Patient     Patient        `json:"patient"`
	Series      []Series       `json:"series"`
	Files       []ManifestFile `json:"files"`
	TotalFiles  int            `json:"total_files"`
	TotalBytes  int64          `json:"total_bytes"`
}

// ManifestFile is one instance in a Manifest.
type ManifestFile struct {
	Path              string `json:"path"` // relative, slash-separated
	SOPInstanceUID    string `json:"sop_instance_uid"`
	SeriesInstanceUID string `json:"series_instance_uid"`
	Size              int64  `json:"size"`
	SHA256            string `json:"sha256"` // hex
}

// Instances generates every instance of the study in order (series by
// series, instance by instance) and hands each to fn with its relative name,
// "<series#>/<instance#>.dcm", without touching the disk. The data slice is
// fn's to keep. Instances are built in parallel (GOMAXPROCS workers); fn is
// called from one goroutine at a time. An error from fn stops generation and
// is returned as is.
func Instances(spec Spec, fn func(name string, data []byte) error) error {
	return generate(spec, false, func(it item) error { return fn(it.name, it.data) })
}

// Write generates the study below dir as <series#>/<instance#>.dcm plus
// manifest.json, creating the folders it needs and overwriting files of the
// same names.
func Write(dir string, spec Spec) (Study, error) {
	g, err := newGenerator(spec)
	if err != nil {
		return Study{}, err
	}
	st := Study{UID: g.studyUID, Patient: spec.Patient, Series: g.seriesList()}
	m := Manifest{
		Generator: "dicomesh internal/synth", Preset: spec.Preset, Seed: spec.Seed,
		Rows: spec.Rows, Cols: spec.Cols, StudyUID: g.studyUID, StudyDate: spec.StudyDate,
		Accession: spec.Accession, Description: spec.Description, Patient: spec.Patient,
		Series: st.Series,
	}
	made := map[string]bool{}
	err = g.run(true, func(it item) error {
		path := filepath.Join(dir, filepath.FromSlash(it.name))
		if d := filepath.Dir(path); !made[d] {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("synth: %w", err)
			}
			made[d] = true
		}
		if err := os.WriteFile(path, it.data, 0o644); err != nil {
			return fmt.Errorf("synth: %w", err)
		}
		st.Files = append(st.Files, File{Path: path, SOPInstanceUID: it.sop, SeriesInstanceUID: it.series, Size: int64(len(it.data)), SHA256: it.sum})
		m.Files = append(m.Files, ManifestFile{Path: it.name, SOPInstanceUID: it.sop, SeriesInstanceUID: it.series, Size: int64(len(it.data)), SHA256: hex.EncodeToString(it.sum[:])})
		m.TotalBytes += int64(len(it.data))
		return nil
	})
	if err != nil {
		return st, err
	}
	m.TotalFiles = len(m.Files)
	b, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return st, fmt.Errorf("synth: encode manifest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestName), append(b, '\n'), 0o644); err != nil {
		return st, fmt.Errorf("synth: %w", err)
	}
	return st, nil
}

// item is one generated instance.
type item struct {
	name, sop, series string
	data              []byte
	sum               [32]byte // only when hashing was asked for
}

func generate(spec Spec, hash bool, fn func(item) error) error {
	g, err := newGenerator(spec)
	if err != nil {
		return err
	}
	return g.run(hash, fn)
}

// run builds the instances on GOMAXPROCS workers and delivers them to fn in
// order. At most about twice as many instances as workers are in memory at
// once. Every goroutine it starts has returned when it returns.
func (g *generator) run(hash bool, fn func(item) error) error {
	type job struct {
		se  *seriesPlan
		i   int
		out chan item
	}
	workers := runtime.GOMAXPROCS(0)
	jobs := make(chan job)
	order := make(chan job, 2*workers)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // feeder: queues each job for delivery, then for a worker
		defer wg.Done()
		defer close(jobs)
		defer close(order)
		for _, se := range g.series {
			for i := range se.Instances {
				j := job{se, i, make(chan item, 1)}
				select {
				case order <- j:
				case <-done:
					return
				}
				select {
				case jobs <- j:
				case <-done:
					return
				}
			}
		}
	}()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				it := g.instance(j.se, j.i)
				if hash {
					it.sum = sha256.Sum256(it.data)
				}
				j.out <- it // buffered: never blocks
			}
		}()
	}
	var err error
	for j := range order {
		if err = fn(<-j.out); err != nil {
			break
		}
	}
	close(done)
	wg.Wait()
	return err
}
