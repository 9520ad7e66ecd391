package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// JSON value kinds, as r4Paths gives them. An array's kind is "[]" and the
// kind of its elements.
const (
	kString = "string"
	kBool   = "boolean"
	kObject = "object"
)

func arrayOf(k string) string { return "[]" + k }

// r4Paths are the elements of the FHIR R4 (4.0.1) AuditEvent resource
// (https://hl7.org/fhir/R4/auditevent.html) with the JSON kind of their
// values, down through the data types they use (Coding, CodeableConcept,
// Reference, Identifier, Period, Meta, Narrative). Extensions and contained
// resources are left out: neither the examples nor the export use them. A
// path names an object member; array elements take their array's path.
var r4Paths = map[string]string{
	"resourceType":                    kString,
	"id":                              kString,
	"meta":                            kObject,
	"meta.versionId":                  kString,
	"meta.lastUpdated":                kString,
	"meta.source":                     kString,
	"meta.profile":                    arrayOf(kString),
	"meta.security":                   arrayOf(kObject), // Coding
	"meta.tag":                        arrayOf(kObject), // Coding
	"implicitRules":                   kString,
	"language":                        kString,
	"text":                            kObject,
	"text.status":                     kString,
	"text.div":                        kString,
	"type":                            kObject, // Coding 1..1
	"subtype":                         arrayOf(kObject),
	"action":                          kString, // code
	"period":                          kObject,
	"recorded":                        kString, // instant 1..1
	"outcome":                         kString, // code
	"outcomeDesc":                     kString,
	"purposeOfEvent":                  arrayOf(kObject), // CodeableConcept
	"agent":                           arrayOf(kObject), // 1..*
	"agent.type":                      kObject,          // CodeableConcept
	"agent.role":                      arrayOf(kObject), // CodeableConcept
	"agent.who":                       kObject,          // Reference
	"agent.altId":                     kString,
	"agent.name":                      kString,
	"agent.requestor":                 kBool, // 1..1
	"agent.location":                  kObject,
	"agent.policy":                    arrayOf(kString),
	"agent.media":                     kObject, // Coding
	"agent.network":                   kObject,
	"agent.network.address":           kString,
	"agent.network.type":              kString, // code
	"agent.purposeOfUse":              arrayOf(kObject),
	"source":                          kObject, // 1..1
	"source.site":                     kString,
	"source.observer":                 kObject, // Reference 1..1
	"source.type":                     arrayOf(kObject),
	"entity":                          arrayOf(kObject),
	"entity.what":                     kObject, // Reference
	"entity.type":                     kObject, // Coding
	"entity.role":                     kObject, // Coding
	"entity.lifecycle":                kObject, // Coding
	"entity.securityLabel":            arrayOf(kObject),
	"entity.name":                     kString,
	"entity.description":              kString,
	"entity.query":                    kString, // base64Binary
	"entity.detail":                   arrayOf(kObject),
	"entity.detail.type":              kString,
	"entity.detail.valueString":       kString,
	"entity.detail.valueBase64Binary": kString,
}

// Data types, by the paths that hold them.
var (
	r4Coding = map[string]string{
		"system": kString, "version": kString, "code": kString, "display": kString, "userSelected": kBool,
	}
	r4CodeableConcept = map[string]string{"coding": arrayOf(kObject), "text": kString}
	r4Reference       = map[string]string{"reference": kString, "type": kString, "identifier": kObject, "display": kString}
	r4Identifier      = map[string]string{
		"use": kString, "type": kObject, "system": kString, "value": kString, "period": kObject, "assigner": kObject,
	}
	r4Period = map[string]string{"start": kString, "end": kString}
)

func init() {
	add := func(base string, typ map[string]string) {
		for k, v := range typ {
			r4Paths[base+"."+k] = v
		}
	}
	for _, p := range []string{"meta.security", "meta.tag", "type", "subtype", "agent.media", "source.type",
		"entity.type", "entity.role", "entity.lifecycle", "entity.securityLabel"} {
		add(p, r4Coding)
	}
	for _, p := range []string{"purposeOfEvent", "agent.type", "agent.role", "agent.purposeOfUse"} {
		add(p, r4CodeableConcept)
		add(p+".coding", r4Coding)
	}
	for _, p := range []string{"agent.who", "agent.location", "source.observer", "entity.what"} {
		add(p, r4Reference)
		add(p+".identifier", r4Identifier)
		add(p+".identifier.type", r4CodeableConcept)
		add(p+".identifier.type.coding", r4Coding)
		add(p+".identifier.period", r4Period)
	}
	add("period", r4Period)
}

