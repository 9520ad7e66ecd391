package dimse

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/dicomesh/dicomesh/node/archive"
)

// C-FIND information models served.
const (
	studyRootFind   = "1.2.840.10008.5.1.4.1.2.2.1"
	patientRootFind = "1.2.840.10008.5.1.4.1.2.1.1"
	cFindRQ         = 0x0020
)

// Finder answers C-FIND queries: the node, which audits each query.
type Finder interface {
	Studies(ctx context.Context, q archive.Query) ([]archive.Study, error)
	Study(ctx context.Context, uid string) (archive.Study, error)
}

type tagKey uint32

func tk(group, elem uint16) tagKey { return tagKey(uint32(group)<<16 | uint32(elem)) }

// The keys C-FIND matches on and returns, with their VRs.
var findVRs = map[tagKey]string{
	tk(0x0008, 0x0020): "DA", // StudyDate
	tk(0x0008, 0x0030): "TM", // StudyTime
	tk(0x0008, 0x0050): "SH", // AccessionNumber
	tk(0x0008, 0x0052): "CS", // QueryRetrieveLevel
	tk(0x0008, 0x0060): "CS", // Modality
	tk(0x0008, 0x0061): "CS", // ModalitiesInStudy
	tk(0x0008, 0x1030): "LO", // StudyDescription
	tk(0x0008, 0x103E): "LO", // SeriesDescription
	tk(0x0010, 0x0010): "PN", // PatientName
	tk(0x0010, 0x0020): "LO", // PatientID
	tk(0x0010, 0x0021): "LO", // IssuerOfPatientID
	tk(0x0010, 0x0030): "DA", // PatientBirthDate
	tk(0x0010, 0x0040): "CS", // PatientSex
	tk(0x0020, 0x000D): "UI", // StudyInstanceUID
	tk(0x0020, 0x000E): "UI", // SeriesInstanceUID
	tk(0x0020, 0x0011): "IS", // SeriesNumber
	tk(0x0020, 0x1206): "IS", // NumberOfStudyRelatedSeries
	tk(0x0020, 0x1208): "IS", // NumberOfStudyRelatedInstances
	tk(0x0020, 0x1209): "IS", // NumberOfSeriesRelatedInstances
}

// identifier is a flat C-FIND identifier: the requested keys, in order,
// with their values.
type identifier struct {
	keys   []tagKey
	values map[tagKey]string
}

// parseIdentifier reads the top-level elements of a data set in implicit
// or explicit VR little endian. Sequences are not used as keys here: one
// of defined length is skipped, one of undefined length is refused.
func parseIdentifier(b []byte, explicit bool) (identifier, error) {
	id := identifier{values: map[tagKey]string{}}
	for len(b) > 0 {
		if len(b) < 8 {
			return id, fmt.Errorf("%w: truncated identifier", ErrMalformed)
		}
		g, e := binary.LittleEndian.Uint16(b), binary.LittleEndian.Uint16(b[2:])
		var n uint32
		var hdr int
		if explicit {
			vr := string(b[4:6])
			switch vr {
			case "OB", "OW", "OF", "SQ", "UT", "UN", "UC", "UR", "OD", "OL", "OV", "SV", "UV":
				if len(b) < 12 {
					return id, fmt.Errorf("%w: truncated identifier", ErrMalformed)
				}
				n, hdr = binary.LittleEndian.Uint32(b[8:]), 12
			default:
				n, hdr = uint32(binary.LittleEndian.Uint16(b[6:])), 8
			}
		} else {
			n, hdr = binary.LittleEndian.Uint32(b[4:]), 8
		}
		if n == 0xFFFFFFFF || uint64(n) > uint64(len(b)-hdr) {
			return id, fmt.Errorf("%w: identifier element (%04x,%04x) of %d bytes", ErrMalformed, g, e, n)
		}
		k := tk(g, e)
		if _, ok := findVRs[k]; ok {
			id.keys = append(id.keys, k)
			id.values[k] = strings.TrimRight(string(b[hdr:hdr+int(n)]), " \x00")
		}
		b = b[hdr+int(n):]
	}
	return id, nil
}

