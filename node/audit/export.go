package audit

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Format is an export format.
type Format string

// The export formats.
const (
	// FormatCSV is RFC 4180 CSV (fields quoted where they hold a comma, a
	// quote or a line break; records end with LF, which RFC 4180 readers
	// and spreadsheets accept) with a header row (see CSVHeader), in UTF-8 preceded by a
	// byte order mark. The mark is what makes Excel read the file as UTF-8
	// rather than in the legacy code page of the user's locale (which
	// garbles non-ASCII names); LibreOffice, Numbers and Google Sheets
	// accept it too. Programs that read the file must skip it (Python's
	// "utf-8-sig" does; Go's encoding/csv does not). Cells a spreadsheet
	// would evaluate as a formula are neutralised (see CSVHeader).
	FormatCSV Format = "csv"
	// FormatFHIR is FHIR R4 AuditEvent resources, one JSON object per line
	// (NDJSON), following the IHE Basic Audit Log Patterns.
	FormatFHIR Format = "fhir"
	// FormatDICOM is DICOM PS3.15 audit messages (the ATNA schema), as
	// AuditMessage elements inside one AuditMessages root element.
	FormatDICOM Format = "dicom"
)

// ParseFormat parses "csv", "fhir" (or "ndjson") and "dicom" (or "xml").
func ParseFormat(s string) (Format, error) {
	switch s {
	case "csv":
		return FormatCSV, nil
	case "fhir", "ndjson":
		return FormatFHIR, nil
	case "dicom", "xml":
		return FormatDICOM, nil
	}
	return "", fmt.Errorf("audit: unknown export format %q (csv, fhir, dicom)", s)
}

// ContentType is the MIME type of the format.
func (f Format) ContentType() string {
	switch f {
	case FormatCSV:
		return "text/csv; charset=utf-8; header=present"
	case FormatFHIR:
		return "application/fhir+ndjson"
	case FormatDICOM:
		return "application/xml; charset=utf-8"
	}
	return "application/octet-stream"
}

// Source is the audit source named in exports: the facility whose node
// wrote the log.
type Source struct {
	Facility string
	Site     string // optional enterprise site; default Facility
}

// Encoder writes records in an export format.
type Encoder interface {
	Encode(r *Record) error
	// Close writes what the format needs at the end and flushes; it does
	// not close the underlying writer.
	Close() error
}

// NewEncoder returns an Encoder of format f writing to w.
func NewEncoder(w io.Writer, f Format, src Source) (Encoder, error) {
	if src.Site == "" {
		src.Site = src.Facility
	}
	switch f {
	case FormatCSV:
		if _, err := io.WriteString(w, utf8BOM); err != nil {
			return nil, err
		}
		// LF line ends: encoding/csv's CRLF mode drops a carriage return
		// inside a value, and an audit export must not change one.
		e := &csvEncoder{w: csv.NewWriter(w)}
		return e, e.w.Write(CSVHeader)
	case FormatFHIR:
		return &fhirEncoder{enc: json.NewEncoder(w), src: src}, nil
	case FormatDICOM:
		e := &xmlEncoder{w: w, enc: xml.NewEncoder(w), src: src}
		if _, err := io.WriteString(w, xml.Header+"<AuditMessages>\n"); err != nil {
			return nil, err
		}
		return e, nil
	}
	return nil, fmt.Errorf("audit: unknown export format %q", f)
}

// Export writes the records q selects in format f, after appending a record
// of the export by a.
func (l *Log) Export(ctx context.Context, a Actor, q Query, f Format, w io.Writer) error {
	enc, err := NewEncoder(w, f, Source{Facility: l.cfg.Facility})
	if err != nil {
		return err
	}
	if err := l.each(ctx, a, "export "+string(f), q, enc.Encode); err != nil {
		return err
	}
	return enc.Close()
}

// utf8BOM starts a CSV export (see FormatCSV).
const utf8BOM = "\ufeff"

// CSVHeader is the CSV export's header row. A cell whose text starts with
// =, +, -, @, a tab or a carriage return (which a spreadsheet would take
// for a formula) is written with a leading apostrophe, which spreadsheets
// display as text; the value is otherwise unchanged.
var CSVHeader = []string{
	"index", "time", "event_code", "event", "subtype", "action", "outcome", "outcome_code",
	"outcome_description", "user", "user_role", "facility", "peer", "address",
	"patient", "patient_token", "study", "purpose", "break_glass_reason", "query",
}

