package synth

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Patient is the demographics written into every instance.
type Patient struct {
	Family, Given, ID, Issuer, BirthDate, Sex string
}

// Spec describes a study to generate.
type Spec struct {
	Preset      string // ct, mr or cr
	Slices      int    // CT slices, or MR images per series
	Rows, Cols  int
	Seed        int64
	Patient     Patient
	StudyDate   string
	Accession   string
	Description string
}

// DefaultSpec returns the spec of a preset.
func DefaultSpec(preset string) (Spec, error) {
	p := Patient{Family: "DOE", Given: "JANE", ID: "MRN0001", Issuer: "RURAL-HOSP", BirthDate: "19580214", Sex: "F"}
	switch preset {
	case "ct":
		return Spec{Preset: "ct", Slices: 400, Rows: 512, Cols: 512, Seed: 1, Patient: p, StudyDate: "20260301", Accession: "ACC1001", Description: "CT CHEST ABDOMEN PELVIS"}, nil
	case "mr":
		return Spec{Preset: "mr", Slices: 24, Rows: 256, Cols: 256, Seed: 1, Patient: p, StudyDate: "20260115", Accession: "ACC1002", Description: "MR BRAIN"}, nil
	case "cr":
		return Spec{Preset: "cr", Slices: 1, Rows: 1024, Cols: 1024, Seed: 1, Patient: p, StudyDate: "20251120", Accession: "ACC1003", Description: "CR CHEST PA"}, nil
	}
	return Spec{}, fmt.Errorf("synth: unknown preset %q (want ct, mr or cr)", preset)
}

// File is one written instance.
type File struct {
	Path              string
	SOPInstanceUID    string
	SeriesInstanceUID string
	Size              int64
	SHA256            [32]byte
}

// Study is what Write produced.
type Study struct {
	UID     string
	Patient Patient
	Files   []File
}

const (
	ctStorage  = "1.2.840.10008.5.1.4.1.1.2"
	mrStorage  = "1.2.840.10008.5.1.4.1.1.4"
	crStorage  = "1.2.840.10008.5.1.4.1.1.1"
	explicitLE = "1.2.840.10008.1.2.1"
	implUID    = "2.25.190312284178916410429134418421765013043"
)

// uid derives a deterministic 2.25 UID from parts.
func uid(parts ...any) string {
	h := sha256.Sum256([]byte(fmt.Sprint(parts...)))
	return "2.25." + new(big.Int).SetBytes(h[:15]).String()
}

type series struct {
	number      int
	modality    string
	description string
	bodyPart    string
	sopClass    string
	images      int
}

func (s Spec) series() []series {
	switch s.Preset {
	case "mr":
		return []series{
			{1, "MR", "T1 AX", "BRAIN", mrStorage, s.Slices},
			{2, "MR", "T2 AX", "BRAIN", mrStorage, s.Slices},
			{3, "MR", "FLAIR AX", "BRAIN", mrStorage, s.Slices},
			{4, "MR", "T1 SAG", "BRAIN", mrStorage, s.Slices},
		}
	case "cr":
		return []series{{1, "CR", "CHEST PA", "CHEST", crStorage, 1}}
	}
	return []series{{1, "CT", "AXIAL 1.25MM", "CHEST", ctStorage, s.Slices}}
}

// Instances generates every instance of the study and hands it to fn, in
// order, without touching the disk.
func Instances(spec Spec, fn func(name string, data []byte) error) error {
	if spec.Rows <= 0 || spec.Cols <= 0 || spec.Slices <= 0 {
		return fmt.Errorf("synth: rows, cols and slices must be positive")
	}
	studyUID := uid("study", spec.Seed, spec.Preset)
	for _, se := range spec.series() {
		seriesUID := uid("series", spec.Seed, spec.Preset, se.number)
		for i := 0; i < se.images; i++ {
			data := spec.instance(studyUID, seriesUID, se, i)
			if err := fn(fmt.Sprintf("%d/%04d.dcm", se.number, i+1), data); err != nil {
				return err
			}
		}
	}
	return nil
}

// Write writes the study below dir as <series>/<instance>.dcm.
func Write(dir string, spec Spec) (Study, error) {
	st := Study{UID: uid("study", spec.Seed, spec.Preset), Patient: spec.Patient}
	err := Instances(spec, func(name string, data []byte) error {
		path := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return err
		}
		e := parseIDs(data)
		st.Files = append(st.Files, File{Path: path, SOPInstanceUID: e[0], SeriesInstanceUID: e[1], Size: int64(len(data)), SHA256: sha256.Sum256(data)})
		return nil
	})
	return st, err
}

