package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/dicomesh/dicomesh/node"
	"github.com/dicomesh/dicomesh/node/dimse"
)

func pacsCmd(e *env) *cobra.Command {
	c := &cobra.Command{
		Use:   "pacs",
		Short: "Name the DICOM destinations (the local PACS) that studies are pushed to",
	}
	var p node.PACS
	add := &cobra.Command{
		Use:   "add NAME --aet TITLE --host HOST --port PORT",
		Short: "Add or replace a destination",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			p.Name = args[0]
			if err := node.AddPACS(node.Home(e.home), p); err != nil {
				return usageError{err}
			}
			fmt.Fprintf(e.stdout, "added %s: %s at %s:%d\n", p.Name, p.AET, p.Host, p.Port)
			return nil
		},
	}
	add.Flags().StringVar(&p.AET, "aet", "", "the destination's AE title")
	add.Flags().StringVar(&p.Host, "host", "", "its host")
	add.Flags().IntVar(&p.Port, "port", 104, "its DICOM port")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the destinations",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := e.checkOutput(); err != nil {
				return err
			}
			ps, err := node.PACSList(node.Home(e.home))
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.printJSON(ps)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tAET\tHOST\tPORT")
			for _, p := range ps {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", p.Name, p.AET, p.Host, p.Port)
			}
			return tw.Flush()
		},
	}
	e.addOutputFlag(list)
	c.AddCommand(add, list)
	return c
}

func pushCmd(e *env) *cobra.Command {
	var to string
	c := &cobra.Command{
		Use:   "push STUDY_UID --to NAME",
		Short: "C-STORE a study into a named PACS (a received study under the local patient)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if to == "" {
				return usagef("--to NAME is required (see dicomesh pacs list)")
			}
			var res dimse.SendResult
			if ri, ok := e.runningNode(); ok {
				body, _ := json.Marshal(map[string]string{"study": args[0], "to": to})
				if err := e.api(ri, http.MethodPost, "/api/v1/push", body, &res); err != nil {
					return err
				}
			} else if err := e.withNode(func(n *node.Node) error {
				dest, err := n.Destination(to)
				if err != nil {
					return err
				}
				res, err = n.Push(e.ctx, args[0], dest)
				return err
			}); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "sent %d instances to %s, %d failed\n", res.Sent, to, res.Failed)
			if res.Failed > 0 {
				return fmt.Errorf("%d instances failed: statuses %v", res.Failed, res.Statuses)
			}
			return nil
		},
	}
	c.Flags().StringVar(&to, "to", "", "the destination's name")
	return c
}
