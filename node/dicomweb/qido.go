package dicomweb

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/dicomesh/dicomesh/node/archive"
	"github.com/dicomesh/dicomesh/node/dicomweb/part10"
)

type level int

// maxResults bounds one QIDO-RS answer; a client pages with limit and
// offset beyond it. Each answer may read one instance for includefield.
const maxResults = 1000

const (
	studyLevel level = iota
	seriesLevel
	instanceLevel
)

// matchKeys are the attributes each level matches on, by keyword; any
// other attribute in a query is ignored with a Warning header, as PS3.18
// 8.3.4.1 allows.
var matchKeys = [...][]string{
	studyLevel:    {"StudyInstanceUID", "PatientID", "IssuerOfPatientID", "PatientName", "StudyDate", "ModalitiesInStudy", "AccessionNumber"},
	seriesLevel:   {"SeriesInstanceUID", "Modality", "SeriesNumber"},
	instanceLevel: {"SOPInstanceUID", "SOPClassUID", "InstanceNumber"},
}

// qidoParams is a parsed QIDO-RS query string.
type qidoParams struct {
	match         map[string]string // keyword to value
	limit, offset int
	fuzzy         bool
	// include lists the tags of includefield, "00081030"; "all" adds
	// nothing to what the index holds, which every answer carries.
	include []string
	ignored []string
}

// keyword names a query attribute given by keyword or by tag.
func keyword(k string) (string, bool) {
	if len(k) == 8 {
		if t, err := strconv.ParseUint(k, 16, 32); err == nil {
			info, err := tag.Find(tag.Tag{Group: uint16(t >> 16), Element: uint16(t)})
			return info.Keyword, err == nil
		}
	}
	_, err := tag.FindByKeyword(k)
	return k, err == nil
}

func parseQIDO(v url.Values, lvl level) (qidoParams, error) {
	p := qidoParams{match: map[string]string{}}
	for k, vs := range v {
		val := vs[0]
		var err error
		switch k {
		case "limit", "offset":
			n, e := strconv.Atoi(val)
			if e != nil || n < 0 {
				return p, fmt.Errorf("%s %q", k, val)
			}
			if k == "limit" {
				p.limit = n
			} else {
				p.offset = n
			}
		case "fuzzymatching":
			p.fuzzy, err = strconv.ParseBool(val)
			if err != nil {
				return p, fmt.Errorf("fuzzymatching %q", val)
			}
		case "includefield":
			for _, x := range vs {
				for _, f := range strings.Split(x, ",") {
					f = strings.TrimSpace(f)
					if f == "all" {
						continue
					}
					kw, ok := keyword(f)
					if !ok {
						return p, fmt.Errorf("includefield: unknown attribute %q", f)
					}
					info, _ := tag.FindByKeyword(kw)
					p.include = append(p.include, fmt.Sprintf("%04X%04X", info.Tag.Group, info.Tag.Element))
				}
			}
		default:
			kw, ok := keyword(k)
			if !ok {
				return p, fmt.Errorf("unknown query parameter %q", k)
			}
			known := false
			for l := studyLevel; l <= lvl; l++ {
				known = known || slices.Contains(matchKeys[l], kw)
			}
			if known {
				p.match[kw] = val
			} else {
				p.ignored = append(p.ignored, kw)
			}
		}
	}
	return p, nil
}

// archiveQuery is the study-level part of a query, for the index.
func (p qidoParams) archiveQuery() archive.Query {
	m := p.match
	q := archive.Query{
		PatientID: m["PatientID"], Issuer: m["IssuerOfPatientID"], PatientName: m["PatientName"],
		FuzzyName: p.fuzzy, Modality: m["ModalitiesInStudy"], Accession: m["AccessionNumber"],
	}
	if q.PatientName == "*" {
		q.PatientName = ""
	}
	if d := m["StudyDate"]; d != "" {
		from, to, isRange := strings.Cut(d, "-")
		q.DateFrom, q.DateTo = from, to
		if !isRange {
			q.DateTo = from
		}
	}
	return q
}

