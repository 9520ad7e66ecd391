package synth

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"
)

const (
	ctImageStorage = "1.2.840.10008.5.1.4.1.1.2"
	mrImageStorage = "1.2.840.10008.5.1.4.1.1.4"
	crImageStorage = "1.2.840.10008.5.1.4.1.1.1"
	explicitVRLE   = "1.2.840.10008.1.2.1"

	// ImplementationClassUID identifies this writer in the file meta group.
	ImplementationClassUID = "2.25.190312284178916410429134418421765013043"
	// ImplementationVersionName is written beside it.
	ImplementationVersionName = "DICOMESH_SYNTH1"
)

// UID returns a deterministic UID of the form 2.25.<decimal> (at most 42
// characters) derived from the parts: the first 120 bits of a SHA-256 over
// them, each part length-prefixed so that no two part lists collide.
func UID(parts ...string) string {
	h := sha256.New()
	h.Write([]byte("dicomesh/synth/uid/v1"))
	for _, p := range parts {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(p))))
		h.Write([]byte(p))
	}
	sum := h.Sum(nil)
	return "2.25." + new(big.Int).SetBytes(sum[:15]).String()
}

// seriesPlan is one series and the acquisition parameters of its images.
type seriesPlan struct {
	Series
	sopClass string
	kind     string // ct, t1, t2, flair, t1sag, cr
	time     int    // series start, seconds after midnight
}

// generator holds what is shared by every instance of a study.
type generator struct {
	spec      Spec
	studyUID  string
	frameUID  string
	studyTime int // seconds after midnight
	charset   string
	series    []*seriesPlan
}

func newGenerator(spec Spec) (*generator, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	seed := strconv.FormatInt(spec.Seed, 10)
	g := &generator{
		spec:     spec,
		studyUID: UID(seed, spec.Preset, "study"),
		frameUID: UID(seed, spec.Preset, "frame-of-reference"),
		charset:  "ISO_IR 100",
	}
	// A study starts between 07:00 and 16:59, to the second.
	g.studyTime = 7*3600 + int(uint64(spec.Seed)*2654435761%36000)
	for _, s := range []string{spec.Patient.Family, spec.Patient.Given, spec.Patient.ID, spec.Patient.Issuer,
		spec.Accession, spec.Description, spec.Referrer, spec.Institution} {
		for i := 0; i < len(s); i++ {
			if s[i] >= 0x80 {
				g.charset = "ISO_IR 192" // UTF-8
			}
		}
	}
	add := func(modality, desc, body, class, kind string, images int) {
		n := len(g.series) + 1
		g.series = append(g.series, &seriesPlan{
			Series: Series{Number: n, UID: UID(seed, spec.Preset, "series", strconv.Itoa(n)), Modality: modality,
				Description: desc, BodyPart: body, Instances: images},
			sopClass: class, kind: kind, time: g.studyTime + 60 + 420*(n-1),
		})
	}
	switch spec.Preset {
	case "ct":
		add("CT", "AXIAL 1.0MM", "CHEST", ctImageStorage, "ct", spec.Slices)
	case "mr":
		add("MR", "T1 AX", "HEAD", mrImageStorage, "t1", spec.Slices)
		add("MR", "T2 AX", "HEAD", mrImageStorage, "t2", spec.Slices)
		add("MR", "FLAIR AX", "HEAD", mrImageStorage, "flair", spec.Slices)
		add("MR", "T1 SAG", "HEAD", mrImageStorage, "t1sag", spec.Slices)
	case "cr":
		desc := "CHEST PA"
		if spec.Slices > 1 {
			desc = "CHEST PA AND LATERAL"
		}
		add("CR", desc, "CHEST", crImageStorage, "cr", spec.Slices)
	}
	return g, nil
}

func (g *generator) seriesList() []Series {
	out := make([]Series, len(g.series))
	for i, s := range g.series {
		out[i] = s.Series
	}
	return out
}

