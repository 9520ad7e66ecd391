package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dicomesh/dicomesh/node"
	"github.com/dicomesh/dicomesh/node/archive"
	"github.com/dicomesh/dicomesh/node/ingest"
)

func initCmd(e *env) *cobra.Command {
	cfg := node.DefaultConfig()
	c := &cobra.Command{
		Use:   "init",
		Short: "Create a node's home: keys (0600), configuration, empty archive",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			id, err := node.Init(node.Home(e.home), cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "initialized %s\n  facility  %s\n  signing   %x\n  recipient %s\n  config    %s\n",
				e.home, cfg.Facility, id.SignKey(), id.Recipient(), node.Home(e.home).ConfigPath())
			return nil
		},
	}
	c.Flags().StringVar(&cfg.Facility, "facility", cfg.Facility, "facility name shown to other members")
	return c
}

func ingestCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "ingest PATH...",
		Short: "Store DICOM files, folders, DICOMDIR media and zip archives in the local archive",
		Long: `Ingest stores every DICOM instance found under the given paths: files, folders
(recursively), DICOMDIR media such as a CD copied to disk, and zip archives.
Re-ingesting an instance already stored changes nothing. Files that are not
DICOM are skipped and counted. Malformed DICOM is rejected with a reason, kept
aside in the home's rejected folder, and the command exits with status 3.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, paths []string) error {
			start := time.Now()
			var rep node.IngestSummary
			if ri, ok := e.runningNode(); ok {
				// The running node holds the stores: it ingests.
				var abs []string
				for _, p := range paths {
					a, err := filepath.Abs(p)
					if err != nil {
						return err
					}
					abs = append(abs, a)
				}
				body, _ := json.Marshal(map[string][]string{"paths": abs})
				if err := e.api(ri, http.MethodPost, "/api/v1/ingest", body, &rep); err != nil {
					return err
				}
			} else {
				n, err := e.openNode()
				if err != nil {
					return err
				}
				defer n.Close()
				bar := newProgress(e.stderr, "ingest")
				r, err := n.Ingest(e.ctx, bar.update, paths...)
				bar.done()
				if err != nil {
					return err
				}
				rep = node.Summarize(r)
			}
			secs := time.Since(start).Seconds()
			fmt.Fprintf(e.stdout, "stored %d instances (%d duplicates, %d skipped, %d rejected), %.1f MB in %.2fs\n",
				rep.Stored, rep.Duplicates, rep.Skipped, len(rep.Rejected), float64(rep.Bytes)/1e6, secs)
			for _, s := range rep.Studies {
				fmt.Fprintf(e.stdout, "  study %s  v%d  %d instances  %s\n", s.UID, s.Version, s.Instances, strings.Join(s.Modalities, ","))
			}
			for _, r := range rep.Rejected {
				fmt.Fprintf(e.stderr, "rejected %s: %s\n", r.Path, r.Reason)
				if r.KeptAt != "" {
					fmt.Fprintf(e.stderr, "  kept at %s\n", r.KeptAt)
				}
			}
			if len(rep.Rejected) > 0 {
				return &exitError{code: exitRejected, err: fmt.Errorf("%d file(s) rejected", len(rep.Rejected))}
			}
			return nil
		},
	}
}

// studyJSON is the contract of `studies -o json`.
type studyJSON struct {
	StudyUID    string   `json:"study_uid"`
	PatientID   string   `json:"patient_id"`
	Issuer      string   `json:"issuer"`
	PatientName string   `json:"patient_name"`
	BirthDate   string   `json:"birth_date"`
	Sex         string   `json:"sex"`
	StudyDate   string   `json:"study_date"`
	Description string   `json:"description"`
	Accession   string   `json:"accession"`
	Modalities  []string `json:"modalities"`
	BodyParts   []string `json:"body_parts"`
	Series      int      `json:"series"`
	Instances   int      `json:"instances"`
	Bytes       int64    `json:"bytes"`
	Version     int      `json:"version"`
	Root        string   `json:"root"`
	StoredAt    string   `json:"stored_at"`
}

func toStudyJSON(s archive.Study) studyJSON {
	return studyJSON{
		StudyUID: s.UID, PatientID: s.PatientID, Issuer: s.Issuer, PatientName: s.PatientName,
		BirthDate: s.BirthDate, Sex: s.Sex, StudyDate: s.StudyDate, Description: s.Description,
		Accession: s.Accession, Modalities: nonNil(s.Modalities), BodyParts: nonNil(s.BodyParts),
		Series: len(s.Series), Instances: s.Instances, Bytes: s.Bytes, Version: s.Version,
		Root: s.Root.String(), StoredAt: s.StoredAt.UTC().Format(time.RFC3339),
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func studiesCmd(e *env) *cobra.Command {
	var q archive.Query
	c := &cobra.Command{
		Use:   "studies",
		Short: "List and search the studies in the local archive",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := e.checkOutput(); err != nil {
				return err
			}
			var studies []archive.Study
			if ri, ok := e.runningNode(); ok {
				v := url.Values{}
				for k, x := range map[string]string{"patient_id": q.PatientID, "issuer": q.Issuer, "name": q.PatientName, "modality": q.Modality,
					"from": q.DateFrom, "to": q.DateTo, "accession": q.Accession} {
					if x != "" {
						v.Set(k, x)
					}
				}
				if q.Limit > 0 {
					v.Set("limit", fmt.Sprint(q.Limit))
				}
				if err := e.api(ri, http.MethodGet, "/api/v1/studies?"+v.Encode(), nil, &studies); err != nil {
					return err
				}
			} else {
				n, err := e.openNode()
				if err != nil {
					return err
				}
				defer n.Close()
				if studies, err = n.Studies(e.ctx, q); err != nil {
					return err
				}
			}
			if e.output == "json" {
				out := make([]studyJSON, 0, len(studies))
				for _, s := range studies {
					out = append(out, toStudyJSON(s))
				}
				return e.printJSON(out)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "STUDY UID\tPATIENT\tNAME\tDATE\tMODALITY\tINSTANCES\tMB\tDESCRIPTION")
			for _, s := range studies {
				fmt.Fprintf(tw, "%s\t%s|%s\t%s\t%s\t%s\t%d\t%.1f\t%s\n", s.UID, s.Issuer, s.PatientID, s.PatientName,
					s.StudyDate, strings.Join(s.Modalities, ","), s.Instances, float64(s.Bytes)/1e6, s.Description)
			}
			return tw.Flush()
		},
	}
	e.addOutputFlag(c)
	f := c.Flags()
	f.StringVar(&q.PatientID, "patient-id", "", "patient ID (exact)")
	f.StringVar(&q.Issuer, "issuer", "", "issuer of patient ID (exact)")
	f.StringVar(&q.PatientName, "name", "", "patient name prefix (FAMILY^GIVEN, case-insensitive)")
	f.StringVar(&q.Modality, "modality", "", "modality (CT, MR, ...)")
	f.StringVar(&q.DateFrom, "from", "", "study date from (YYYYMMDD, inclusive)")
	f.StringVar(&q.DateTo, "to", "", "study date to (YYYYMMDD, inclusive)")
	f.StringVar(&q.Accession, "accession", "", "accession number (exact)")
	f.IntVar(&q.Limit, "limit", 0, "at most this many studies (0: all)")
	return c
}

func exportCmd(e *env) *cobra.Command {
	var to string
	c := &cobra.Command{
		Use:   "export STUDY_UID --to DIR",
		Short: "Write a study's original instances to a folder, verified byte for byte",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if to == "" {
				return usagef("export needs --to DIR")
			}
			n, err := e.openNode()
			if err != nil {
				return err
			}
			defer n.Close()
			start := time.Now()
			count, err := n.Export(e.ctx, args[0], to)
			if errors.Is(err, archive.ErrNotFound) {
				return fmt.Errorf("study %s is not in the archive", args[0])
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "exported %d instances of %s to %s in %.2fs (every instance verified against its SHA-256)\n",
				count, args[0], to, time.Since(start).Seconds())
			return nil
		},
	}
	c.Flags().StringVar(&to, "to", "", "destination folder")
	return c
}

// progress draws a one-line progress bar on a terminal and nothing elsewhere.
type progress struct {
	w     interface{ Write([]byte) (int, error) }
	label string
	on    bool
	last  time.Time
	drawn bool
}

func newProgress(w interface{ Write([]byte) (int, error) }, label string) *progress {
	return &progress{w: w, label: label, on: isTerminal(w)}
}

func (p *progress) update(pr ingest.Progress) {
	if !p.on || (time.Since(p.last) < 100*time.Millisecond && pr.Done < pr.Files) {
		return
	}
	p.last = time.Now()
	const width = 30
	fill := 0
	if pr.Files > 0 {
		fill = int(int64(width) * pr.Done / pr.Files)
	}
	fmt.Fprintf(p.w, "\r%s [%s%s] %d/%d files  %.1f MB", p.label,
		strings.Repeat("=", fill), strings.Repeat(" ", width-fill), pr.Done, pr.Files, float64(pr.Bytes)/1e6)
	p.drawn = true
}

func (p *progress) done() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}
