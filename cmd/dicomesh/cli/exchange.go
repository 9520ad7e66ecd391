package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dicomesh/dicomesh/consent"
	"github.com/dicomesh/dicomesh/federation/blocks"
	"github.com/dicomesh/dicomesh/node"
	"github.com/dicomesh/dicomesh/node/archive"
)

func findCmd(e *env) *cobra.Command {
	var id, issuer, name, birth, sex string
	c := &cobra.Command{
		Use:   "find (--patient-id ID --issuer ISSUER | --name FAMILY^GIVEN --birth-date YYYYMMDD --sex M|F|O)",
		Short: "Find a patient's studies across the federation (through the running node's registry replica)",
		Long: `Find computes the patient's blinded tokens with the federation's linkage key and
looks them up in the registry: by issuer-qualified patient ID, or by name, birth
date and sex (exact and phonetic). No demographics leave this node. Each
candidate says which tokens matched; a person confirms a match. The search is
recorded in the audit trail.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := e.checkOutput(); err != nil {
				return err
			}
			byID := id != "" || issuer != ""
			byName := name != "" || birth != "" || sex != ""
			switch {
			case byID && (id == "" || issuer == ""):
				return usagef("give --patient-id with --issuer")
			case byName && (name == "" || birth == "" || sex == ""):
				return usagef("give --name with --birth-date and --sex")
			case !byID && !byName:
				return usagef("give --patient-id and --issuer, or --name, --birth-date and --sex")
			}
			ri, ok := e.runningNode()
			if !ok {
				return node.ErrNotRunning
			}
			v := url.Values{}
			for k, x := range map[string]string{"patient_id": id, "issuer": issuer, "name": name, "birth_date": birth, "sex": sex} {
				if x != "" {
					v.Set(k, x)
				}
			}
			var cs []node.Candidate
			if err := e.api(ri, http.MethodGet, "/api/v1/find?"+v.Encode(), nil, &cs); err != nil {
				return err
			}
			if e.output == "json" {
				if cs == nil {
					cs = []node.Candidate{}
				}
				return e.printJSON(cs)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "MANIFEST\tFACILITY\tDATE\tMODALITY\tINSTANCES\tMB\tMATCHED\tDESCRIPTION")
			for _, c := range cs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%.1f\t%s\t%s\n", c.ManifestID, c.Facility, c.StudyDate, strings.Join(c.Modalities, ","),
					c.Instances, float64(c.Bytes)/1e6, strings.Join(c.Matched, ","), c.Description)
			}
			return tw.Flush()
		},
	}
	f := c.Flags()
	f.StringVar(&id, "patient-id", "", "patient ID at the issuer")
	f.StringVar(&issuer, "issuer", "", "issuer of the patient ID")
	f.StringVar(&name, "name", "", "patient name, FAMILY^GIVEN")
	f.StringVar(&birth, "birth-date", "", "birth date, YYYYMMDD")
	f.StringVar(&sex, "sex", "", "sex: M, F or O")
	e.addOutputFlag(c)
	return c
}

func pullCmd(e *env) *cobra.Command {
	var purpose, user, breakGlass, localID, localIssuer string
	var progress bool
	c := &cobra.Command{
		Use:   "pull MANIFEST_ID --purpose TREAT|ETREAT|... [--user NAME] [--break-glass REASON]",
		Short: "Request a study from its owner and, once granted, fetch, verify and store it",
		Long: `Pull asks the owning facility for access (signed, for a purpose of use). The
owner checks the patient's consent and its policy, records its decision in its
audit trail, and grants the study key sealed to this facility, or refuses with
a reason. The encrypted blocks are then fetched from every member that holds
them, each verified against its content address, every instance decrypted and
checked against the study's manifest, and the study committed all at once.
Exit status: 0 once the study is stored, 4 when the owner refused (with its
reason), 1 on other failures.`,
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if purpose == "" {
				return usagef("--purpose is required (TREAT, ETREAT, COC, ...)")
			}
			if breakGlass != "" && purpose != "ETREAT" {
				return usagef("--break-glass is for emergencies: use --purpose ETREAT")
			}
			ri, ok := e.runningNode()
			if !ok {
				return node.ErrNotRunning
			}
			if user == "" {
				user = e.user()
			}
			if (localID == "") != (localIssuer == "") {
				return usagef("give --local-patient-id with --local-issuer")
			}
			body, _ := json.Marshal(node.PullRequest{Manifest: args[0], Purpose: purpose, User: user, BreakGlass: breakGlass,
				LocalPatientID: localID, LocalIssuer: localIssuer})
			start := time.Now()
			show := progress || isTerminal(e.stderr)
			var last blocks.Progress
			st, err := e.pull(ri, body, func(p blocks.Progress) {
				last = p
				if show {
					fmt.Fprintf(e.stderr, "\rpulling: %d of %d blocks known, %.1f MB, %.1fs ", p.Blocks, p.Known, float64(p.Bytes)/1e6, time.Since(start).Seconds())
				}
			})
			if show {
				fmt.Fprintln(e.stderr)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "stored study %s (%d instances, %.1f MB) from %s in %.2fs, every instance verified; %d blocks fetched, %d already here\n",
				st.UID, st.Instances, float64(st.Bytes)/1e6, st.Source, time.Since(start).Seconds(), last.Fetched, last.Blocks-last.Fetched)
			return nil
		},
	}
	c.Flags().StringVar(&purpose, "purpose", "", "purpose of use: TREAT, ETREAT (emergency), COC, ...")
	c.Flags().StringVar(&user, "user", "", "the requesting physician (default: --as, or the OS user)")
	c.Flags().StringVar(&breakGlass, "break-glass", "", "emergency reason: asks the owner to override a refusal where its policy allows")
	c.Flags().StringVar(&localID, "local-patient-id", "", "the patient's ID here: the study is served to local systems under it")
	c.Flags().StringVar(&localIssuer, "local-issuer", "", "the issuer of --local-patient-id")
	c.Flags().BoolVar(&progress, "progress", false, "show progress on standard error even when it is not a terminal")
	return c
}

// pull asks the running node to pull and reads its NDJSON answer, telling
// progress as it comes.
func (e *env) pull(ri node.RunInfo, body []byte, progress func(blocks.Progress)) (archive.Study, error) {
	req, err := http.NewRequestWithContext(e.ctx, http.MethodPost, "http://"+ri.HTTP+"/api/v1/pull", bytes.NewReader(body))
	if err != nil {
		return archive.Study{}, err
	}
	req.Header.Set("X-Dicomesh-User", e.user())
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return archive.Study{}, fmt.Errorf("the running node (pid %d): %w", ri.PID, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return archive.Study{}, fmt.Errorf("the running node answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var ev node.PullEvent
		if err := dec.Decode(&ev); err != nil {
			return archive.Study{}, fmt.Errorf("the running node's answer ended: %w", err)
		}
		switch {
		case ev.Progress != nil:
			progress(*ev.Progress)
		case ev.Denied:
			return archive.Study{}, &exitError{code: exitDenied, err: errors.New(ev.Error)}
		case ev.Error != "":
			return archive.Study{}, errors.New(ev.Error)
		case ev.Study != nil:
			return *ev.Study, nil
		}
	}
}

func consentCmd(e *env) *cobra.Command {
	c := &cobra.Command{
		Use:   "consent",
		Short: "Record, revoke and list patients' consent directives in the federation registry",
		Long: `A directive permits or denies sharing a patient's studies: with all facilities
or named ones, for all purposes or some (TREAT, ETREAT, COC, ...), until a date.
It is recorded in the registry under the patient's blinded token, never the
patient's identifiers, and every owner applies it to the next request: an
explicit deny beats a permit; break-glass may override a deny only where the
owning facility's policy allows, and is always flagged.`,
	}
	c.AddCommand(consentRecordCmd(e), consentRevokeCmd(e), consentListCmd(e))
	return c
}

