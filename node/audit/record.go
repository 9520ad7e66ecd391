package audit

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/dicomesh/dicomesh/crypto/canon"
)

// MaxRecordSize bounds the canonical encoding of one record. A frame header
// that declares more is never something this package wrote.
const MaxRecordSize = 64 << 10

// Event is a DICOM audit event ID (PS3.15 A.5.3, code system DCM), the
// "type" of a FHIR AuditEvent.
type Event string

// The DICOM audit events dicomesh records.
const (
	EventApplicationActivity Event = "110100" // node start and stop
	EventAuditLogUsed        Event = "110101" // the audit log was read
	EventBeginTransfer       Event = "110102" // transfer of instances began
	EventInstancesAccessed   Event = "110103" // DICOM instances created, read, updated or deleted
	EventInstancesTransfer   Event = "110104" // DICOM instances transferred
	EventStudyDeleted        Event = "110105" // a study was deleted
	EventExport              Event = "110106" // data left the facility
	EventImport              Event = "110107" // data entered the facility
	EventNetworkEntry        Event = "110108" // a node joined or left the network
	EventOrderRecord         Event = "110109" // an order was used
	EventPatientRecord       Event = "110110" // a patient record was used
	EventProcedureRecord     Event = "110111" // a procedure record was used
	EventQuery               Event = "110112" // a query was issued
	EventSecurityAlert       Event = "110113" // a security-relevant event
	EventUserAuthentication  Event = "110114" // a user logged in or out
)

var eventNames = map[Event]string{
	EventApplicationActivity: "Application Activity",
	EventAuditLogUsed:        "Audit Log Used",
	EventBeginTransfer:       "Begin Transferring DICOM Instances",
	EventInstancesAccessed:   "DICOM Instances Accessed",
	EventInstancesTransfer:   "DICOM Instances Transferred",
	EventStudyDeleted:        "DICOM Study Deleted",
	EventExport:              "Export",
	EventImport:              "Import",
	EventNetworkEntry:        "Network Entry",
	EventOrderRecord:         "Order Record",
	EventPatientRecord:       "Patient Record",
	EventProcedureRecord:     "Procedure Record",
	EventQuery:               "Query",
	EventSecurityAlert:       "Security Alert",
	EventUserAuthentication:  "User Authentication",
}

// Valid reports whether e is one of the events above.
func (e Event) Valid() bool { _, ok := eventNames[e]; return ok }

// Display is the DCM display name of the event, or "" for an unknown code.
func (e Event) Display() string { return eventNames[e] }

// Action is what was done to the data: Create, Read, Update, Delete or
// Execute (the FHIR audit-event-action and DICOM EventActionCode values).
type Action string

// The actions.
const (
	ActionCreate  Action = "C"
	ActionRead    Action = "R"
	ActionUpdate  Action = "U"
	ActionDelete  Action = "D"
	ActionExecute Action = "E"
)

// Valid reports whether a is one of the five actions.
func (a Action) Valid() bool {
	switch a {
	case ActionCreate, ActionRead, ActionUpdate, ActionDelete, ActionExecute:
		return true
	}
	return false
}

// Outcome is how the event ended. Denied is a refusal by policy (consent,
// membership, authentication); it is exported as a minor failure with the
// description "denied", since ATNA and FHIR have no code of its own.
type Outcome uint8

// The outcomes. The zero value is Success.
const (
	Success        Outcome = iota // 0 in ATNA and FHIR
	MinorFailure                  // 4
	SeriousFailure                // 8
	MajorFailure                  // 12
	Denied                        // 4, "denied"
	numOutcomes
)

var outcomeNames = [...]string{"success", "minor-failure", "serious-failure", "major-failure", "denied"}

