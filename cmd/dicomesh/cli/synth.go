package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/dicomesh/dicomesh/internal/synth"
)

func synthCmd(e *env) *cobra.Command {
	var (
		out    string
		preset string
		slices int
		seed   int64
		p      synth.Patient
	)
	c := &cobra.Command{
		Use:   "synth --preset ct|mr|cr --out DIR",
		Short: "Write a generated study (realistic headers, real pixel data) to a folder",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usagef("synth needs --out DIR")
			}
			spec, err := synth.DefaultSpec(preset)
			if err != nil {
				return usageError{err}
			}
			spec.Seed = seed
			if cmd.Flags().Changed("slices") {
				spec.Slices = slices
			}
			if p.ID != "" {
				spec.Patient.ID = p.ID
			}
			if p.Issuer != "" {
				spec.Patient.Issuer = p.Issuer
			}
			if p.Family != "" {
				spec.Patient.Family = p.Family
			}
			if p.Given != "" {
				spec.Patient.Given = p.Given
			}
			if p.BirthDate != "" {
				spec.Patient.BirthDate = p.BirthDate
			}
			if p.Sex != "" {
				spec.Patient.Sex = p.Sex
			}
			st, err := synth.Write(out, spec)
			if err != nil {
				return err
			}
			var bytes int64
			for _, f := range st.Files {
				bytes += f.Size
			}
			fmt.Fprintf(e.stdout, "wrote %s study %s: %d instances, %.1f MB in %s\n", preset, st.UID, len(st.Files), float64(bytes)/1e6, out)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&out, "out", "", "destination folder")
	f.StringVar(&preset, "preset", "ct", "study kind: ct, mr or cr")
	f.IntVar(&slices, "slices", 0, "number of slices (ct) or images per series (mr)")
	f.Int64Var(&seed, "seed", 1, "seed: the same seed writes byte-identical files")
	f.StringVar(&p.ID, "patient-id", "", "patient ID")
	f.StringVar(&p.Issuer, "issuer", "", "issuer of patient ID")
	f.StringVar(&p.Family, "family", "", "patient family name")
	f.StringVar(&p.Given, "given", "", "patient given name")
	f.StringVar(&p.BirthDate, "birth-date", "", "patient birth date YYYYMMDD")
	f.StringVar(&p.Sex, "sex", "", "patient sex M, F or O")
	return c
}