func consentRecordCmd(e *env) *cobra.Command {
	var in node.ConsentInput
	var permit, deny bool
	var until string
	c := &cobra.Command{
		Use:   "record --patient-id ID --issuer ISSUER (--permit|--deny) [--facility NAME]... [--purpose P]... [--until DATE]",
		Short: "Record a patient's directive",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			switch {
			case in.PatientID == "" || in.Issuer == "":
				return usagef("--patient-id and --issuer are required")
			case permit == deny:
				return usagef("give exactly one of --permit and --deny")
			}
			in.Permit = permit
			if until != "" {
				t, err := time.Parse("20060102", strings.ReplaceAll(until, "-", ""))
				if err != nil {
					return usagef("--until %q: want YYYYMMDD", until)
				}
				in.Until = t
			}
			ri, ok := e.runningNode()
			if !ok {
				return node.ErrNotRunning
			}
			body, _ := json.Marshal(in)
			var out struct{ ID string }
			if err := e.api(ri, http.MethodPost, "/api/v1/consent", body, &out); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "recorded directive %s\n", out.ID)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&in.PatientID, "patient-id", "", "patient ID at the issuer")
	f.StringVar(&in.Issuer, "issuer", "", "issuer of the patient ID")
	f.BoolVar(&permit, "permit", false, "permit sharing")
	f.BoolVar(&deny, "deny", false, "deny sharing")
	f.StringSliceVar(&in.Facilities, "facility", nil, "facility (name) it applies to; repeat; none means all")
	f.StringSliceVar(&in.Purposes, "purpose", nil, "purpose of use it applies to; repeat; none means all")
	f.StringVar(&until, "until", "", "last day it applies, YYYYMMDD")
	return c
}

func consentRevokeCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke DIRECTIVE_ID",
		Short: "Revoke a directive this facility recorded",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			ri, ok := e.runningNode()
			if !ok {
				return node.ErrNotRunning
			}
			var out map[string]string
			if err := e.api(ri, http.MethodDelete, "/api/v1/consent/"+url.PathEscape(args[0]), nil, &out); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "revoked directive %s\n", args[0])
			return nil
		},
	}
}

func consentListCmd(e *env) *cobra.Command {
	var id, issuer string
	c := &cobra.Command{
		Use:   "list --patient-id ID --issuer ISSUER",
		Short: "List a patient's directives",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := e.checkOutput(); err != nil {
				return err
			}
			if id == "" || issuer == "" {
				return usagef("--patient-id and --issuer are required")
			}
			ri, ok := e.runningNode()
			if !ok {
				return node.ErrNotRunning
			}
			var ds []consent.Directive
			if err := e.api(ri, http.MethodGet, "/api/v1/consent?"+url.Values{"patient_id": {id}, "issuer": {issuer}}.Encode(), nil, &ds); err != nil {
				return err
			}
			type dj struct {
				ID         string   `json:"id"`
				Effect     string   `json:"effect"`
				Facilities []string `json:"facilities"`
				Purposes   []string `json:"purposes"`
				Until      string   `json:"until,omitempty"`
				RecordedBy string   `json:"recorded_by"`
				RecordedAt string   `json:"recorded_at"`
			}
			out := []dj{}
			for _, d := range ds {
				j := dj{ID: d.ID, Effect: d.Effect.String(), Facilities: nonNil(d.Facilities), Purposes: []string{}, RecordedBy: d.RecordedBy,
					RecordedAt: d.RecordedAt.UTC().Format(time.RFC3339)}
				for _, p := range d.Purposes {
					j.Purposes = append(j.Purposes, string(p))
				}
				if !d.NotAfter.IsZero() {
					j.Until = d.NotAfter.UTC().Format(time.RFC3339)
				}
				out = append(out, j)
			}
			if e.output == "json" {
				return e.printJSON(out)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tEFFECT\tFACILITIES\tPURPOSES\tUNTIL\tRECORDED BY")
			for _, j := range out {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Effect, dash(strings.Join(j.Facilities, ",")), dash(strings.Join(j.Purposes, ",")), dash(j.Until), j.RecordedBy)
			}
			return tw.Flush()
		},
	}
	c.Flags().StringVar(&id, "patient-id", "", "patient ID at the issuer")
	c.Flags().StringVar(&issuer, "issuer", "", "issuer of the patient ID")
	e.addOutputFlag(c)
	return c
}