// instance builds one Part 10 file.
func (s Spec) instance(studyUID, seriesUID string, se series, i int) []byte {
	sopUID := uid("sop", s.Seed, s.Preset, se.number, i)
	var d dataset
	d.add(0x0008, 0x0008, "CS", "ORIGINAL\\PRIMARY\\AXIAL")
	d.add(0x0008, 0x0016, "UI", se.sopClass)
	d.add(0x0008, 0x0018, "UI", sopUID)
	d.add(0x0008, 0x0020, "DA", s.StudyDate)
	d.add(0x0008, 0x0030, "TM", "101500")
	d.add(0x0008, 0x0050, "SH", s.Accession)
	d.add(0x0008, 0x0060, "CS", se.modality)
	d.add(0x0008, 0x0070, "LO", "DICOMESH SYNTH")
	d.add(0x0008, 0x0090, "PN", "REFERRER^ROSA")
	d.add(0x0008, 0x1030, "LO", s.Description)
	d.add(0x0008, 0x103E, "LO", se.description)
	d.add(0x0010, 0x0010, "PN", s.Patient.Family+"^"+s.Patient.Given)
	d.add(0x0010, 0x0020, "LO", s.Patient.ID)
	d.add(0x0010, 0x0021, "LO", s.Patient.Issuer)
	d.add(0x0010, 0x0030, "DA", s.Patient.BirthDate)
	d.add(0x0010, 0x0040, "CS", s.Patient.Sex)
	d.add(0x0018, 0x0015, "CS", se.bodyPart)
	if se.modality != "CR" {
		d.add(0x0018, 0x0050, "DS", "1.25")
	}
	d.add(0x0020, 0x000D, "UI", studyUID)
	d.add(0x0020, 0x000E, "UI", seriesUID)
	d.add(0x0020, 0x0010, "SH", "1")
	d.add(0x0020, 0x0011, "IS", strconv.Itoa(se.number))
	d.add(0x0020, 0x0013, "IS", strconv.Itoa(i+1))
	if se.modality != "CR" {
		z := fmt.Sprintf("%.2f", -float64(i)*1.25)
		d.add(0x0020, 0x0032, "DS", "-250\\-250\\"+z)
		d.add(0x0020, 0x0037, "DS", "1\\0\\0\\0\\1\\0")
		d.add(0x0020, 0x1041, "DS", z)
	}
	d.addUS(0x0028, 0x0002, 1)
	d.add(0x0028, 0x0004, "CS", "MONOCHROME2")
	d.addUS(0x0028, 0x0010, uint16(s.Rows))
	d.addUS(0x0028, 0x0011, uint16(s.Cols))
	d.add(0x0028, 0x0030, "DS", "0.976\\0.976")
	d.addUS(0x0028, 0x0100, 16)
	d.addUS(0x0028, 0x0101, 12)
	d.addUS(0x0028, 0x0102, 11)
	signed := uint16(0)
	if se.modality == "CT" {
		signed = 1
	}
	d.addUS(0x0028, 0x0103, signed)
	if se.modality == "CT" {
		d.add(0x0028, 0x1050, "DS", "40")
		d.add(0x0028, 0x1051, "DS", "400")
		d.add(0x0028, 0x1052, "DS", "-1024")
		d.add(0x0028, 0x1053, "DS", "1")
	}
	d.addRaw(0x7FE0, 0x0010, "OW", s.pixels(se, i))

	var meta dataset
	meta.addRaw(0x0002, 0x0001, "OB", []byte{0, 1})
	meta.add(0x0002, 0x0002, "UI", se.sopClass)
	meta.add(0x0002, 0x0003, "UI", sopUID)
	meta.add(0x0002, 0x0010, "UI", explicitLE)
	meta.add(0x0002, 0x0012, "UI", implUID)
	meta.add(0x0002, 0x0013, "SH", "DICOMESH_SYNTH")
	out := make([]byte, 128, 128+4+12+len(meta.b)+len(d.b))
	out = append(out, "DICM"...)
	var gl dataset
	gl.addUL(0x0002, 0x0000, uint32(len(meta.b)))
	out = append(out, gl.b...)
	out = append(out, meta.b...)
	return append(out, d.b...)
}

