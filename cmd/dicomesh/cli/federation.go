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
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dicomesh/dicomesh/node"
)

func federationCmd(e *env) *cobra.Command {
	c := &cobra.Command{
		Use:   "federation",
		Short: "Create, join and inspect the federation of hospitals this node belongs to",
		Long: `A federation is the hospitals that share a registry (replicated with Raft over
libp2p). The first hospital creates it; each other hospital joins with an
invitation token that a member issues.

  hospital A:  dicomesh federation create --name Valley
               dicomesh run &
               dicomesh federation invite --name "Regional Hospital"   # prints a token
  hospital B:  dicomesh federation join TOKEN     # before or while B runs
               dicomesh run

Commands for a running node go to it through its local HTTP API.`,
	}
	c.AddCommand(fedCreateCmd(e), fedInviteCmd(e), fedJoinCmd(e), fedMembersCmd(e), fedLeaveCmd(e), fedSuspendCmd(e))
	return c
}

// runningNode returns the address of the node running for this home, if
// one is.
func (e *env) runningNode() (node.RunInfo, bool) {
	ri, err := node.ReadRunInfo(node.Home(e.home))
	if err != nil || ri.PID <= 0 || syscall.Kill(ri.PID, 0) != nil {
		return node.RunInfo{}, false
	}
	return ri, true
}

// api calls the running node's HTTP API and decodes its JSON answer.
func (e *env) api(ri node.RunInfo, method, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(e.ctx, method, "http://"+ri.HTTP+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("X-Dicomesh-User", e.user())
	resp, err := (&http.Client{Timeout: 90 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("the running node (pid %d): %w", ri.PID, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != http.StatusOK {
		var ej struct{ Error string }
		if json.Unmarshal(b, &ej) == nil && ej.Error != "" {
			return errors.New(ej.Error)
		}
		return fmt.Errorf("the running node answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return json.Unmarshal(b, out)
}

func fedCreateCmd(e *env) *cobra.Command {
	var name string
	c := &cobra.Command{
		Use:   "create --name NAME",
		Short: "Found a federation with this facility as its first member (the node must be stopped)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if name == "" {
				return usagef("--name is required")
			}
			if ri, ok := e.runningNode(); ok {
				return fmt.Errorf("a node is running for this home (pid %d): stop it, create the federation, then run it again", ri.PID)
			}
			return e.withNode(func(n *node.Node) error {
				id, err := n.CreateFederation(e.ctx, name)
				if err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "created federation %s (%s); this facility is its first voting member\nstart the node with: dicomesh run\n", name, id)
				return nil
			})
		},
	}
	c.Flags().StringVar(&name, "name", "", "name of the federation")
	return c
}

func fedInviteCmd(e *env) *cobra.Command {
	var name string
	var ttl time.Duration
	c := &cobra.Command{
		Use:   "invite [--name NEWNAME]",
		Short: "Print a signed, expiring, single-use invitation token for one new facility",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if ttl <= 0 {
				return usagef("--ttl must be positive")
			}
			var tok string
			if ri, ok := e.runningNode(); ok {
				var out struct{ Token string }
				q := url.Values{"name": {name}, "ttl": {ttl.String()}}
				if err := e.api(ri, http.MethodPost, "/api/v1/federation/invite?"+q.Encode(), nil, &out); err != nil {
					return err
				}
				tok = out.Token
			} else if err := e.withNode(func(n *node.Node) (err error) {
				tok, err = n.Invite(e.ctx, name, ttl)
				return err
			}); err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, tok)
			return nil
		},
	}
	c.Flags().StringVar(&name, "name", "", "the new facility's name (the invitation admits only that name)")
	c.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the invitation is valid")
	return c
}

func fedJoinCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "join TOKEN",
		Short: "Join a federation with an invitation token (before or while this node runs)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			var fed string
			if ri, ok := e.runningNode(); ok {
				var out struct{ Federation string }
				if err := e.api(ri, http.MethodPost, "/api/v1/federation/join", []byte(args[0]), &out); err != nil {
					return err
				}
				fed = out.Federation
			} else if err := e.withNode(func(n *node.Node) (err error) {
				fed, err = n.Join(e.ctx, args[0])
				return err
			}); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "joined federation %s\n", fed)
			return nil
		},
	}
}

func fedMembersCmd(e *env) *cobra.Command {
	c := &cobra.Command{
		Use:   "members",
		Short: "List the federation's facilities: name, peer id, role, status, leader, addresses, last seen",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := e.checkOutput(); err != nil {
				return err
			}
			var ms []node.Member
			if ri, ok := e.runningNode(); ok {
				if err := e.api(ri, http.MethodGet, "/api/v1/federation/members", nil, &ms); err != nil {
					return err
				}
			} else if err := e.withNode(func(n *node.Node) (err error) {
				ms, err = n.Members()
				if err == nil {
					fmt.Fprintln(e.stderr, "(the node is not running: members as it last saw them)")
				}
				return err
			}); err != nil {
				return err
			}
			if ms == nil {
				ms = []node.Member{}
			}
			if e.output == "json" {
				return e.printJSON(ms)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tPEER ID\tROLE\tSTATUS\tLEADER\tLAST SEEN")
			for _, m := range ms {
				lead := ""
				if m.Leader {
					lead = "*"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.PeerID, m.Role, m.Status, lead, dash(m.LastSeen))
			}
			return tw.Flush()
		},
	}
	e.addOutputFlag(c)
	return c
}

func fedLeaveCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "leave",
		Short: "Leave the federation (queued for the registry; the node sends it when it runs)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return e.queueCommand(func(n *node.Node) error { return n.Leave(e.ctx) }, "leaving the federation")
		},
	}
}

func fedSuspendCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "suspend PEER_ID",
		Short: "Suspend a member facility (voting members only; queued for the registry)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return e.queueCommand(func(n *node.Node) error { return n.Suspend(e.ctx, args[0]) }, "suspending "+args[0])
		},
	}
}

// queueCommand runs fn, which queues a signed command in the node's
// outbox. A running node sends it within a second; a stopped one when it
// next runs. The outbox is plain files, so this works either way.
func (e *env) queueCommand(fn func(*node.Node) error, what string) error {
	n, err := node.OpenIdentityOnly(node.Home(e.home))
	if err != nil {
		return err
	}
	if err := fn(n); err != nil {
		return err
	}
	if _, ok := e.runningNode(); ok {
		fmt.Fprintf(e.stdout, "%s: sent to the registry by the running node\n", what)
	} else {
		fmt.Fprintf(e.stdout, "%s: queued; the node sends it when it runs\n", what)
	}
	return nil
}
