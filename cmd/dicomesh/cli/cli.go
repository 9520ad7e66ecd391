package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/dicomesh/dicomesh/node"
	"github.com/dicomesh/dicomesh/node/audit"
)

// Exit codes.
const (
	exitOK       = 0
	exitFailure  = 1
	exitUsage    = 2
	exitRejected = 3
	exitDenied   = 4
)

// exitError carries an exit code other than exitFailure out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// env holds what every command shares.
type env struct {
	ctx    context.Context
	stdout io.Writer
	stderr io.Writer
	home   string
	output string
	as     string // who acts, for the audit trail; "" is the OS user
}

// user names who runs the command in audit records.
func (e *env) user() string {
	if e.as != "" {
		return e.as
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "unknown"
}

// Run executes the command line args and returns the process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{ctx: ctx, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "dicomesh",
		Short:         "Federated, encrypted exchange of medical images between hospitals",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&e.home, "home", defaultHome(), "node data directory (env DICOMESH_HOME)")
	root.PersistentFlags().StringVar(&e.as, "as", os.Getenv("DICOMESH_USER"), "who runs the command, as the audit trail names them (env DICOMESH_USER; default the OS user)")
	root.PersistentPreRun = func(*cobra.Command, []string) {
		e.ctx = node.WithActor(e.ctx, audit.Actor{User: e.user()})
	}
	root.AddCommand(
		initCmd(e),
		runCmd(e),
		ingestCmd(e),
		studiesCmd(e),
		exportCmd(e),
		synthCmd(e),
		demoCmd(e),
		auditCmd(e),
		federationCmd(e),
		findCmd(e),
		pullCmd(e),
		consentCmd(e),
		pacsCmd(e),
		pushCmd(e),
		versionCmd(e),
	)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "dicomesh: %v\n", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if isUsageError(err) {
		return exitUsage
	}
	return exitFailure
}

func defaultHome() string {
	if h := os.Getenv("DICOMESH_HOME"); h != "" {
		return h
	}
	if dir, err := os.UserHomeDir(); err == nil {
		return filepath.Join(dir, ".dicomesh")
	}
	return ".dicomesh"
}

// usageError marks flag and argument mistakes.
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

func isUsageError(err error) bool {
	var u usageError
	return errors.As(err, &u)
}

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func (e *env) openNode() (*node.Node, error) {
	n, err := node.Open(node.Home(e.home), node.Options{})
	if err != nil {
		if ri, rerr := node.ReadRunInfo(node.Home(e.home)); rerr == nil {
			return nil, fmt.Errorf("%w\n(a node is running for this home, pid %d, and holds its stores; its HTTP API is at http://%s)", err, ri.PID, ri.HTTP)
		}
	}
	return n, err
}

// addOutputFlag adds -o to a listing command.
func (e *env) addOutputFlag(c *cobra.Command) {
	c.Flags().StringVarP(&e.output, "output", "o", "table", "output format: table or json")
}

func (e *env) checkOutput() error {
	switch e.output {
	case "table", "json":
		return nil
	}
	return usagef("unknown output format %q (want table or json)", e.output)
}

func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func versionCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			v := "(devel)"
			if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
				v = bi.Main.Version
			}
			fmt.Fprintf(e.stdout, "dicomesh %s\n", v)
			return nil
		},
	}
}

// isTerminal reports whether w is a character device (a TTY).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