// encodeIdentifier writes the keys of id with the values of match, in the
// dataset's encoding.
func encodeIdentifier(keys []tagKey, match map[tagKey]string, explicit bool) []byte {
	var b []byte
	for _, k := range keys {
		v := []byte(match[k])
		if len(v)%2 == 1 {
			if findVRs[k] == "UI" {
				v = append(v, 0)
			} else {
				v = append(v, ' ')
			}
		}
		b = binary.LittleEndian.AppendUint16(b, uint16(k>>16))
		b = binary.LittleEndian.AppendUint16(b, uint16(k))
		if explicit {
			b = append(b, findVRs[k]...)
			b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
		} else {
			b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
		}
		b = append(b, v...)
	}
	return b
}

// find runs one C-FIND query and returns the matches, each as the values
// of the requested keys.
func (s *Server) find(ctx context.Context, id identifier) ([]map[tagKey]string, error) {
	level := strings.ToUpper(id.values[tk(0x0008, 0x0052)])
	q := archive.Query{PatientID: wild(id.values[tk(0x0010, 0x0020)]), Issuer: wild(id.values[tk(0x0010, 0x0021)]),
		PatientName: strings.TrimRight(id.values[tk(0x0010, 0x0010)], "*"), Accession: wild(id.values[tk(0x0008, 0x0050)]),
		Modality: wild(id.values[tk(0x0008, 0x0061)])}
	if d := id.values[tk(0x0008, 0x0020)]; d != "" {
		from, to, isRange := strings.Cut(d, "-")
		q.DateFrom, q.DateTo = from, to
		if !isRange {
			q.DateTo = from
		}
	}
	var studies []archive.Study
	if uid := id.values[tk(0x0020, 0x000D)]; uid != "" {
		st, err := s.cfg.Finder.Study(ctx, uid)
		if err == nil {
			studies = []archive.Study{st}
		}
	} else {
		var err error
		if studies, err = s.cfg.Finder.Studies(ctx, q); err != nil {
			return nil, err
		}
	}
	var out []map[tagKey]string
	for _, st := range studies {
		pid, issuer := st.PatientID, st.Issuer
		if st.LocalPatientID != "" {
			pid, issuer = st.LocalPatientID, st.LocalIssuer
		}
		study := map[tagKey]string{
			tk(0x0008, 0x0020): st.StudyDate, tk(0x0008, 0x0030): st.StudyTime, tk(0x0008, 0x0050): st.Accession,
			tk(0x0008, 0x0061): strings.Join(st.Modalities, `\`), tk(0x0008, 0x1030): st.Description,
			tk(0x0010, 0x0010): st.PatientName, tk(0x0010, 0x0020): pid, tk(0x0010, 0x0021): issuer,
			tk(0x0010, 0x0030): st.BirthDate, tk(0x0010, 0x0040): st.Sex, tk(0x0020, 0x000D): st.UID,
			tk(0x0020, 0x1206): fmt.Sprint(st.SeriesCount), tk(0x0020, 0x1208): fmt.Sprint(st.Instances),
			tk(0x0008, 0x0052): level,
		}
		if level != "SERIES" {
			out = append(out, study)
			continue
		}
		full, err := s.cfg.Finder.Study(ctx, st.UID)
		if err != nil {
			continue
		}
		for _, se := range full.Series {
			if u := id.values[tk(0x0020, 0x000E)]; u != "" && u != se.UID {
				continue
			}
			if m := wild(id.values[tk(0x0008, 0x0060)]); m != "" && !strings.EqualFold(m, se.Modality) {
				continue
			}
			row := map[tagKey]string{}
			for k, v := range study {
				row[k] = v
			}
			row[tk(0x0020, 0x000E)], row[tk(0x0008, 0x0060)] = se.UID, se.Modality
			row[tk(0x0008, 0x103E)], row[tk(0x0020, 0x0011)] = se.Description, fmt.Sprint(se.Number)
			row[tk(0x0020, 0x1209)] = fmt.Sprint(len(se.Instances))
			out = append(out, row)
		}
	}
	return out, nil
}

// wild treats a lone "*" as universal matching.
func wild(v string) string {
	if v == "*" {
		return ""
	}
	return v
}