type csvEncoder struct{ w *csv.Writer }

// cell defuses spreadsheet formulas: a cell that a spreadsheet would
// evaluate (starting with = + - @, tab or carriage return) gets a leading
// apostrophe, which spreadsheets show as text.
func cell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func (e *csvEncoder) Encode(r *Record) error {
	sub := r.Subtype.Code
	if r.Subtype.System != "" {
		sub = r.Subtype.System + "#" + r.Subtype.Code
	}
	row := []string{
		strconv.FormatUint(r.Index, 10), r.Time.UTC().Format(time.RFC3339Nano), string(r.Event),
		r.Event.Display(), sub, string(r.Action), r.Outcome.String(), strconv.Itoa(r.Outcome.Code()),
		r.OutcomeDesc, r.User, r.UserRole, r.Facility, r.Peer, r.Address,
		r.Patient, r.PatientToken, r.Study, r.Purpose, r.BreakGlass, r.Query,
	}
	for i := range row {
		row[i] = cell(row[i])
	}
	return e.w.Write(row)
}

func (e *csvEncoder) Close() error { e.w.Flush(); return e.w.Error() }

// Code systems used in the FHIR and DICOM exports.
const (
	systemDCM            = "http://dicom.nema.org/resources/ontology/DCM"
	systemActReason      = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	systemParticipation  = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
	systemSourceType     = "http://terminology.hl7.org/CodeSystem/security-source-type"
	systemEntityType     = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	systemObjectRole     = "http://terminology.hl7.org/CodeSystem/object-role"
	systemLifecycle      = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
	systemPatientToken   = "urn:dicomesh:patient-token"
	systemFacility       = "urn:dicomesh:facility"
	systemDICOMUID       = "urn:dicom:uid"
	systemPurposeOfUseV3 = "2.16.840.1.113883.5.8" // the HL7 v3 ActReason OID, for DICOM XML
)

type fhirCoding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

type fhirConcept struct {
	Coding []fhirCoding `json:"coding,omitempty"`
	Text   string       `json:"text,omitempty"`
}

type fhirIdentifier struct {
	Type   *fhirConcept `json:"type,omitempty"`
	System string       `json:"system,omitempty"`
	Value  string       `json:"value"`
}

type fhirReference struct {
	Identifier *fhirIdentifier `json:"identifier,omitempty"`
	Display    string          `json:"display,omitempty"`
}

type fhirNetwork struct {
	Address string `json:"address"`
	Type    string `json:"type"`
}

type fhirAgent struct {
	Type         *fhirConcept   `json:"type,omitempty"`
	Role         []fhirConcept  `json:"role,omitempty"`
	Who          *fhirReference `json:"who,omitempty"`
	Requestor    bool           `json:"requestor"`
	Network      *fhirNetwork   `json:"network,omitempty"`
	PurposeOfUse []fhirConcept  `json:"purposeOfUse,omitempty"`
}

type fhirSource struct {
	Site     string        `json:"site,omitempty"`
	Observer fhirReference `json:"observer"`
	Type     []fhirCoding  `json:"type,omitempty"`
}

type fhirEntity struct {
	What  *fhirReference `json:"what,omitempty"`
	Type  *fhirCoding    `json:"type,omitempty"`
	Role  *fhirCoding    `json:"role,omitempty"`
	Query string         `json:"query,omitempty"` // base64
}

type fhirAuditEvent struct {
	ResourceType   string        `json:"resourceType"`
	ID             string        `json:"id"`
	Type           fhirCoding    `json:"type"`
	Subtype        []fhirCoding  `json:"subtype,omitempty"`
	Action         string        `json:"action"`
	Recorded       string        `json:"recorded"`
	Outcome        string        `json:"outcome"`
	OutcomeDesc    string        `json:"outcomeDesc,omitempty"`
	PurposeOfEvent []fhirConcept `json:"purposeOfEvent,omitempty"`
	Agent          []fhirAgent   `json:"agent"`
	Source         fhirSource    `json:"source"`
	Entity         []fhirEntity  `json:"entity,omitempty"`
}

