package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dicomesh/dicomesh/node"
	"github.com/dicomesh/dicomesh/node/audit"
)

func auditCmd(e *env) *cobra.Command {
	c := &cobra.Command{
		Use:   "audit",
		Short: "Review, verify and export the facility's tamper-evident audit trail",
		Long: `The audit trail records every query, import, export, read, request, grant,
denial and transfer, before the operation proceeds. Reading it is recorded too:
search, flags, export and verify each add an "Audit Log Used" record naming
the reader (--as, default the operating-system user).`,
	}
	c.AddCommand(auditSearchCmd(e), auditFlagsCmd(e), auditExportCmd(e), auditVerifyCmd(e))
	return c
}

// auditFilter holds the selection flags shared by search, flags and export.
type auditFilter struct {
	patientID, issuer, patient string
	user, facility, purpose    string
	event, action, outcome     string
	since, until               string
	breakGlass, newest         bool
	limit                      int
}

func (f *auditFilter) add(c *cobra.Command) {
	fl := c.Flags()
	fl.StringVar(&f.patientID, "patient-id", "", "patient ID (with --issuer)")
	fl.StringVar(&f.issuer, "issuer", "", "issuer of the patient ID")
	fl.StringVar(&f.patient, "patient", "", "patient as ISSUER|ID, or a patient token")
	fl.StringVar(&f.user, "user", "", "records of this user")
	fl.StringVar(&f.facility, "facility", "", "records where this facility acted or was the peer")
	fl.StringVar(&f.purpose, "purpose", "", "purpose of use, e.g. TREAT or ETREAT")
	fl.StringVar(&f.event, "event", "", "DICOM event code, e.g. 110112 (query) or 110106 (export)")
	fl.StringVar(&f.action, "action", "", "action: C, R, U, D or E")
	fl.StringVar(&f.outcome, "outcome", "", "outcomes, comma-separated: success, minor-failure, serious-failure, major-failure, denied")
	fl.StringVar(&f.since, "since", "", "records at or after this time (RFC 3339 or YYYY-MM-DD)")
	fl.StringVar(&f.until, "until", "", "records before this time (RFC 3339 or YYYY-MM-DD)")
	fl.BoolVar(&f.breakGlass, "break-glass", false, "only break-glass records")
	fl.BoolVar(&f.newest, "newest", false, "newest first")
	fl.IntVar(&f.limit, "limit", 0, "at most this many records (0: all)")
}

// query turns the flags into an audit.Query with the package's own parser,
// so that the command line and the HTTP API read filters alike.
func (f *auditFilter) query() (audit.Query, error) {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	patient := f.patient
	if f.patientID != "" || f.issuer != "" {
		if f.patientID == "" || f.patient != "" {
			return audit.Query{}, usagef("give --patient-id with --issuer, or --patient alone")
		}
		patient = f.issuer + "|" + f.patientID
	}
	set("patient", patient)
	set("user", f.user)
	set("facility", f.facility)
	set("purpose", f.purpose)
	set("event", f.event)
	set("action", f.action)
	set("outcome", f.outcome)
	set("since", f.since)
	set("until", f.until)
	if f.breakGlass {
		v.Set("breakglass", "true")
	}
	if f.newest {
		v.Set("newest", "true")
	}
	if f.limit < 0 {
		return audit.Query{}, usagef("--limit must not be negative")
	}
	if f.limit > 0 {
		v.Set("limit", fmt.Sprint(f.limit))
	}
	q, err := audit.ParseQuery(v)
	if err != nil {
		return audit.Query{}, usageError{err}
	}
	return q, nil
}

// auditRecordJSON is the contract of `audit search -o json`.
type auditRecordJSON struct {
	Index       uint64 `json:"index"`
	Time        string `json:"time"`
	Event       string `json:"event"`
	EventName   string `json:"event_name"`
	Action      string `json:"action"`
	Outcome     string `json:"outcome"`
	OutcomeDesc string `json:"outcome_desc,omitempty"`
	User        string `json:"user"`
	Facility    string `json:"facility"`
	Peer        string `json:"peer"`
	Patient     string `json:"patient"`
	Study       string `json:"study"`
	Purpose     string `json:"purpose"`
	BreakGlass  string `json:"break_glass,omitempty"`
	Query       string `json:"query,omitempty"`
}

func toAuditJSON(r audit.Record) auditRecordJSON {
	p := r.Patient
	if p == "" {
		p = r.PatientToken
	}
	return auditRecordJSON{
		Index: r.Index, Time: r.Time.UTC().Format(time.RFC3339Nano), Event: string(r.Event),
		EventName: r.Event.Display(), Action: string(r.Action), Outcome: r.Outcome.String(),
		OutcomeDesc: r.OutcomeDesc, User: r.User, Facility: r.Facility, Peer: r.Peer,
		Patient: p, Study: r.Study, Purpose: r.Purpose, BreakGlass: r.BreakGlass, Query: r.Query,
	}
}

