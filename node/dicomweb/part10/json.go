package part10

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// inlineLimit is the largest binary value written inline (InlineBinary);
// larger ones, and pixel data always, are referenced by a BulkDataURI.
const inlineLimit = 1024

// Attr is one attribute of the DICOM JSON model (PS3.18 F.2).
type Attr struct {
	VR           string `json:"vr"`
	Value        []any  `json:"Value,omitempty"`
	InlineBinary string `json:"InlineBinary,omitempty"`
	BulkDataURI  string `json:"BulkDataURI,omitempty"`
}

// Dataset is a dataset in the DICOM JSON model, keyed by tag ("00100010").
type Dataset map[string]Attr

// JSON renders the instance in the DICOM JSON model. bulk is the
// instance's bulk data URL prefix; binary values past inlineLimit become
// bulk/TAG, or bulk/TAG/ITEM/TAG inside sequences. Group lengths are left
// out.
func (in *Instance) JSON(bulk string) Dataset {
	cs := in.Str(0x00080005)
	d := jsonDataset(in.Elements, in, cs, bulk)
	if _, ok := d["00080005"]; ok {
		// Text is transcoded to UTF-8, as JSON is.
		d["00080005"] = Attr{VR: "CS", Value: []any{"ISO_IR 192"}}
	}
	return d
}

func jsonDataset(els []Element, in *Instance, cs, bulk string) Dataset {
	out := make(Dataset, len(els))
	for _, e := range els {
		if e.Tag&0xFFFF == 0 {
			continue
		}
		k := fmt.Sprintf("%08X", e.Tag)
		a := Attr{VR: e.VR}
		switch {
		case e.VR == "SQ":
			for i, item := range e.Items {
				a.Value = append(a.Value, jsonDataset(item, in, cs, bulk+"/"+k+"/"+strconv.Itoa(i)))
			}
		case e.Fragments != nil || e.Tag == pixelData:
			a.BulkDataURI = bulk + "/" + k
		case binaryVR(e.VR):
			if len(e.Value) > inlineLimit {
				a.BulkDataURI = bulk + "/" + k
			} else if len(e.Value) > 0 {
				a.InlineBinary = base64.StdEncoding.EncodeToString(e.Value)
			}
		case e.VR == "PN":
			for _, v := range split(decodeText(e.Value, cs)) {
				if v == "" {
					a.Value = append(a.Value, nil)
					continue
				}
				pn := map[string]string{}
				for i, group := range strings.SplitN(v, "=", 3) {
					if group != "" {
						pn[[]string{"Alphabetic", "Ideographic", "Phonetic"}[i]] = group
					}
				}
				a.Value = append(a.Value, pn)
			}
		case e.VR == "LT" || e.VR == "ST" || e.VR == "UT" || e.VR == "UR":
			if v := strings.TrimRight(decodeText(e.Value, cs), " \x00"); v != "" {
				a.Value = []any{v}
			}
		case e.VR == "AT":
			for i := 0; i+4 <= len(e.Value); i += 4 {
				a.Value = append(a.Value, fmt.Sprintf("%04X%04X", in.Order.Uint16(e.Value[i:]), in.Order.Uint16(e.Value[i+2:])))
			}
		case numericVR(e.VR):
			a.Value = numbers(e, in.Order)
		default: // AE AS CS DA DT LO SH TM UC UI and unknown text
			for _, v := range split(decodeText(e.Value, cs)) {
				if v == "" {
					a.Value = append(a.Value, nil)
				} else {
					a.Value = append(a.Value, v)
				}
			}
		}
		if len(a.Value) == 1 && a.Value[0] == nil {
			a.Value = nil
		}
		out[k] = a
	}
	return out
}

func binaryVR(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "UN":
		return true
	}
	return false
}

func numericVR(vr string) bool {
	switch vr {
	case "IS", "DS", "US", "SS", "UL", "SL", "FL", "FD", "SV", "UV":
		return true
	}
	return false
}

// split splits a text value into its values, trimmed of padding; an empty
// text has no values.
func split(s string) []string {
	s = strings.TrimRight(s, " \x00")
	if s == "" {
		return nil
	}
	vs := strings.Split(s, `\`)
	for i, v := range vs {
		vs[i] = strings.Trim(v, " \x00")
	}
	return vs
}

// numbers decodes a numeric element: IS as int64, the others as float64
// (US, SS, UL, SL as whole numbers). Unparsable text values become nil.
func numbers(e Element, o binary.ByteOrder) []any {
	var out []any
	b := e.Value
	switch e.VR {
	case "IS", "DS":
		for _, v := range split(string(b)) {
			if e.VR == "IS" {
				if i, err := strconv.ParseInt(v, 10, 64); err == nil {
					out = append(out, i)
					continue
				}
			}
			if f, err := strconv.ParseFloat(v, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
				out = append(out, f)
			} else {
				out = append(out, nil)
			}
		}
	case "US":
		for i := 0; i+2 <= len(b); i += 2 {
			out = append(out, float64(o.Uint16(b[i:])))
		}
	case "SS":
		for i := 0; i+2 <= len(b); i += 2 {
			out = append(out, float64(int16(o.Uint16(b[i:]))))
		}
	case "UL":
		for i := 0; i+4 <= len(b); i += 4 {
			out = append(out, float64(o.Uint32(b[i:])))
		}
	case "SL":
		for i := 0; i+4 <= len(b); i += 4 {
			out = append(out, float64(int32(o.Uint32(b[i:]))))
		}
	case "FL":
		for i := 0; i+4 <= len(b); i += 4 {
			out = append(out, finite(float64(math.Float32frombits(o.Uint32(b[i:])))))
		}
	case "FD":
		for i := 0; i+8 <= len(b); i += 8 {
			out = append(out, finite(math.Float64frombits(o.Uint64(b[i:]))))
		}
	case "SV":
		for i := 0; i+8 <= len(b); i += 8 {
			out = append(out, float64(int64(o.Uint64(b[i:]))))
		}
	case "UV":
		for i := 0; i+8 <= len(b); i += 8 {
			out = append(out, float64(o.Uint64(b[i:])))
		}
	}
	return out
}

// finite keeps JSON valid: NaN and infinities have no JSON number.
func finite(f float64) any {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return f
}

// decodeText turns a text value into UTF-8 under the Dataset's Specific
// Character Set: ISO_IR 100 (Latin-1) is converted; the default
// repertoire and ISO_IR 192 are UTF-8 already; anything else keeps its
// valid UTF-8 and replaces the rest.
func decodeText(b []byte, cs string) string {
	if strings.Contains(cs, "ISO_IR 100") || strings.Contains(cs, "ISO 2022 IR 100") {
		r := make([]rune, len(b))
		for i, c := range b {
			r[i] = rune(c)
		}
		return string(r)
	}
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}