// jsonPaths returns every member path in v and the kind of its value.
func jsonPaths(v any) map[string]string {
	out := map[string]string{}
	var walk func(path string, v any)
	kind := func(v any) string {
		switch x := v.(type) {
		case string:
			return kString
		case bool:
			return kBool
		case float64, json.Number:
			return "number"
		case map[string]any:
			return kObject
		case []any:
			if len(x) == 0 {
				return arrayOf("empty")
			}
			return arrayOf(kindOf(x[0]))
		}
		return fmt.Sprintf("%T", v)
	}
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				p := k
				if path != "" {
					p = path + "." + k
				}
				if prev, ok := out[p]; ok && prev != kind(e) {
					out[p] = prev + "|" + kind(e)
				} else {
					out[p] = kind(e)
				}
				walk(p, e)
			}
		case []any:
			for _, e := range x {
				walk(path, e)
			}
		}
	}
	walk("", v)
	return out
}

func kindOf(v any) string {
	switch v.(type) {
	case string:
		return kString
	case bool:
		return kBool
	case map[string]any:
		return kObject
	}
	return fmt.Sprintf("%T", v)
}

// checkR4Paths fails t for every path of ev that is not an R4 AuditEvent
// element or holds a value of another kind.
func checkR4Paths(t *testing.T, name string, ev map[string]any) {
	t.Helper()
	for p, k := range jsonPaths(ev) {
		want, ok := r4Paths[p]
		switch {
		case !ok:
			t.Errorf("%s: %s is not an element of the R4 AuditEvent", name, p)
		case want != k:
			t.Errorf("%s: %s is a %s, R4 says %s", name, p, k, want)
		}
	}
}

func readExamples(t *testing.T, prefix string) map[string]map[string]any {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", prefix+"*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/%s*.json: %v", prefix, err)
	}
	out := map[string]map[string]any{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var ev map[string]any
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[filepath.Base(f)] = ev
	}
	return out
}

// TestR4PathsAgainstExamples checks the R4 element list against the
// official FHIR R4 and IHE BALP examples: each of their paths is listed,
// with the kind they use, so the list is no narrower than R4.
func TestR4PathsAgainstExamples(t *testing.T) {
	for name, ev := range readExamples(t, "") {
		checkR4Paths(t, name, ev)
		checkR4Required(t, name, ev)
	}
}

// Code systems of the codes the FHIR export may use, each with the codes
// allowed (nil: any code of the system). They are the systems IHE BALP
// uses: DICOM (event IDs, event types, participant roles, ID types),
// audit-event-type, v3-ActReason restricted to the v3-PurposeOfUse value
// set, v3-ParticipationType, audit-entity-type, object-role, the ISO 21089
// lifecycle, security-source-type and network-type.
var (
	dcmEventCodes = []string{"110100", "110101", "110102", "110103", "110104", "110105", "110106", "110107",
		"110108", "110109", "110110", "110111", "110112", "110113", "110114"}
	dcmEventTypeCodes = []string{"110120", "110121", "110122", "110123", "110124", "110125", "110126", "110127",
		"110128", "110129", "110130", "110131", "110132", "110133", "110134", "110135", "110136", "110137",
		"110138", "110139", "110140", "110141", "110142"}
	dcmRoleCodes = []string{"110150", "110151", "110152", "110153", "110154", "110155"}
	// v3-PurposeOfUse: the purpose-of-use codes of v3-ActReason (those
	// dicomesh's consent policy and the examples use).
	purposeOfUseCodes = []string{"TREAT", "ETREAT", "HPAYMT", "HOPERAT", "CAREMGT", "COC", "PATRQT", "HMARKT",
		"HRESCH", "PUBHLTH", "HSYSADMIN", "BTG", "FAMRQT", "PWATRNY", "SUPNWK", "HDIRECT", "LABELING", "METAMGT",
		"TRAIN", "HLEGAL", "SYSDEV", "HQUALIMP", "HTEST", "CLINTRCH", "DISASTER", "THREAT", "HACCRED", "HCOMPL"}
)

// checkCoding fails t unless c is a coding of system with an allowed code.
func checkCoding(t *testing.T, where string, c map[string]any, system string, codes []string) {
	t.Helper()
	if c == nil {
		t.Errorf("%s: missing", where)
		return
	}
	if c["system"] != system {
		t.Errorf("%s: system %v, want %s", where, c["system"], system)
	}
	code, _ := c["code"].(string)
	if code == "" || codes != nil && !slices.Contains(codes, code) {
		t.Errorf("%s: code %q is not one of %v", where, code, codes)
	}
}

func obj(v any) map[string]any { m, _ := v.(map[string]any); return m }
func arr(v any) []any          { a, _ := v.([]any); return a }

// firstCoding returns the first coding of a CodeableConcept.
func firstCoding(cc any) map[string]any { return obj(first(arr(obj(cc)["coding"]))) }

func first(a []any) any {
	if len(a) == 0 {
		return nil
	}
	return a[0]
}

var (
	fhirID      = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)
	fhirInstant = regexp.MustCompile(`^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))$`)
)