func auditSearchCmd(e *env) *cobra.Command {
	var f auditFilter
	c := &cobra.Command{
		Use:   "search",
		Short: "Search the audit trail by patient, user, facility, purpose, outcome, event and time",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := e.checkOutput(); err != nil {
				return err
			}
			q, err := f.query()
			if err != nil {
				return err
			}
			return e.withAudit(func(n *node.Node) ([]audit.Record, error) {
				return n.Audit.Search(e.ctx, e.auditActor(n), q)
			}, "/api/v1/audit/records?"+q.Encode(), func(recs []audit.Record) error {
				if e.output == "json" {
					out := make([]auditRecordJSON, 0, len(recs))
					for _, r := range recs {
						out = append(out, toAuditJSON(r))
					}
					return e.printJSON(out)
				}
				tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "#\tTIME\tEVENT\tOUTCOME\tUSER\tPEER\tPATIENT\tSTUDY\tPURPOSE")
				for _, r := range recs {
					j := toAuditJSON(r)
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.Index, r.Time.UTC().Format(time.DateTime),
						j.EventName, j.Outcome, j.User, dash(j.Peer), dash(j.Patient), dash(j.Study), dash(j.Purpose))
				}
				return tw.Flush()
			})
		},
	}
	f.add(c)
	e.addOutputFlag(c)
	return c
}

// withAudit reads records from the running node's API, or from the log
// itself when no node runs, and hands them to show.
func (e *env) withAudit(local func(*node.Node) ([]audit.Record, error), path string, show func([]audit.Record) error) error {
	if ri, ok := e.runningNode(); ok {
		var out struct{ Records []audit.Record }
		if err := e.api(ri, http.MethodGet, path, nil, &out); err != nil {
			return err
		}
		return show(out.Records)
	}
	return e.withNode(func(n *node.Node) error {
		recs, err := local(n)
		if err != nil {
			return err
		}
		return show(recs)
	})
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func auditFlagsCmd(e *env) *cobra.Command {
	var f auditFilter
	var kinds []string
	c := &cobra.Command{
		Use:   "flags",
		Short: "List accesses a compliance officer should review: break-glass, after hours, bulk, denied, new facility",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := e.checkOutput(); err != nil {
				return err
			}
			q, err := f.query()
			if err != nil {
				return err
			}
			var ks []audit.FlagKind
			for _, k := range kinds {
				if !containsKind(audit.FlagKinds(), audit.FlagKind(k)) {
					return usagef("unknown flag kind %q (want one of %v)", k, audit.FlagKinds())
				}
				ks = append(ks, audit.FlagKind(k))
			}
			show := func(flags []audit.Flag) error {
				if e.output == "json" {
					type flagJSON struct {
						Kind   string          `json:"kind"`
						Detail string          `json:"detail,omitempty"`
						Record auditRecordJSON `json:"record"`
					}
					out := make([]flagJSON, 0, len(flags))
					for _, fl := range flags {
						out = append(out, flagJSON{string(fl.Kind), fl.Detail, toAuditJSON(fl.Record)})
					}
					return e.printJSON(out)
				}
				tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "FLAG\t#\tTIME\tEVENT\tUSER\tFACILITY\tPATIENT\tDETAIL")
				for _, fl := range flags {
					j := toAuditJSON(fl.Record)
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", fl.Kind, j.Index, fl.Record.Time.UTC().Format(time.DateTime),
						j.EventName, j.User, dash(j.Facility), dash(j.Patient), fl.Detail)
				}
				return tw.Flush()
			}
			if ri, ok := e.runningNode(); ok {
				path := "/api/v1/audit/flags?" + q.Encode()
				for _, k := range ks {
					path += "&kind=" + string(k)
				}
				var out struct{ Flags []audit.Flag }
				if err := e.api(ri, http.MethodGet, path, nil, &out); err != nil {
					return err
				}
				return show(out.Flags)
			}
			return e.withNode(func(n *node.Node) error {
				flags, err := n.Audit.Flags(e.ctx, e.auditActor(n), q, ks...)
				if err != nil {
					return err
				}
				return show(flags)
			})
		},
	}
	f.add(c)
	c.Flags().StringSliceVar(&kinds, "kind", nil, "only these flags (break-glass, after-hours, bulk-access, denied, new-facility)")
	e.addOutputFlag(c)
	return c
}

func containsKind(ks []audit.FlagKind, k audit.FlagKind) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

func auditExportCmd(e *env) *cobra.Command {
	var f auditFilter
	var format, to string
	c := &cobra.Command{
		Use:   "export",
		Short: "Export audit records as CSV, FHIR AuditEvent NDJSON (IHE BALP) or DICOM PS3.15 XML",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			fm, err := audit.ParseFormat(exportFormat(format))
			if err != nil {
				return usageError{err}
			}
			q, err := f.query()
			if err != nil {
				return err
			}
			ri, running := e.runningNode()
			write := func(n *node.Node) error {
				var w io.Writer = e.stdout
				var file *os.File
				if to != "" {
					if file, err = os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
						return err
					}
					w = file
				}
				bw := bufio.NewWriter(w)
				var err error
				if running {
					err = e.apiStream(ri, "/api/v1/audit/export?format="+string(fm)+"&"+q.Encode(), bw)
				} else {
					err = n.Audit.Export(e.ctx, e.auditActor(n), q, fm, bw)
				}
				err = errors.Join(err, bw.Flush())
				if file != nil {
					err = errors.Join(err, file.Sync(), file.Close())
					if err != nil {
						os.Remove(to)
					}
				}
				return err
			}
			if running {
				return write(nil)
			}
			return e.withNode(write)
		},
	}
	f.add(c)
	c.Flags().StringVar(&format, "format", "csv", "csv, fhir (AuditEvent NDJSON) or atna (DICOM PS3.15 XML)")
	c.Flags().StringVar(&to, "to", "", "write to this new file (mode 0600) instead of standard output")
	return c
}