type fhirEncoder struct {
	enc *json.Encoder
	src Source
}

// resourceID is a FHIR id unique per facility and record.
func resourceID(facility string, index uint64) string {
	h := sha256.Sum256([]byte(facility))
	return fmt.Sprintf("dicomesh-%s-%d", hex.EncodeToString(h[:8]), index)
}

func networkType(addr string) string {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	if net.ParseIP(host) != nil {
		return "2" // IP address
	}
	return "1" // machine name
}

func purposes(r *Record) []fhirConcept {
	var out []fhirConcept
	if r.Purpose != "" {
		out = append(out, fhirConcept{Coding: []fhirCoding{{System: systemActReason, Code: r.Purpose}}})
	}
	if r.BreakGlass != "" {
		out = append(out, fhirConcept{Coding: []fhirCoding{{System: systemActReason, Code: "BTG", Display: "break the glass"}}, Text: r.BreakGlass})
	}
	return out
}

// FHIRAuditEvent returns r as a FHIR R4 AuditEvent (as JSON), observed by
// src.
func FHIRAuditEvent(r *Record, src Source) ([]byte, error) {
	return json.Marshal(fhirEvent(r, src))
}

func fhirEvent(r *Record, src Source) *fhirAuditEvent {
	if src.Site == "" {
		src.Site = src.Facility
	}
	ev := &fhirAuditEvent{
		ResourceType:   "AuditEvent",
		ID:             resourceID(src.Facility, r.Index),
		Type:           fhirCoding{System: systemDCM, Code: string(r.Event), Display: r.Event.Display()},
		Action:         string(r.Action),
		Recorded:       r.Time.UTC().Format(time.RFC3339Nano),
		Outcome:        strconv.Itoa(r.Outcome.Code()),
		OutcomeDesc:    r.OutcomeDesc,
		PurposeOfEvent: purposes(r),
		Source: fhirSource{
			Site:     src.Site,
			Observer: fhirReference{Identifier: &fhirIdentifier{System: systemFacility, Value: src.Facility}},
			Type:     []fhirCoding{{System: systemSourceType, Code: "4", Display: "Application Server"}},
		},
	}
	if r.Outcome == Denied && ev.OutcomeDesc == "" {
		ev.OutcomeDesc = "denied"
	}
	if disclosure(r) {
		ev.Subtype = append(ev.Subtype, fhirCoding{System: systemLifecycle, Code: "disclose", Display: "Disclose Record Lifecycle Event"})
	}
	if r.Subtype.Code != "" {
		sys := r.Subtype.System
		if sys == "DCM" {
			sys = systemDCM
		}
		ev.Subtype = append(ev.Subtype, fhirCoding{System: sys, Code: r.Subtype.Code, Display: r.Subtype.Display})
	}
	if r.User != "" {
		a := fhirAgent{
			Type:         &fhirConcept{Coding: []fhirCoding{{System: systemParticipation, Code: "IRCP", Display: "information recipient"}}},
			Who:          &fhirReference{Identifier: &fhirIdentifier{System: facilitySystem(r.Facility), Value: r.User}},
			Requestor:    true,
			PurposeOfUse: purposes(r),
		}
		if r.UserRole != "" {
			a.Role = []fhirConcept{{Text: r.UserRole}}
		}
		if r.Address != "" {
			a.Network = &fhirNetwork{Address: r.Address, Type: networkType(r.Address)}
		}
		ev.Agent = append(ev.Agent, a)
	}
	source, dest := flow(r, src.Facility)
	if source != "" {
		ev.Agent = append(ev.Agent, fhirFacilityAgent(r, src.Facility, source, "110153", "Source Role ID"))
	}
	if dest != "" {
		ev.Agent = append(ev.Agent, fhirFacilityAgent(r, src.Facility, dest, "110152", "Destination Role ID"))
	}
	if len(ev.Agent) == 0 {
		// FHIR requires an agent: the node itself.
		ev.Agent = []fhirAgent{{
			Type: &fhirConcept{Coding: []fhirCoding{{System: systemDCM, Code: "110150", Display: "Application"}}},
			Who:  &fhirReference{Identifier: &fhirIdentifier{System: systemFacility, Value: src.Facility}},
		}}
	}
	person := &fhirCoding{System: systemEntityType, Code: "1", Display: "Person"}
	patient := &fhirCoding{System: systemObjectRole, Code: "1", Display: "Patient"}
	if r.Patient != "" {
		ev.Entity = append(ev.Entity, fhirEntity{What: &fhirReference{Identifier: patientIdentifier(r.Patient)}, Type: person, Role: patient})
	}
	if r.PatientToken != "" {
		ev.Entity = append(ev.Entity, fhirEntity{What: &fhirReference{Identifier: &fhirIdentifier{System: systemPatientToken, Value: r.PatientToken}}, Type: person, Role: patient})
	}
	if r.Study != "" {
		ev.Entity = append(ev.Entity, fhirEntity{
			What: &fhirReference{Identifier: &fhirIdentifier{
				Type:   &fhirConcept{Coding: []fhirCoding{{System: systemDCM, Code: "110180", Display: "Study Instance UID"}}},
				System: systemDICOMUID, Value: "urn:oid:" + r.Study,
			}},
			Type: &fhirCoding{System: systemEntityType, Code: "2", Display: "System Object"},
			Role: &fhirCoding{System: systemObjectRole, Code: "3", Display: "Report"},
		})
	}
	if r.Query != "" {
		ev.Entity = append(ev.Entity, fhirEntity{
			Type:  &fhirCoding{System: systemEntityType, Code: "2", Display: "System Object"},
			Role:  &fhirCoding{System: systemObjectRole, Code: "24", Display: "Query"},
			Query: base64.StdEncoding.EncodeToString([]byte(r.Query)),
		})
	}
	return ev
}