// uidMatch matches a UID key: a list of UIDs separated by commas or
// backslashes, or nothing.
func uidMatch(key, uid string) bool {
	if key == "" {
		return true
	}
	return slices.Contains(strings.FieldsFunc(key, func(r rune) bool { return r == ',' || r == '\\' }), uid)
}

// result is one answer to a query, before the included fields are added.
type result struct {
	d     dataset
	study string
	sop   string // the instance whose attributes fill includefield
}

func (s *service) qido(lvl level) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, ok := s.ctx(w, r)
		if !ok {
			return
		}
		p, err := parseQIDO(r.URL.Query(), lvl)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var studies []archive.Study
		if uid := r.PathValue("study"); uid != "" {
			st, err := s.c.Store.Study(ctx, uid)
			if err != nil {
				fail(w, err)
				return
			}
			studies = []archive.Study{st}
		} else {
			if studies, err = s.c.Store.Studies(ctx, p.archiveQuery()); err != nil {
				fail(w, err)
				return
			}
		}
		var out []result
		for _, st := range studies {
			if !uidMatch(p.match["StudyInstanceUID"], st.UID) {
				continue
			}
			if lvl == studyLevel {
				if st.Series == nil && len(p.include) > 0 {
					// Studies results leave out the series; the first
					// instance is needed for the included fields.
					if st, err = s.c.Store.Study(ctx, st.UID); err != nil {
						fail(w, err)
						return
					}
				}
				out = append(out, result{studyAttrs(r, st), st.UID, firstInstance(st.Series)})
				continue
			}
			for _, se := range st.Series {
				if series := r.PathValue("series"); series != "" && se.UID != series ||
					!uidMatch(p.match["SeriesInstanceUID"], se.UID) ||
					p.match["Modality"] != "" && p.match["Modality"] != se.Modality ||
					p.match["SeriesNumber"] != "" && p.match["SeriesNumber"] != strconv.Itoa(se.Number) {
					continue
				}
				if lvl == seriesLevel {
					out = append(out, result{seriesAttrs(r, st, se), st.UID, firstInstance([]archive.Series{se})})
					continue
				}
				for _, in := range se.Instances {
					if !uidMatch(p.match["SOPInstanceUID"], in.SOPInstanceUID) ||
						!uidMatch(p.match["SOPClassUID"], in.SOPClassUID) ||
						p.match["InstanceNumber"] != "" && p.match["InstanceNumber"] != strconv.Itoa(in.Number) {
						continue
					}
					out = append(out, result{instanceAttrs(r, st, se, in), st.UID, in.SOPInstanceUID})
				}
			}
		}
		if lvl == studyLevel {
			sort.SliceStable(out, func(i, j int) bool {
				a, b := out[i].d, out[j].d
				return first(a["00080020"])+out[i].study > first(b["00080020"])+out[j].study
			})
		}
		if len(p.ignored) > 0 {
			w.Header().Add("Warning", `299 dicomesh "not supported for matching, ignored: `+strings.Join(p.ignored, ", ")+`"`)
		}
		out = out[min(p.offset, len(out)):]
		if p.limit > 0 && p.limit < len(out) {
			out = out[:p.limit]
		}
		if len(out) > maxResults {
			// PS3.18 8.3.4.4: the answer is cut, and says so.
			out = out[:maxResults]
			w.Header().Add("Warning", fmt.Sprintf(`299 dicomesh "the number of results exceeded the maximum supported (%d): use limit and offset"`, maxResults))
		}
		ds := make([]dataset, len(out))
		for i, res := range out {
			if err := s.include(ctx, res, p); err != nil {
				fail(w, err)
				return
			}
			ds[i] = res.d
		}
		writeDICOMJSON(w, ds)
	}
}