// exportFormat maps the command-line names onto the package's formats.
func exportFormat(s string) string {
	switch strings.ToLower(s) {
	case "atna", "dicom", "xml":
		return string(audit.FormatDICOM)
	case "fhir", "ndjson":
		return string(audit.FormatFHIR)
	}
	return s
}

func auditVerifyCmd(e *env) *cobra.Command {
	c := &cobra.Command{
		Use:   "verify",
		Short: "Check the whole audit log against its signed checkpoints; exit 1 naming the first bad record",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := e.checkOutput(); err != nil {
				return err
			}
			if ri, ok := e.runningNode(); ok {
				// The running node also checks the checkpoints anchored in
				// the registry.
				var out struct {
					OK     bool
					Report *audit.Report
					Error  string
				}
				if err := e.api(ri, http.MethodGet, "/api/v1/audit/verify", nil, &out); err != nil {
					return err
				}
				var verr error
				if !out.OK {
					verr = errors.New(out.Error)
				}
				return e.printVerify(out.Report, verr)
			}
			h := node.Home(e.home)
			id, err := node.LoadIdentity(h)
			if err != nil {
				return err
			}
			pid, err := node.PeerID(id)
			if err != nil {
				return err
			}
			// Verify reads the files and needs no lock, so it also runs
			// beside a running node, and on a damaged log that no longer
			// opens or appends: the report names no patient data. The
			// reading is recorded whenever the log still takes records.
			n, err := e.openNode()
			if err == nil {
				_, err = n.Audit.Search(e.ctx, e.auditActor(n), audit.Query{Limit: 1})
				n.Close()
			}
			if err != nil {
				fmt.Fprintf(e.stderr, "dicomesh: this reading could not be recorded in the log: %v\n", err)
			}
			rep, verr := audit.Verify(e.ctx, h.AuditDir(), audit.VerifyOptions{
				Origin: "dicomesh/audit/" + pid.String(), Key: id.SignKey(), Facility: pid.String(),
			})
			if rep == nil {
				return verr
			}
			return e.printVerify(rep, verr)
		},
	}
	e.addOutputFlag(c)
	return c
}

// printVerify prints a verification report and returns verr.
func (e *env) printVerify(rep *audit.Report, verr error) error {
	if rep == nil {
		return verr
	}
	if e.output == "json" {
		if err := e.printJSON(rep); err != nil {
			return err
		}
		return verr
	}
	fmt.Fprintf(e.stdout, "%d records, %d covered by %d signed checkpoints (%d anchored in the registry)\n", rep.Records, rep.Verified, rep.Checkpoints, rep.Anchored)
	for _, p := range rep.Problems {
		fmt.Fprintf(e.stdout, "TAMPERED  %s\n", describeProblem(p))
	}
	for _, p := range rep.Warnings {
		fmt.Fprintf(e.stdout, "warning   %s\n", describeProblem(p))
	}
	if rep.OK() {
		fmt.Fprintln(e.stdout, "ok: the log verifies")
	}
	return verr
}

func describeProblem(p audit.Problem) string {
	where := ""
	switch {
	case p.End > 0:
		where = fmt.Sprintf("records %d-%d: ", p.Index, p.End-1)
	case p.Index >= 0:
		where = fmt.Sprintf("record %d: ", p.Index)
	}
	if p.Offset >= 0 {
		where += fmt.Sprintf("(byte %d) ", p.Offset)
	}
	return fmt.Sprintf("%s%s: %s", where, p.Kind, p.Reason)
}

// auditActor is who reads the audit log from the command line.
func (e *env) auditActor(n *node.Node) audit.Actor {
	return audit.Actor{User: e.user(), Facility: n.FacilityID, Purpose: "HOPERAT"}
}

// withNode opens the node, runs fn and closes it.
func (e *env) withNode(fn func(*node.Node) error) error {
	n, err := e.openNode()
	if err != nil {
		return err
	}
	return errors.Join(fn(n), n.Close())
}

// apiStream copies the body of a GET on the running node's API to w.
func (e *env) apiStream(ri node.RunInfo, path string, w io.Writer) error {
	req, err := http.NewRequestWithContext(e.ctx, http.MethodGet, "http://"+ri.HTTP+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-Dicomesh-User", e.user())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("the running node answered %s: %s", resp.Status, b)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}
