package cli

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/dicomesh/dicomesh/node"
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