// checkR4Required checks the R4 cardinalities and value formats the export
// must meet.
func checkR4Required(t *testing.T, name string, ev map[string]any) {
	t.Helper()
	if ev["resourceType"] != "AuditEvent" {
		t.Errorf("%s: resourceType %v", name, ev["resourceType"])
	}
	if id, _ := ev["id"].(string); !fhirID.MatchString(id) {
		t.Errorf("%s: id %q is not a FHIR id", name, id)
	}
	if obj(ev["type"]) == nil {
		t.Errorf("%s: no type", name)
	}
	if r, _ := ev["recorded"].(string); !fhirInstant.MatchString(r) {
		t.Errorf("%s: recorded %q is not a FHIR instant", name, r)
	}
	if a, _ := ev["action"].(string); a != "" && !strings.Contains("CRUDE", a) || len(a) > 1 {
		t.Errorf("%s: action %q", name, a)
	}
	if o, ok := ev["outcome"].(string); ok && !slices.Contains([]string{"0", "4", "8", "12"}, o) {
		t.Errorf("%s: outcome %q", name, o)
	}
	agents := arr(ev["agent"])
	if len(agents) == 0 {
		t.Errorf("%s: no agent", name)
	}
	for i, a := range agents {
		if _, ok := obj(a)["requestor"].(bool); !ok {
			t.Errorf("%s: agent %d has no requestor", name, i)
		}
		if n := obj(obj(a)["network"]); n != nil && !slices.Contains([]string{"1", "2", "3", "4", "5"}, n["type"].(string)) {
			t.Errorf("%s: agent %d network type %v", name, i, n["type"])
		}
	}
	if obj(obj(ev["source"])["observer"]) == nil {
		t.Errorf("%s: no source.observer", name)
	}
	for i, e := range arr(ev["entity"]) {
		if q, ok := obj(e)["query"].(string); ok {
			if _, err := base64.StdEncoding.DecodeString(q); err != nil {
				t.Errorf("%s: entity %d query is not base64: %v", name, i, err)
			}
		}
	}
}

// checkCodes checks that the export's codes come from the systems BALP
// uses.
func checkCodes(t *testing.T, name string, ev map[string]any) {
	t.Helper()
	checkCoding(t, name+" type", obj(ev["type"]), systemDCM, dcmEventCodes)
	for i, s := range arr(ev["subtype"]) {
		c := obj(s)
		switch c["system"] {
		case systemDCM:
			checkCoding(t, fmt.Sprintf("%s subtype %d", name, i), c, systemDCM, dcmEventTypeCodes)
		case systemLifecycle:
			checkCoding(t, fmt.Sprintf("%s subtype %d", name, i), c, systemLifecycle, []string{"disclose"})
		default:
			t.Errorf("%s: subtype %d from system %v", name, i, c["system"])
		}
	}
	purposes := arr(ev["purposeOfEvent"])
	for i, a := range arr(ev["agent"]) {
		ag := obj(a)
		c := firstCoding(ag["type"])
		where := fmt.Sprintf("%s agent %d type", name, i)
		if c["system"] == systemParticipation {
			checkCoding(t, where, c, systemParticipation, []string{"IRCP"})
		} else {
			checkCoding(t, where, c, systemDCM, dcmRoleCodes)
		}
		purposes = append(purposes, arr(ag["purposeOfUse"])...)
	}
	for i, p := range purposes {
		checkCoding(t, fmt.Sprintf("%s purpose %d", name, i), firstCoding(p), systemActReason, purposeOfUseCodes)
	}
	for i, s := range arr(obj(ev["source"])["type"]) {
		checkCoding(t, fmt.Sprintf("%s source type %d", name, i), obj(s), systemSourceType, []string{"1", "2", "3", "4", "5", "6", "7", "8", "9"})
	}
	for i, e := range arr(ev["entity"]) {
		en := obj(e)
		checkCoding(t, fmt.Sprintf("%s entity %d type", name, i), obj(en["type"]), systemEntityType, []string{"1", "2", "3", "4"})
		var roles []string
		for r := 1; r <= 24; r++ {
			roles = append(roles, strconv.Itoa(r))
		}
		checkCoding(t, fmt.Sprintf("%s entity %d role", name, i), obj(en["role"]), systemObjectRole, roles)
	}
}