// disclosure reports whether r records data leaving for or arriving from
// another facility: an IHE BALP privacy disclosure, recorded at the source
// as an export and at the recipient as an import.
func disclosure(r *Record) bool {
	return (r.Event == EventExport || r.Event == EventImport) && r.Peer != ""
}

// flow returns the facilities data moved from and to in r, the event's
// source (DCM 110153) and destination (DCM 110152); self is the facility
// whose node wrote the log, and either may be "". An export moves data
// from self to the peer; an import, or any other event with a peer (the
// owner asked for access), from the peer to self; any other event from
// self to the requesting facility if that is another one. A disclosure
// recorded at both ends so names the same source and destination.
func flow(r *Record, self string) (source, dest string) {
	switch {
	case r.Event == EventExport:
		return self, r.Peer
	case r.Event == EventImport, r.Peer != "":
		return r.Peer, self
	case r.Facility != self:
		return self, r.Facility
	}
	return self, ""
}

// remoteAddress returns r's network address if it is the address of
// facility fac: the address of the requesting facility, when that is not
// this node.
func remoteAddress(r *Record, self, fac string) string {
	if r.Address != "" && fac == r.Facility && fac != self {
		return r.Address
	}
	return ""
}

// fhirFacilityAgent is the agent of a facility in role code: its network
// is the requester's address when known, else the facility's URN (a URI).
func fhirFacilityAgent(r *Record, self, fac, code, display string) fhirAgent {
	a := fhirAgent{
		Type: &fhirConcept{Coding: []fhirCoding{{System: systemDCM, Code: code, Display: display}}},
		Who:  &fhirReference{Identifier: &fhirIdentifier{System: systemFacility, Value: fac}},
	}
	if addr := remoteAddress(r, self, fac); addr != "" {
		a.Network = &fhirNetwork{Address: addr, Type: networkType(addr)}
	} else {
		a.Network = &fhirNetwork{Address: systemFacility + ":" + fac, Type: "5"}
	}
	return a
}

func facilitySystem(facility string) string {
	if facility == "" {
		return ""
	}
	return systemFacility + ":" + facility
}

// patientIdentifier splits an issuer-qualified ID "issuer|id" into a FHIR
// identifier whose system names the issuer.
func patientIdentifier(qualified string) *fhirIdentifier {
	if issuer, id, ok := strings.Cut(qualified, "|"); ok && issuer != "" {
		return &fhirIdentifier{System: "urn:dicomesh:issuer:" + issuer, Value: id}
	}
	return &fhirIdentifier{Value: qualified}
}