// mrParams are an MR sequence's acquisition parameters and tissue contrast.
type mrParams struct {
	scanSeq, tr, te, ti, etl string
	window                   [2]string
	contrast                 contrast
}

var mrKinds = map[string]mrParams{
	"t1":    {"SE", "500", "12", "", "1", [2]string{"1000", "2000"}, contrast{fat: 1900, bone: 80, csf: 350, gm: 1000, wm: 1400, muscle: 800}},
	"t2":    {"SE", "4000", "100", "", "16", [2]string{"1400", "2800"}, contrast{fat: 1300, bone: 80, csf: 2900, gm: 1500, wm: 1000, muscle: 500}},
	"flair": {"IR", "9000", "120", "2500", "16", [2]string{"1100", "2200"}, contrast{fat: 1200, bone: 80, csf: 250, gm: 1400, wm: 1050, muscle: 500}},
	"t1sag": {"SE", "500", "12", "", "1", [2]string{"1000", "2000"}, contrast{fat: 1900, bone: 80, csf: 350, gm: 1000, wm: 1400, muscle: 800}},
}

// Tags written by this package, group<<16 | element.
const (
	tFileMetaGroupLength     tag = 0x00020000
	tFileMetaVersion         tag = 0x00020001
	tMediaStorageSOPClass    tag = 0x00020002
	tMediaStorageSOPInstance tag = 0x00020003
	tTransferSyntax          tag = 0x00020010
	tImplementationClass     tag = 0x00020012
	tImplementationVersion   tag = 0x00020013
	tPixelData               tag = 0x7FE00010
)