// exportRecords returns records covering every field and the edge cases
// of the export: no user, no facility, a token but no local patient,
// break-glass, a query, an IPv6 address, a denial, a subtype.
func exportRecords() []Record {
	var rs []Record
	for i := range 60 {
		r := sample(i)
		r.Index = uint64(i)
		r.Time = epoch.Add(time.Duration(i) * 1234567 * time.Microsecond)
		rs = append(rs, r)
	}
	more := []Record{
		{Event: EventApplicationActivity, Action: ActionExecute, Subtype: SubtypeApplicationStart},
		{Event: EventApplicationActivity, Action: ActionExecute, Subtype: Coded{System: "DCM", Code: "110121"}},
		{Event: EventQuery, Action: ActionExecute, User: "dr.who", UserRole: "radiologist", Facility: "fac-b",
			Address: "[2001:db8::7]:4001", PatientToken: "tok-123", Purpose: "TREAT", Query: "PatientID=7\n&x=\"y\""},
		{Event: EventPatientRecord, Action: ActionRead, Outcome: Denied, User: "mallory", Facility: "fac-c",
			Address: "10.0.0.9", Patient: "HOSP|123", Purpose: "HMARKT", OutcomeDesc: "no consent"},
		{Event: EventInstancesAccessed, Action: ActionRead, User: "er", Facility: "fac-a", Patient: "HOSP|9^8&7",
			Study: "1.2.3.4", Purpose: "ETREAT", BreakGlass: "unconscious, no directive on file"},
		{Event: EventImport, Action: ActionCreate, Patient: "|no-issuer", Study: "1.2.3.5"},
		{Event: EventSecurityAlert, Action: ActionExecute, Outcome: MajorFailure, Peer: "fac-z"},
	}
	for i, r := range more {
		r.Index = uint64(len(rs))
		r.Time = epoch.Add(time.Duration(i) * time.Hour)
		rs = append(rs, r)
	}
	return rs
}

func exportBytes(t *testing.T, f Format, src Source, rs []Record) []byte {
	t.Helper()
	var b bytes.Buffer
	enc, err := NewEncoder(&b, f, src)
	if err != nil {
		t.Fatal(err)
	}
	for i := range rs {
		if err := enc.Encode(&rs[i]); err != nil {
			t.Fatalf("encode %d: %v", i, err)
		}
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func decodeNDJSON(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev map[string]any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %d: %v", len(out)+1, err)
		}
		out = append(out, ev)
	}
	return out
}

// TestFHIRExportStructure checks every AuditEvent the export writes against
// the R4 element list, the R4 cardinalities and formats, and the code
// systems BALP uses, and that a record with a patient has a patient entity.
func TestFHIRExportStructure(t *testing.T) {
	rs := exportRecords()
	src := Source{Facility: "fac-a"}
	evs := decodeNDJSON(t, exportBytes(t, FormatFHIR, src, rs))
	if len(evs) != len(rs) {
		t.Fatalf("%d events for %d records", len(evs), len(rs))
	}
	ids := map[string]bool{}
	for i, ev := range evs {
		name := fmt.Sprintf("record %d", i)
		checkR4Paths(t, name, ev)
		checkR4Required(t, name, ev)
		checkCodes(t, name, ev)
		id := ev["id"].(string)
		if ids[id] {
			t.Errorf("%s: id %s repeated", name, id)
		}
		ids[id] = true
		r := rs[i]
		if got, want := ev["outcome"], strconv.Itoa(r.Outcome.Code()); got != want {
			t.Errorf("%s: outcome %v, want %s", name, got, want)
		}
		rec, _ := time.Parse(time.RFC3339Nano, ev["recorded"].(string))
		if !rec.Equal(r.Time) {
			t.Errorf("%s: recorded %v, want %v", name, rec, r.Time)
		}
		// A patient entity for each patient identifier, and none without.
		var patients []string
		for _, e := range arr(ev["entity"]) {
			en := obj(e)
			if obj(en["role"])["code"] == "1" {
				if obj(en["type"])["code"] != "1" {
					t.Errorf("%s: patient entity of type %v, want 1 (Person)", name, obj(en["type"])["code"])
				}
				patients = append(patients, obj(obj(en["what"])["identifier"])["value"].(string))
			}
		}
		var want []string
		if r.Patient != "" {
			_, id, ok := strings.Cut(r.Patient, "|")
			if !ok || strings.HasPrefix(r.Patient, "|") {
				id = r.Patient
			}
			want = append(want, id)
		}
		if r.PatientToken != "" {
			want = append(want, r.PatientToken)
		}
		if d := cmp.Diff(want, patients); d != "" {
			t.Errorf("%s: patient entities (-want +got):\n%s", name, d)
		}
		if r.Query != "" {
			q := queryOf(ev)
			if q != r.Query {
				t.Errorf("%s: query entity %q, want %q", name, q, r.Query)
			}
		}
		// Exactly one requestor: the user, when there is one.
		var req []int
		for j, a := range arr(ev["agent"]) {
			if obj(a)["requestor"] == true {
				req = append(req, j)
			}
		}
		if r.User != "" && len(req) != 1 || r.User == "" && len(req) != 0 {
			t.Errorf("%s: requestor agents %v", name, req)
		}
	}
}

func queryOf(ev map[string]any) string {
	for _, e := range arr(ev["entity"]) {
		if q, ok := obj(e)["query"].(string); ok {
			b, _ := base64.StdEncoding.DecodeString(q)
			return string(b)
		}
	}
	return ""
}

// agentByRole returns the agent whose type is DCM code.
func agentByRole(ev map[string]any, code string) map[string]any {
	for _, a := range arr(ev["agent"]) {
		if c := firstCoding(obj(a)["type"]); c["system"] == systemDCM && c["code"] == code {
			return obj(a)
		}
	}
	return nil
}