func (e *fhirEncoder) Encode(r *Record) error { return e.enc.Encode(fhirEvent(r, e.src)) }
func (e *fhirEncoder) Close() error           { return nil }

// DICOM PS3.15 audit message (A.5). Element and attribute names follow the
// DICOM audit message schema.
type dcmCode struct {
	Code     string `xml:"csd-code,attr"`
	System   string `xml:"codeSystemName,attr"`
	Display  string `xml:"displayName,attr,omitempty"`
	Original string `xml:"originalText,attr"` // required by the schema
}

type dcmEventIdentification struct {
	ActionCode   string    `xml:"EventActionCode,attr"`
	DateTime     string    `xml:"EventDateTime,attr"`
	Outcome      int       `xml:"EventOutcomeIndicator,attr"`
	EventID      dcmCode   `xml:"EventID"`
	EventType    []dcmCode `xml:"EventTypeCode"`
	OutcomeDesc  string    `xml:"EventOutcomeDescription,omitempty"`
	PurposeOfUse []dcmCode `xml:"PurposeOfUse"`
}

type dcmActiveParticipant struct {
	UserID          string    `xml:"UserID,attr"`
	UserIsRequestor bool      `xml:"UserIsRequestor,attr"`
	AccessPointID   string    `xml:"NetworkAccessPointID,attr,omitempty"`
	AccessPointType string    `xml:"NetworkAccessPointTypeCode,attr,omitempty"`
	RoleIDCode      []dcmCode `xml:"RoleIDCode"`
}

type dcmAuditSource struct {
	SiteID   string  `xml:"AuditEnterpriseSiteID,attr,omitempty"`
	SourceID string  `xml:"AuditSourceID,attr"`
	Type     dcmCode `xml:"AuditSourceTypeCode"`
}

type dcmParticipantObject struct {
	ID       string  `xml:"ParticipantObjectID,attr"`
	TypeCode int     `xml:"ParticipantObjectTypeCode,attr"`
	Role     int     `xml:"ParticipantObjectTypeCodeRole,attr"`
	IDType   dcmCode `xml:"ParticipantObjectIDTypeCode"`
	Query    string  `xml:"ParticipantObjectQuery,omitempty"`
}

type dcmAuditMessage struct {
	XMLName             xml.Name               `xml:"AuditMessage"`
	EventIdentification dcmEventIdentification `xml:"EventIdentification"`
	ActiveParticipant   []dcmActiveParticipant `xml:"ActiveParticipant"`
	AuditSource         dcmAuditSource         `xml:"AuditSourceIdentification"`
	ParticipantObject   []dcmParticipantObject `xml:"ParticipantObjectIdentification"`
}

// DICOMAuditMessage returns r as a DICOM PS3.15 AuditMessage element.
func DICOMAuditMessage(r *Record, src Source) ([]byte, error) {
	return xml.Marshal(dicomMessage(r, src))
}