// String returns the outcome's name: success, minor-failure,
// serious-failure, major-failure or denied.
func (o Outcome) String() string {
	if o < numOutcomes {
		return outcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// MarshalText encodes the outcome as its name.
func (o Outcome) MarshalText() ([]byte, error) {
	if o >= numOutcomes {
		return nil, fmt.Errorf("%w: unknown outcome %d", ErrInvalidRecord, o)
	}
	return []byte(o.String()), nil
}

// UnmarshalText parses an outcome name.
func (o *Outcome) UnmarshalText(b []byte) error {
	v, err := ParseOutcome(string(b))
	*o = v
	return err
}

// ParseOutcome is the inverse of String.
func ParseOutcome(s string) (Outcome, error) {
	for i, n := range outcomeNames {
		if n == s {
			return Outcome(i), nil
		}
	}
	return 0, fmt.Errorf("%w: unknown outcome %q", ErrInvalidRecord, s)
}

// Code is the ATNA/FHIR outcome code: 0, 4, 8 or 12.
func (o Outcome) Code() int {
	switch o {
	case MinorFailure, Denied:
		return 4
	case SeriousFailure:
		return 8
	case MajorFailure:
		return 12
	}
	return 0
}

// Coded is a coded value (system, code, display), such as an event subtype.
type Coded struct {
	System  string `json:"system,omitempty"` // a URI, or "DCM" for the DICOM code system
	Code    string `json:"code,omitempty"`
	Display string `json:"display,omitempty"`
}

// Event type codes (DICOM PS3.16 CID 401) the node uses as subtypes.
var (
	SubtypeApplicationStart = Coded{System: "DCM", Code: "110120", Display: "Application Start"}
	SubtypeApplicationStop  = Coded{System: "DCM", Code: "110121", Display: "Application Stop"}
)

// ErrInvalidRecord reports a record that Append refuses: an unknown event or
// action, a missing field, invalid UTF-8 or an oversized record.
var ErrInvalidRecord = errors.New("audit: invalid record")

// Record is one audit event, with the fields of an ATNA audit message and a
// FHIR AuditEvent (IHE BALP).
//
// Who: User acted from Facility (the requesting facility; this node's own
// facility for local users). Peer is the other facility involved, if any:
// the recipient of an export, the source of an import, the owner asked for
// access. The node that writes the log is the audit source and observer; it
// is not repeated in each record.
//
// What: Patient is the issuer-qualified patient ID ("issuer|id") where the
// patient is known locally; PatientToken is the patient token used across
// facilities. Study is a Study Instance UID. Query is the query text of a
// query event.
//
// Why: Purpose is an HL7 v3 PurposeOfUse code (TREAT, ETREAT ...).
// BreakGlass, when not empty, is the reason given for emergency access that
// overrode policy.
type Record struct {
	// Index is the record's position in the log, from 0. It is not part of
	// the encoding: the position is fixed by the Merkle tree.
	Index uint64 `json:"index"`
	// Time is when the record was appended, in UTC, set by Append from
	// Config.Now.
	Time time.Time `json:"time"`

	Event   Event   `json:"event"`
	Subtype Coded   `json:"subtype,omitzero"` // optional event type code, e.g. DCM 110122 Login
	Action  Action  `json:"action"`
	Outcome Outcome `json:"outcome"`
	// OutcomeDesc is free text describing a failure or denial.
	OutcomeDesc string `json:"outcomeDesc,omitempty"`

	User     string `json:"user,omitempty"`
	UserRole string `json:"userRole,omitempty"` // optional role, e.g. a DICOM or HL7 role code
	Facility string `json:"facility,omitempty"`
	Peer     string `json:"peer,omitempty"`
	Address  string `json:"address,omitempty"` // network address of the requesting peer, if known

	Patient      string `json:"patient,omitempty"`
	PatientToken string `json:"patientToken,omitempty"`
	Study        string `json:"study,omitempty"`
	Purpose      string `json:"purpose,omitempty"`
	BreakGlass   string `json:"breakGlass,omitempty"`
	Query        string `json:"query,omitempty"`
}

// Canonical encoding tags. Append only; never renumber.
const (
	tagTime = iota + 1
	tagEvent
	tagSubtype
	tagAction
	tagOutcome
	tagOutcomeDesc
	tagUser
	tagUserRole
	tagFacility
	tagPeer
	tagAddress
	tagPatient
	tagPatientToken
	tagStudy
	tagPurpose
	tagBreakGlass
	tagQuery
)

// MarshalCanonical implements canon.Marshaler. Index is not encoded.
func (r *Record) MarshalCanonical(e *canon.Encoder) {
	e.Int(tagTime, r.Time.UnixNano())
	e.String(tagEvent, string(r.Event))
	e.Message(tagSubtype, &r.Subtype)
	e.String(tagAction, string(r.Action))
	e.Uint(tagOutcome, uint64(r.Outcome))
	e.String(tagOutcomeDesc, r.OutcomeDesc)
	e.String(tagUser, r.User)
	e.String(tagUserRole, r.UserRole)
	e.String(tagFacility, r.Facility)
	e.String(tagPeer, r.Peer)
	e.String(tagAddress, r.Address)
	e.String(tagPatient, r.Patient)
	e.String(tagPatientToken, r.PatientToken)
	e.String(tagStudy, r.Study)
	e.String(tagPurpose, r.Purpose)
	e.String(tagBreakGlass, r.BreakGlass)
	e.String(tagQuery, r.Query)
}

// UnmarshalCanonical implements canon.Unmarshaler; it rejects records that
// Validate rejects.
func (r *Record) UnmarshalCanonical(d *canon.Decoder) {
	r.Time = time.Unix(0, d.Int(tagTime)).UTC()
	r.Event = Event(d.String(tagEvent))
	d.Message(tagSubtype, &r.Subtype)
	r.Action = Action(d.String(tagAction))
	r.Outcome = Outcome(d.Uint(tagOutcome))
	r.OutcomeDesc = d.String(tagOutcomeDesc)
	r.User = d.String(tagUser)
	r.UserRole = d.String(tagUserRole)
	r.Facility = d.String(tagFacility)
	r.Peer = d.String(tagPeer)
	r.Address = d.String(tagAddress)
	r.Patient = d.String(tagPatient)
	r.PatientToken = d.String(tagPatientToken)
	r.Study = d.String(tagStudy)
	r.Purpose = d.String(tagPurpose)
	r.BreakGlass = d.String(tagBreakGlass)
	r.Query = d.String(tagQuery)
	if d.Err() == nil {
		d.Fail(r.Validate())
	}
}

// MarshalCanonical implements canon.Marshaler.
func (c *Coded) MarshalCanonical(e *canon.Encoder) {
	e.String(1, c.System)
	e.String(2, c.Code)
	e.String(3, c.Display)
}

// UnmarshalCanonical implements canon.Unmarshaler.
func (c *Coded) UnmarshalCanonical(d *canon.Decoder) {
	c.System = d.String(1)
	c.Code = d.String(2)
	c.Display = d.String(3)
}

// Validate reports whether r can be appended: a known event and action, a
// known outcome, a time, valid UTF-8 everywhere and at most MaxRecordSize
// bytes encoded. Errors wrap ErrInvalidRecord and name the field, never its
// value.
func (r *Record) Validate() error {
	switch {
	case !r.Event.Valid():
		return fmt.Errorf("%w: unknown event code", ErrInvalidRecord)
	case !r.Action.Valid():
		return fmt.Errorf("%w: unknown action", ErrInvalidRecord)
	case r.Outcome >= numOutcomes:
		return fmt.Errorf("%w: unknown outcome", ErrInvalidRecord)
	case r.Time.IsZero() || r.Time.UnixNano() == 0:
		return fmt.Errorf("%w: no time", ErrInvalidRecord)
	}
	for _, f := range []struct{ name, v string }{
		{"subtype system", r.Subtype.System}, {"subtype code", r.Subtype.Code},
		{"subtype display", r.Subtype.Display}, {"outcome description", r.OutcomeDesc},
		{"user", r.User}, {"user role", r.UserRole}, {"facility", r.Facility},
		{"peer", r.Peer}, {"address", r.Address}, {"patient", r.Patient},
		{"patient token", r.PatientToken}, {"study", r.Study}, {"purpose", r.Purpose},
		{"break-glass reason", r.BreakGlass}, {"query", r.Query},
	} {
		if !utf8.ValidString(f.v) {
			return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidRecord, f.name)
		}
	}
	return nil
}

// encodeRecord returns r's canonical encoding after validating it.
func encodeRecord(r *Record) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	b := canon.Marshal(r)
	if len(b) > MaxRecordSize {
		return nil, fmt.Errorf("%w: %d bytes encoded, more than %d", ErrInvalidRecord, len(b), MaxRecordSize)
	}
	return b, nil
}

// decodeRecord parses a canonical record encoding.
func decodeRecord(b []byte, index uint64) (Record, error) {
	var r Record
	if err := canon.Unmarshal(b, &r); err != nil {
		return Record{}, err
	}
	r.Index = index
	return r, nil
}