// checkDisclosure checks the IHE BALP privacy disclosure pattern (profiles
// IHE.BasicAudit.PrivacyDisclosure.Source and .Recipient): Export (R) at the
// source, Import (C) at the recipient, the ISO 21089 disclose subtype, a
// source and a recipient agent each with who and network, a patient entity
// and at least one more entity.
func checkDisclosure(t *testing.T, name string, ev map[string]any, atSource bool) {
	t.Helper()
	typ, action := "110107", "C"
	if atSource {
		typ, action = "110106", "R"
	}
	checkCoding(t, name+" type", obj(ev["type"]), systemDCM, []string{typ})
	if ev["action"] != action {
		t.Errorf("%s: action %v, want %s", name, ev["action"], action)
	}
	disclose := false
	for _, s := range arr(ev["subtype"]) {
		disclose = disclose || obj(s)["system"] == systemLifecycle && obj(s)["code"] == "disclose"
	}
	if !disclose {
		t.Errorf("%s: no iso-21089-lifecycle#disclose subtype", name)
	}
	for _, role := range []string{"110153", "110152"} {
		a := agentByRole(ev, role)
		if a == nil || obj(a["who"]) == nil || obj(a["network"]) == nil {
			t.Errorf("%s: agent %s with who and network missing: %v", name, role, a)
		}
	}
	ents := arr(ev["entity"])
	patient := false
	for _, e := range ents {
		en := obj(e)
		patient = patient || obj(en["type"])["code"] == "1" && obj(en["role"])["code"] == "1" && obj(en["what"]) != nil
	}
	if !patient || len(ents) < 2 {
		t.Errorf("%s: want a patient entity and another entity, have %v", name, ents)
	}
}

func whoID(a map[string]any) string {
	return fmt.Sprint(obj(obj(a["who"])["identifier"])["value"])
}

// TestFHIRDisclosure checks that a study sent from one facility to another,
// recorded by both, follows the BALP disclosure pattern at each end (the
// pattern is first checked on the BALP examples), and that both records
// name the same source, recipient and patient.
func TestFHIRDisclosure(t *testing.T) {
	ex := readExamples(t, "balp-privacy-disclosure-")
	checkDisclosure(t, "BALP source example", ex["balp-privacy-disclosure-source.json"], true)
	checkDisclosure(t, "BALP recipient example", ex["balp-privacy-disclosure-recipient.json"], false)

	sent := Record{Index: 7, Time: epoch, Event: EventExport, Action: ActionRead, User: "dr.b", Facility: "fac-b",
		Peer: "fac-b", Address: "192.0.2.10", Patient: "HOSP-A|123", PatientToken: "tok-9", Study: "1.2.3", Purpose: "TREAT"}
	recv := Record{Index: 3, Time: epoch, Event: EventImport, Action: ActionCreate, User: "dr.b", Facility: "fac-b",
		Peer: "fac-a", Patient: "HOSP-B|456", PatientToken: "tok-9", Study: "1.2.3", Purpose: "TREAT"}
	atA := decodeNDJSON(t, exportBytes(t, FormatFHIR, Source{Facility: "fac-a"}, []Record{sent}))[0]
	atB := decodeNDJSON(t, exportBytes(t, FormatFHIR, Source{Facility: "fac-b"}, []Record{recv}))[0]
	checkDisclosure(t, "export at fac-a", atA, true)
	checkDisclosure(t, "import at fac-b", atB, false)
	for _, role := range []string{"110153", "110152"} {
		a, b := whoID(agentByRole(atA, role)), whoID(agentByRole(atB, role))
		if a != b {
			t.Errorf("agent %s is %s at the source and %s at the recipient", role, a, b)
		}
	}
	if s, d := whoID(agentByRole(atA, "110153")), whoID(agentByRole(atA, "110152")); s != "fac-a" || d != "fac-b" {
		t.Errorf("disclosure from %s to %s, want fac-a to fac-b", s, d)
	}
	// The recipient's address is the one the source saw.
	if n := obj(agentByRole(atA, "110152")["network"]); n["address"] != "192.0.2.10" || n["type"] != "2" {
		t.Errorf("recipient network at the source: %v", n)
	}
	hasToken := func(ev map[string]any) bool {
		for _, e := range arr(ev["entity"]) {
			if obj(obj(obj(e)["what"])["identifier"])["value"] == "tok-9" {
				return true
			}
		}
		return false
	}
	if !hasToken(atA) || !hasToken(atB) {
		t.Errorf("the patient token is not in both records")
	}
	// A local export (no peer) is no disclosure.
	local := sent
	local.Peer, local.Facility = "", "fac-a"
	ev := decodeNDJSON(t, exportBytes(t, FormatFHIR, Source{Facility: "fac-a"}, []Record{local}))[0]
	if len(arr(ev["subtype"])) != 0 || agentByRole(ev, "110152") != nil {
		t.Errorf("local export: subtype %v, recipient %v", ev["subtype"], agentByRole(ev, "110152"))
	}
}