// instance builds one Part 10 file.
func (g *generator) instance(se *seriesPlan, i int) item {
	s := g.spec
	seed := strconv.FormatInt(s.Seed, 10)
	sop := UID(seed, s.Preset, "instance", strconv.Itoa(se.Number), strconv.Itoa(i+1))
	n := se.Instances
	t := 0.5
	if n > 1 {
		t = float64(i) / float64(n-1)
	}
	acq := se.time + i // one image a second

	var d dataset
	d.str(0x00080005, "CS", g.charset)
	d.str(0x00080016, "UI", se.sopClass)
	d.str(0x00080018, "UI", sop)
	d.str(0x00080020, "DA", s.StudyDate)
	d.str(0x00080021, "DA", s.StudyDate)
	d.str(0x00080022, "DA", s.StudyDate)
	d.str(0x00080023, "DA", s.StudyDate)
	d.str(0x00080030, "TM", clock(g.studyTime))
	d.str(0x00080031, "TM", clock(se.time))
	d.str(0x00080032, "TM", clock(acq))
	d.str(0x00080033, "TM", clock(acq))
	d.str(0x00080050, "SH", s.Accession)
	d.str(0x00080060, "CS", se.Modality)
	d.str(0x00080070, "LO", "DICOMESH")
	if s.Institution != "" {
		d.str(0x00080080, "LO", s.Institution)
	}
	d.str(0x00080090, "PN", s.Referrer)
	d.str(0x00081030, "LO", s.Description)
	d.str(0x0008103E, "LO", se.Description)
	d.str(0x00081090, "LO", "SYNTH")
	d.str(0x00100010, "PN", s.Patient.Family+"^"+s.Patient.Given)
	d.str(0x00100020, "LO", s.Patient.ID)
	d.str(0x00100021, "LO", s.Patient.Issuer)
	d.str(0x00100030, "DA", s.Patient.BirthDate)
	d.str(0x00100040, "CS", s.Patient.Sex)
	if age := ageAt(s.Patient.BirthDate, s.StudyDate); age != "" {
		d.str(0x00101010, "AS", age)
	}
	d.str(0x00180015, "CS", se.BodyPart)
	d.str(0x00181020, "LO", "1")
	d.str(0x0020000D, "UI", g.studyUID)
	d.str(0x0020000E, "UI", se.UID)
	d.str(0x00200010, "SH", strconv.FormatUint(uint64(s.Seed)%100000, 10))
	d.str(0x00200011, "IS", strconv.Itoa(se.Number))
	d.str(0x00200013, "IS", strconv.Itoa(i+1))
	d.str(0x00280301, "CS", "NO")
	d.str(0x00282110, "CS", "00")
	d.us(0x00280002, 1)
	d.str(0x00280004, "CS", "MONOCHROME2")
	d.us(0x00280010, uint16(s.Rows))
	d.us(0x00280011, uint16(s.Cols))
	d.us(0x00280100, 16)

	p := phantom{rows: s.Rows, cols: s.Cols, sigma: 12, hi: 4095}
	p.seed = uint64(s.Seed)*0x9E3779B97F4A7C15 ^ uint64(se.Number)<<40 ^ uint64(i)
	switch se.kind {
	case "ct":
		fov := 360.0
		sp := fov / float64(max(s.Rows, s.Cols))
		z := -float64(i) // 1 mm slices, head to feet
		d.str(0x00080008, "CS", `ORIGINAL\PRIMARY\AXIAL`)
		d.str(0x00180050, "DS", "1")
		d.str(0x00180060, "DS", "120")
		d.str(0x00181100, "DS", ds(fov))
		d.str(0x00181150, "IS", "500")
		d.str(0x00181151, "IS", "200")
		d.str(0x00181210, "SH", "STANDARD")
		d.str(0x00185100, "CS", "HFS")
		d.str(0x00200012, "IS", "1")
		d.str(0x00200032, "DS", dsList(-float64(s.Cols)*sp/2+sp/2, -float64(s.Rows)*sp/2+sp/2, z))
		d.str(0x00200037, "DS", `1\0\0\0\1\0`)
		d.str(0x00200052, "UI", g.frameUID)
		d.str(0x00201040, "LO", "")
		d.str(0x00201041, "DS", ds(z))
		d.str(0x00280030, "DS", dsList(sp, sp))
		d.us(0x00280101, 16)
		d.us(0x00280102, 15)
		d.us(0x00280103, 1)
		d.str(0x00281050, "DS", "40")
		d.str(0x00281051, "DS", "400")
		d.str(0x00281052, "DS", "-1024")
		d.str(0x00281053, "DS", "1")
		d.str(0x00281054, "LO", "HU")
		p.background, p.shapes = ctPhantom(s.Rows, s.Cols, t)
		p.offset, p.signed = 1024, true
	case "t1", "t2", "flair", "t1sag":
		mr := mrKinds[se.kind]
		fov := 230.0
		sp := fov / float64(max(s.Rows, s.Cols))
		const thick, gap = 5.0, 1.0
		pos := (float64(i) - float64(n-1)/2) * (thick + gap)
		d.str(0x00080008, "CS", `ORIGINAL\PRIMARY\OTHER`)
		d.str(0x00180020, "CS", mr.scanSeq)
		d.str(0x00180021, "CS", "NONE")
		d.str(0x00180022, "CS", "")
		d.str(0x00180023, "CS", "2D")
		d.str(0x00180050, "DS", ds(thick))
		d.str(0x00180080, "DS", mr.tr)
		d.str(0x00180081, "DS", mr.te)
		if mr.ti != "" {
			d.str(0x00180082, "DS", mr.ti)
		}
		d.str(0x00180087, "DS", "3")
		d.str(0x00180088, "DS", ds(thick+gap))
		d.str(0x00180091, "IS", mr.etl)
		d.str(0x00181030, "LO", se.Description)
		d.str(0x00185100, "CS", "HFS")
		d.str(0x00200012, "IS", "1")
		x0, y0 := -float64(s.Cols)*sp/2+sp/2, -float64(s.Rows)*sp/2+sp/2
		if se.kind == "t1sag" {
			d.str(0x00200032, "DS", dsList(pos, x0, -y0))
			d.str(0x00200037, "DS", `0\1\0\0\0\-1`)
			p.background, p.shapes = mrSagittal(s.Rows, s.Cols, t, mr.contrast)
		} else {
			d.str(0x00200032, "DS", dsList(x0, y0, pos))
			d.str(0x00200037, "DS", `1\0\0\0\1\0`)
			p.background, p.shapes = mrAxial(s.Rows, s.Cols, t, mr.contrast)
		}
		d.str(0x00200052, "UI", g.frameUID)
		d.str(0x00201040, "LO", "")
		d.str(0x00201041, "DS", ds(pos))
		d.str(0x00280030, "DS", dsList(sp, sp))
		d.us(0x00280101, 12)
		d.us(0x00280102, 11)
		d.us(0x00280103, 0)
		d.str(0x00281050, "DS", mr.window[0])
		d.str(0x00281051, "DS", mr.window[1])
		p.noise, p.sigma = rician, 30
	case "cr":
		lateral := i%2 == 1
		view, orient := "PA", `L\F`
		if lateral {
			view, orient = "LL", `P\F`
		}
		sp := 358.4 / float64(max(s.Rows, s.Cols))
		d.str(0x00080008, "CS", `ORIGINAL\PRIMARY`)
		d.str(0x00180060, "DS", "110")
		d.str(0x00181164, "DS", dsList(sp, sp))
		d.str(0x00185101, "CS", view)
		d.str(0x00200020, "CS", orient)
		d.us(0x00280101, 12)
		d.us(0x00280102, 11)
		d.us(0x00280103, 0)
		d.str(0x00281050, "DS", "1400")
		d.str(0x00281051, "DS", "2800")
		p.background, p.shapes = crChest(s.Rows, s.Cols, lateral)
		p.sigma = 25
	default:
		panic("synth: unknown series kind " + se.kind)
	}

	var meta dataset
	meta.raw(tFileMetaVersion, "OB", []byte{0, 1})
	meta.str(tMediaStorageSOPClass, "UI", se.sopClass)
	meta.str(tMediaStorageSOPInstance, "UI", sop)
	meta.str(tTransferSyntax, "UI", explicitVRLE)
	meta.str(tImplementationClass, "UI", ImplementationClassUID)
	meta.str(tImplementationVersion, "SH", ImplementationVersionName)

	npix := 2 * s.Rows * s.Cols
	out := make([]byte, 128, 128+4+12+meta.size()+d.size()+12+npix)
	out = append(out, "DICM"...)
	out = appendHeader(out, tFileMetaGroupLength, "UL", 4)
	out = binary.LittleEndian.AppendUint32(out, uint32(meta.size()))
	out = meta.encode(out)
	out = d.encode(out)
	out = appendHeader(out, tPixelData, "OW", npix)
	p.render(out[len(out) : len(out)+npix])
	out = out[:len(out)+npix]
	return item{name: fmt.Sprintf("%d/%04d.dcm", se.Number, i+1), sop: sop, series: se.UID, data: out}
}

// clock formats seconds after midnight as a DICOM TM (HHMMSS), wrapping at
// midnight.
func clock(sec int) string {
	sec %= 86400
	return fmt.Sprintf("%02d%02d%02d", sec/3600, sec/60%60, sec%60)
}

// ds formats a decimal string of at most 16 characters.
func ds(v float64) string {
	for prec := 10; ; prec-- {
		s := strconv.FormatFloat(v, 'g', prec, 64)
		if len(s) <= 16 || prec == 1 {
			if s == "-0" {
				s = "0"
			}
			return s
		}
	}
}

func dsList(v ...float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = ds(x)
	}
	return strings.Join(s, `\`)
}

// ageAt returns the DICOM age string (nnnY) of someone born on birth at the
// date on, or "" when either is unknown or the age is negative.
func ageAt(birth, on string) string {
	b, err1 := time.Parse("20060102", birth)
	o, err2 := time.Parse("20060102", on)
	if err1 != nil || err2 != nil {
		return ""
	}
	y := o.Year() - b.Year()
	if o.Month() < b.Month() || o.Month() == b.Month() && o.Day() < b.Day() {
		y--
	}
	if y < 0 || y > 999 {
		return ""
	}
	return fmt.Sprintf("%03dY", y)
}