// pixels renders a body-like phantom: an ellipse of soft tissue with lungs,
// a spine and noise for CT; a head with ventricles for MR.
func (s Spec) pixels(se series, i int) []byte {
	rows, cols := s.Rows, s.Cols
	rng := rand.New(rand.NewPCG(uint64(s.Seed), uint64(se.number)<<32|uint64(i)))
	t := 0.5
	if se.images > 1 {
		t = float64(i) / float64(se.images-1)
	}
	cy, cx := float64(rows)/2, float64(cols)/2
	ry := float64(rows) * (0.30 + 0.05*math.Sin(math.Pi*t))
	rx := float64(cols) * (0.42 + 0.03*math.Sin(math.Pi*t))
	out := make([]byte, rows*cols*2)
	for y := 0; y < rows; y++ {
		dy := (float64(y) - cy) / ry
		for x := 0; x < cols; x++ {
			dx := (float64(x) - cx) / rx
			var v float64
			inBody := dx*dx+dy*dy <= 1
			switch se.modality {
			case "CT":
				v = -1000
				if inBody {
					v = 40
					lr := 0.18 * (1 - math.Abs(t-0.5))
					for _, side := range []float64{-1, 1} {
						ly := (float64(y) - cy) / (float64(rows)*lr + 1)
						lx := (float64(x) - cx - side*float64(cols)*0.18) / (float64(cols)*lr*0.8 + 1)
						if lx*lx+ly*ly <= 1 {
							v = -850
						}
					}
					sy, sx := float64(y)-cy-float64(rows)*0.2, float64(x)-cx
					if sy*sy+sx*sx <= math.Pow(float64(rows)*0.04, 2) {
						v = 700
					}
				}
				v += rng.NormFloat64() * 12
				v = math.Max(0, math.Min(4095, v+1024))
			default:
				if inBody {
					v = 900
					if dx*dx+dy*dy <= 0.72 {
						v = 1400
					}
					if (dx/0.1)*(dx/0.1)+(dy/0.2)*(dy/0.2) <= 1 {
						v = 2600
					}
				}
				v = math.Max(0, math.Min(4095, v+math.Abs(rng.NormFloat64()*25)))
			}
			binary.LittleEndian.PutUint16(out[2*(y*cols+x):], uint16(int16(v)))
		}
	}
	return out
}

// dataset accumulates explicit VR little endian elements in the order added
// (callers add them in tag order).
type dataset struct{ b []byte }

var longVR = map[string]bool{"OB": true, "OW": true, "OF": true, "SQ": true, "UT": true, "UN": true}

func (d *dataset) header(group, elem uint16, vr string, n int) {
	d.b = binary.LittleEndian.AppendUint16(d.b, group)
	d.b = binary.LittleEndian.AppendUint16(d.b, elem)
	d.b = append(d.b, vr...)
	if longVR[vr] {
		d.b = append(d.b, 0, 0)
		d.b = binary.LittleEndian.AppendUint32(d.b, uint32(n))
	} else {
		d.b = binary.LittleEndian.AppendUint16(d.b, uint16(n))
	}
}

func (d *dataset) add(group, elem uint16, vr, value string) {
	if len(value)%2 == 1 {
		if vr == "UI" {
			value += "\x00"
		} else {
			value += " "
		}
	}
	d.header(group, elem, vr, len(value))
	d.b = append(d.b, value...)
}

func (d *dataset) addRaw(group, elem uint16, vr string, v []byte) {
	d.header(group, elem, vr, len(v))
	d.b = append(d.b, v...)
}

func (d *dataset) addUS(group, elem uint16, v uint16) {
	d.header(group, elem, "US", 2)
	d.b = binary.LittleEndian.AppendUint16(d.b, v)
}

func (d *dataset) addUL(group, elem uint16, v uint32) {
	d.header(group, elem, "UL", 4)
	d.b = binary.LittleEndian.AppendUint32(d.b, v)
}

// parseIDs returns the SOP Instance and Series Instance UIDs of a file this
// package wrote, by walking its elements.
func parseIDs(b []byte) [2]string {
	var out [2]string
	p := 132
	for p+8 <= len(b) {
		g := binary.LittleEndian.Uint16(b[p:])
		e := binary.LittleEndian.Uint16(b[p+2:])
		vr := string(b[p+4 : p+6])
		var n, h int
		if longVR[vr] {
			n, h = int(binary.LittleEndian.Uint32(b[p+8:])), 12
		} else {
			n, h = int(binary.LittleEndian.Uint16(b[p+6:])), 8
		}
		v := strings.TrimRight(string(b[p+h:p+h+n]), "\x00 ")
		switch {
		case g == 0x0008 && e == 0x0018:
			out[0] = v
		case g == 0x0020 && e == 0x000E:
			out[1] = v
		}
		p += h + n
	}
	return out
}