// xnode is a generic XML element.
type xnode struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Nodes   []xnode    `xml:",any"`
	Text    string     `xml:",chardata"`
}

func (n *xnode) attr(name string) (string, bool) {
	for _, a := range n.Attrs {
		if a.Name.Local == name {
			return a.Value, true
		}
	}
	return "", false
}

func (n *xnode) children(name string) []*xnode {
	var out []*xnode
	for i := range n.Nodes {
		if n.Nodes[i].XMLName.Local == name {
			out = append(out, &n.Nodes[i])
		}
	}
	return out
}

// dicomSchema is the part of the DICOM PS3.15 A.5.1 audit message schema
// the export uses: per element, its attributes (required or optional, with
// their allowed values; nil allows any) and its child elements in order.
type xattr struct {
	required bool
	values   []string // nil: any; "dateTime", "boolean" check the XSD type
}

type xchild struct {
	name     string
	min, max int // max -1: unbounded
}

type xelem struct {
	attrs    map[string]xattr
	children []xchild
}

var codedValue = xelem{attrs: map[string]xattr{
	"csd-code": {required: true}, "codeSystemName": {required: true},
	"displayName": {}, "originalText": {required: true},
}}

var dicomSchema = map[string]xelem{
	"AuditMessage": {children: []xchild{
		{"EventIdentification", 1, 1}, {"ActiveParticipant", 1, -1},
		{"AuditSourceIdentification", 1, 1}, {"ParticipantObjectIdentification", 0, -1},
	}},
	"EventIdentification": {
		attrs: map[string]xattr{
			"EventActionCode":       {values: []string{"C", "R", "U", "D", "E"}},
			"EventDateTime":         {required: true, values: []string{"dateTime"}},
			"EventOutcomeIndicator": {required: true, values: []string{"0", "4", "8", "12"}},
		},
		// PurposeOfUse, which PS3.15 added to the schema it took from
		// RFC 3881, follows EventOutcomeDescription.
		children: []xchild{{"EventID", 1, 1}, {"EventTypeCode", 0, -1}, {"EventOutcomeDescription", 0, 1}, {"PurposeOfUse", 0, -1}},
	},
	"EventID":                 codedValue,
	"EventTypeCode":           codedValue,
	"PurposeOfUse":            codedValue,
	"RoleIDCode":              codedValue,
	"EventOutcomeDescription": {},
	"ActiveParticipant": {
		attrs: map[string]xattr{
			"UserID": {required: true}, "AlternativeUserID": {}, "UserName": {},
			"UserIsRequestor":            {required: true, values: []string{"boolean"}},
			"NetworkAccessPointID":       {},
			"NetworkAccessPointTypeCode": {values: []string{"1", "2", "3", "4", "5"}},
		},
		children: []xchild{{"RoleIDCode", 0, -1}, {"MediaIdentifier", 0, 1}},
	},
	"AuditSourceIdentification": {
		attrs:    map[string]xattr{"AuditEnterpriseSiteID": {}, "AuditSourceID": {required: true}},
		children: []xchild{{"AuditSourceTypeCode", 0, -1}},
	},
	"AuditSourceTypeCode": {attrs: map[string]xattr{
		"csd-code": {required: true}, "codeSystemName": {}, "displayName": {}, "originalText": {},
	}},
	"ParticipantObjectIdentification": {
		attrs: map[string]xattr{
			"ParticipantObjectID":       {required: true},
			"ParticipantObjectTypeCode": {values: []string{"1", "2", "3", "4"}},
			"ParticipantObjectTypeCodeRole": {values: []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10",
				"11", "12", "13", "14", "15", "16", "17", "18", "19", "20", "21", "22", "23", "24", "25", "26"}},
			"ParticipantObjectDataLifeCycle": {},
			"ParticipantObjectSensitivity":   {},
		},
		children: []xchild{{"ParticipantObjectIDTypeCode", 1, 1}, {"ParticipantObjectName|ParticipantObjectQuery", 0, 1},
			{"ParticipantObjectDetail", 0, -1}, {"ParticipantObjectDescription", 0, -1}},
	},
	"ParticipantObjectIDTypeCode": codedValue,
	"ParticipantObjectName":       {},
	"ParticipantObjectQuery":      {},
}