func first(a attr) string {
	if len(a.Value) == 0 {
		return ""
	}
	v, _ := a.Value[0].(string)
	return v
}

func firstInstance(series []archive.Series) string {
	for _, se := range series {
		if len(se.Instances) > 0 {
			return se.Instances[0].SOPInstanceUID
		}
	}
	return ""
}

// include adds the requested fields the index does not hold, read from the
// result's first instance: the patient, study and series attributes are
// the same in every instance of their entity. Bulk data is not included.
func (s *service) include(ctx context.Context, res result, p qidoParams) error {
	var missing []string
	for _, t := range p.include {
		if _, ok := res.d[t]; !ok {
			missing = append(missing, t)
		}
	}
	if len(missing) == 0 || res.sop == "" {
		return nil
	}
	in, err := s.load(ctx, res.study, res.sop)
	if errors.Is(err, part10.ErrMalformed) {
		return nil
	}
	if err != nil {
		return err
	}
	md := in.JSON("")
	for _, t := range missing {
		if a, ok := md[t]; ok && a.BulkDataURI == "" && a.InlineBinary == "" {
			res.d[t] = attr(a)
		}
	}
	return nil
}

// seriesAttrs describes a series, with its patient and study as well, as
// Orthanc does, so that a series found without its study can be shown.
func seriesAttrs(r *http.Request, st archive.Study, se archive.Series) dataset {
	d := dataset{}
	sd := studyAttrs(r, st)
	for _, t := range []string{"00080005", "00100010", "00100020", "00100030", "00100040", "00080020", "00080030", "00080050", "00080090", "00200010"} {
		d[t] = sd[t]
	}
	d.str("00080060", "CS", se.Modality)
	d.str("0008103E", "LO", se.Description)
	d.str("00180015", "CS", se.BodyPart)
	d.str("0020000D", "UI", st.UID)
	d.str("0020000E", "UI", se.UID)
	d.num("00200011", "IS", se.Number)
	d.num("00201209", "IS", len(se.Instances))
	d.str("00081190", "UR", base(r)+"/studies/"+st.UID+"/series/"+se.UID)
	return d
}

func instanceAttrs(r *http.Request, st archive.Study, se archive.Series, in archive.Instance) dataset {
	d := dataset{}
	d.str("00080016", "UI", in.SOPClassUID)
	d.str("00080018", "UI", in.SOPInstanceUID)
	d.str("0020000D", "UI", st.UID)
	d.str("0020000E", "UI", se.UID)
	d.num("00200013", "IS", in.Number)
	d.str("00081190", "UR", instanceURL(r, st.UID, ref{se.UID, in.SOPInstanceUID}))
	return d
}

func base(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/dicom-web"
}

func studyAttrs(r *http.Request, st archive.Study) dataset {
	d := dataset{}
	d.str("00080005", "CS", "ISO_IR 192") // JSON is UTF-8
	d.str("00080020", "DA", st.StudyDate)
	d.str("00080030", "TM", st.StudyTime)
	d.str("00080050", "SH", st.Accession)
	d.strs("00080061", "CS", st.Modalities)
	d.str("00081190", "UR", base(r)+"/studies/"+st.UID)
	d.pn("00100010", st.PatientName)
	id, issuer := st.PatientID, st.Issuer
	if st.LocalPatientID != "" {
		// A received study is shown under the local patient.
		id, issuer = st.LocalPatientID, st.LocalIssuer
	}
	d.str("00100020", "LO", id)
	d.str("00100021", "LO", issuer)
	d.str("00100030", "DA", st.BirthDate)
	d.str("00100040", "CS", st.Sex)
	d.str("00081030", "LO", st.Description)
	d.str("00200010", "SH", st.StudyID)
	d.pn("00080090", st.Referrer)
	d.str("0020000D", "UI", st.UID)
	d.num("00201206", "IS", st.SeriesCount)
	d.num("00201208", "IS", st.Instances)
	return d
}