func dicomMessage(r *Record, src Source) *dcmAuditMessage {
	if src.Site == "" {
		src.Site = src.Facility
	}
	m := &dcmAuditMessage{
		EventIdentification: dcmEventIdentification{
			ActionCode:  string(r.Action),
			DateTime:    r.Time.UTC().Format(time.RFC3339Nano),
			Outcome:     r.Outcome.Code(),
			EventID:     dcmCode{Code: string(r.Event), System: "DCM", Original: r.Event.Display()},
			OutcomeDesc: r.OutcomeDesc,
		},
		AuditSource: dcmAuditSource{SiteID: src.Site, SourceID: src.Facility,
			Type: dcmCode{Code: "4", System: "RFC-3881", Original: "Application Server"}},
	}
	ei := &m.EventIdentification
	if r.Outcome == Denied && ei.OutcomeDesc == "" {
		ei.OutcomeDesc = "denied"
	}
	if r.Subtype.Code != "" {
		sys := r.Subtype.System
		if sys == systemDCM {
			sys = "DCM"
		}
		orig := r.Subtype.Display
		if orig == "" {
			orig = r.Subtype.Code
		}
		ei.EventType = []dcmCode{{Code: r.Subtype.Code, System: sys, Original: orig}}
	}
	if r.Purpose != "" {
		ei.PurposeOfUse = append(ei.PurposeOfUse, dcmCode{Code: r.Purpose, System: systemPurposeOfUseV3, Original: r.Purpose})
	}
	if r.BreakGlass != "" {
		ei.PurposeOfUse = append(ei.PurposeOfUse, dcmCode{Code: "BTG", System: systemPurposeOfUseV3, Original: r.BreakGlass})
	}
	if r.User != "" {
		p := dcmActiveParticipant{UserID: r.User, UserIsRequestor: true}
		if r.Address != "" {
			p.AccessPointID, p.AccessPointType = r.Address, networkType(r.Address)
		}
		if r.UserRole != "" {
			p.RoleIDCode = []dcmCode{{Code: r.UserRole, System: "dicomesh", Original: r.UserRole}}
		}
		m.ActiveParticipant = append(m.ActiveParticipant, p)
	}
	source, dest := flow(r, src.Facility)
	for _, p := range []struct{ fac, code, name string }{{source, "110153", "Source Role ID"}, {dest, "110152", "Destination Role ID"}} {
		if p.fac == "" {
			continue
		}
		ap := dcmActiveParticipant{UserID: p.fac, RoleIDCode: []dcmCode{{Code: p.code, System: "DCM", Original: p.name}}}
		if addr := remoteAddress(r, src.Facility, p.fac); addr != "" {
			ap.AccessPointID, ap.AccessPointType = addr, networkType(addr)
		}
		m.ActiveParticipant = append(m.ActiveParticipant, ap)
	}
	if len(m.ActiveParticipant) == 0 {
		m.ActiveParticipant = []dcmActiveParticipant{{UserID: src.Facility,
			RoleIDCode: []dcmCode{{Code: "110150", System: "DCM", Original: "Application"}}}}
	}
	if r.Patient != "" {
		m.ParticipantObject = append(m.ParticipantObject, dcmParticipantObject{ID: patientCX(r.Patient), TypeCode: 1, Role: 1,
			IDType: dcmCode{Code: "2", System: "RFC-3881", Original: "Patient Number"}})
	}
	if r.PatientToken != "" {
		m.ParticipantObject = append(m.ParticipantObject, dcmParticipantObject{ID: r.PatientToken, TypeCode: 1, Role: 1,
			IDType: dcmCode{Code: "2", System: "RFC-3881", Original: "Patient Number (token)"}})
	}
	if r.Study != "" {
		m.ParticipantObject = append(m.ParticipantObject, dcmParticipantObject{ID: r.Study, TypeCode: 2, Role: 3,
			IDType: dcmCode{Code: "110180", System: "DCM", Original: "Study Instance UID"}})
	}
	if r.Query != "" {
		m.ParticipantObject = append(m.ParticipantObject, dcmParticipantObject{ID: "query", TypeCode: 2, Role: 24,
			IDType: dcmCode{Code: "110112", System: "DCM", Original: "Query"},
			Query:  base64.StdEncoding.EncodeToString([]byte(r.Query))})
	}
	return m
}

// patientCX writes an issuer-qualified patient ID ("issuer|id") as an HL7
// v2 CX value, "id^^^issuer", the form ATNA audit messages give patient
// IDs in, escaping the HL7 delimiters.
func patientCX(qualified string) string {
	if issuer, id, ok := strings.Cut(qualified, "|"); ok && issuer != "" {
		return hl7Escaper.Replace(id) + "^^^" + hl7Escaper.Replace(issuer)
	}
	return hl7Escaper.Replace(qualified)
}

var hl7Escaper = strings.NewReplacer(`\`, `\E\`, "|", `\F\`, "^", `\S\`, "&", `\T\`, "~", `\R\`)

type xmlEncoder struct {
	w   io.Writer
	enc *xml.Encoder
	src Source
}

func (e *xmlEncoder) Encode(r *Record) error {
	if err := e.enc.Encode(dicomMessage(r, e.src)); err != nil {
		return err
	}
	_, err := io.WriteString(e.w, "\n")
	return err
}

func (e *xmlEncoder) Close() error {
	_, err := io.WriteString(e.w, "</AuditMessages>\n")
	return err
}