// checkSchema checks n and its descendants against dicomSchema.
func checkSchema(t *testing.T, where string, n *xnode) {
	t.Helper()
	name := n.XMLName.Local
	el, ok := dicomSchema[name]
	if !ok {
		t.Errorf("%s: element %s is not in the schema", where, name)
		return
	}
	where += "/" + name
	for _, a := range n.Attrs {
		spec, ok := el.attrs[a.Name.Local]
		if !ok {
			t.Errorf("%s: attribute %s is not in the schema", where, a.Name.Local)
			continue
		}
		switch {
		case slices.Equal(spec.values, []string{"dateTime"}):
			if _, err := time.Parse(time.RFC3339Nano, a.Value); err != nil {
				t.Errorf("%s: %s=%q is not an xsd:dateTime", where, a.Name.Local, a.Value)
			}
		case slices.Equal(spec.values, []string{"boolean"}):
			if !slices.Contains([]string{"true", "false", "1", "0"}, a.Value) {
				t.Errorf("%s: %s=%q is not an xsd:boolean", where, a.Name.Local, a.Value)
			}
		case spec.values != nil && !slices.Contains(spec.values, a.Value):
			t.Errorf("%s: %s=%q is not one of %v", where, a.Name.Local, a.Value, spec.values)
		}
	}
	for k, spec := range el.attrs {
		if _, ok := n.attr(k); spec.required && !ok {
			t.Errorf("%s: required attribute %s missing", where, k)
		}
	}
	// Children: in schema order, within their counts.
	i := 0
	for _, c := range el.children {
		count := 0
		for i < len(n.Nodes) && slices.Contains(strings.Split(c.name, "|"), n.Nodes[i].XMLName.Local) {
			checkSchema(t, where, &n.Nodes[i])
			count++
			i++
		}
		if count < c.min || c.max >= 0 && count > c.max {
			t.Errorf("%s: %d %s, want %d to %d", where, count, c.name, c.min, c.max)
		}
	}
	if i < len(n.Nodes) {
		t.Errorf("%s: unexpected element %s at position %d", where, n.Nodes[i].XMLName.Local, i)
	}
}

// TestDICOMExportStructure parses the DICOM export and checks each
// AuditMessage against the PS3.15 A.5.1 schema's elements, attributes,
// order and value sets, and that it identifies the event, the requesting
// user, the audit source, the patient and the study.
func TestDICOMExportStructure(t *testing.T) {
	rs := exportRecords()
	out := exportBytes(t, FormatDICOM, Source{Facility: "fac-a", Site: "site-1"}, rs)
	var root xnode
	if err := xml.Unmarshal(out, &root); err != nil {
		t.Fatalf("export is not XML: %v", err)
	}
	msgs := root.children("AuditMessage")
	if root.XMLName.Local != "AuditMessages" || len(msgs) != len(rs) || len(root.Nodes) != len(rs) {
		t.Fatalf("root %s with %d AuditMessage of %d elements, want %d", root.XMLName.Local, len(msgs), len(root.Nodes), len(rs))
	}
	for i, m := range msgs {
		r := rs[i]
		where := fmt.Sprintf("record %d", i)
		checkSchema(t, where, m)
		ei := m.children("EventIdentification")[0]
		if id := ei.children("EventID"); len(id) != 1 || attrOf(id[0], "csd-code") != string(r.Event) || attrOf(id[0], "codeSystemName") != "DCM" {
			t.Errorf("%s: EventID %+v", where, id)
		}
		if attrOf(ei, "EventActionCode") != string(r.Action) || attrOf(ei, "EventOutcomeIndicator") != strconv.Itoa(r.Outcome.Code()) {
			t.Errorf("%s: EventIdentification %v", where, ei.Attrs)
		}
		if dt, _ := time.Parse(time.RFC3339Nano, attrOf(ei, "EventDateTime")); !dt.Equal(r.Time) {
			t.Errorf("%s: EventDateTime %s, want %v", where, attrOf(ei, "EventDateTime"), r.Time)
		}
		if src := m.children("AuditSourceIdentification")[0]; attrOf(src, "AuditSourceID") != "fac-a" || attrOf(src, "AuditEnterpriseSiteID") != "site-1" {
			t.Errorf("%s: audit source %v", where, src.Attrs)
		}
		var requestors []string
		for _, p := range m.children("ActiveParticipant") {
			if attrOf(p, "UserIsRequestor") == "true" {
				requestors = append(requestors, attrOf(p, "UserID"))
			}
		}
		if r.User != "" && !slices.Equal(requestors, []string{r.User}) || r.User == "" && len(requestors) != 0 {
			t.Errorf("%s: requestors %v, want user %q", where, requestors, r.User)
		}
		po := func(typ, role string) []string {
			var ids []string
			for _, o := range m.children("ParticipantObjectIdentification") {
				if attrOf(o, "ParticipantObjectTypeCode") == typ && attrOf(o, "ParticipantObjectTypeCodeRole") == role {
					ids = append(ids, attrOf(o, "ParticipantObjectID"))
				}
			}
			return ids
		}
		var patients []string
		if r.Patient != "" {
			patients = append(patients, patientCX(r.Patient))
		}
		if r.PatientToken != "" {
			patients = append(patients, r.PatientToken)
		}
		if got := po("1", "1"); !slices.Equal(got, patients) {
			t.Errorf("%s: patient objects %q, want %q", where, got, patients)
		}
		var studies []string
		if r.Study != "" {
			studies = []string{r.Study}
		}
		if got := po("2", "3"); !slices.Equal(got, studies) {
			t.Errorf("%s: study objects %q, want %q", where, got, studies)
		}
		for _, o := range m.children("ParticipantObjectIdentification") {
			for _, q := range o.children("ParticipantObjectQuery") {
				b, err := base64.StdEncoding.DecodeString(q.Text)
				if err != nil || string(b) != r.Query {
					t.Errorf("%s: query %q (%v), want %q", where, b, err, r.Query)
				}
			}
		}
	}
}

func attrOf(n *xnode, name string) string { v, _ := n.attr(name); return v }

func TestPatientCX(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"HOSP|123", "123^^^HOSP"},
		{"1.2.3&ISO|9^8", `9\S\8^^^1.2.3\T\ISO`},
		{"|x", `\F\x`},
		{"plain", "plain"},
		{`a\b|c~d`, `c\R\d^^^a\E\b`},
	} {
		if got := patientCX(c.in); got != c.want {
			t.Errorf("patientCX(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestCSVExport parses the CSV export back with encoding/csv: a byte order
// mark, a header row, every value back exactly (quoted
// where it holds commas, quotes or line breaks), and cells a spreadsheet
// would evaluate prefixed with an apostrophe.
func TestCSVExport(t *testing.T) {
	tricky := []string{
		"plain", "Müller, Anna", `say "hi"`, "two\nlines", "a,\"b\"\nc", "=HYPERLINK(\"http://x\",\"y\")",
		"+1", "-2+3", "@SUM(A1)", "\tTAB", "\rCR", "crlf\r\nline", " =space first", "'quoted", "日本語", "",
	}
	var rs []Record
	for i, s := range tricky {
		rs = append(rs, Record{Index: uint64(i), Time: epoch, Event: EventQuery, Action: ActionExecute,
			User: s, Facility: "fac-a", Patient: "HOSP|" + s, Query: s, OutcomeDesc: s, BreakGlass: s})
	}
	out := exportBytes(t, FormatCSV, Source{Facility: "fac-a"}, rs)
	if !bytes.HasPrefix(out, []byte(utf8BOM)) {
		t.Fatalf("no UTF-8 byte order mark: % x", out[:3])
	}
	body := out[len(utf8BOM):]
	if !bytes.HasPrefix(body, []byte(strings.Join(CSVHeader, ",")+"\n")) {
		t.Errorf("header line %q", body[:min(len(body), 80)])
	}
	if !bytes.Contains(body, []byte("crlf\r\nline")) {
		t.Errorf("a CRLF inside a value is not written as it is")
	}
	rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatalf("export does not parse as CSV: %v", err)
	}
	if len(rows) != len(rs)+1 || !slices.Equal(rows[0], CSVHeader) {
		t.Fatalf("%d rows, header %q", len(rows), rows[0])
	}
	col := func(name string) int { return slices.Index(CSVHeader, name) }
	for i, s := range tricky {
		row := rows[i+1]
		want := s
		if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
			want = "'" + s
		}
		// encoding/csv reads a CRLF inside a quoted field as LF.
		want = strings.ReplaceAll(want, "\r\n", "\n")
		for _, c := range []string{"user", "query", "outcome_description", "break_glass_reason"} {
			if got := row[col(c)]; got != want {
				t.Errorf("row %d %s = %q, want %q", i, c, got, want)
			}
		}
		if got, want := row[col("patient")], strings.ReplaceAll("HOSP|"+s, "\r\n", "\n"); got != want {
			t.Errorf("row %d patient = %q, want %q", i, got, want)
		}
		for j, cell := range row {
			if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
				t.Errorf("row %d column %s starts with a formula character: %q", i, CSVHeader[j], cell)
			}
		}
		if row[col("index")] != strconv.Itoa(i) || row[col("event_code")] != "110112" || row[col("time")] != epoch.Format(time.RFC3339Nano) {
			t.Errorf("row %d: %q", i, row[:4])
		}
	}
}

// TestLogExportRecordsReader exports through the Log: every format lists
// the records selected, and the export itself is on the log.
func TestLogExportRecordsReader(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	l := openLog(t, cfg)
	defer l.Close()
	fill(t, l, 30)
	for _, f := range []Format{FormatCSV, FormatFHIR, FormatDICOM} {
		var b bytes.Buffer
		before := l.Size()
		if err := l.Export(context.Background(), reader, Query{User: "user3"}, f, &b); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if l.Size() != before+1 {
			t.Fatalf("%s: export not recorded", f)
		}
		var n int
		switch f {
		case FormatCSV:
			rows, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(b.String(), utf8BOM))).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			n = len(rows) - 1
		case FormatFHIR:
			n = len(decodeNDJSON(t, b.Bytes()))
		case FormatDICOM:
			var root xnode
			if err := xml.Unmarshal(b.Bytes(), &root); err != nil {
				t.Fatal(err)
			}
			n = len(root.children("AuditMessage"))
		}
		if want := 30 / 7; n < want || n > want+1 {
			t.Errorf("%s: %d records exported for user3, want %d or %d", f, n, want, want+1)
		}
	}
}
