package cli

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/dicomesh/dicomesh/node"
)

func runCmd(e *env) *cobra.Command {
	var (
		ro       node.RunOptions
		p2p      string
		logJSON  bool
		logLevel string
	)
	c := &cobra.Command{
		Use:   "run",
		Short: "Run the node in the foreground until SIGTERM or SIGINT",
		Long: `Run starts the node: its libp2p host, the HTTP listener (/healthz, /readyz,
/metrics) and the services. The addresses it actually listens on (port 0 is
allowed) are written to node.json in the home, where other dicomesh commands
for the same --home find the running node.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return usagef("--log-level: %v", err)
			}
			hopts := &slog.HandlerOptions{Level: lvl}
			var handler slog.Handler = slog.NewTextHandler(e.stderr, hopts)
			if logJSON {
				handler = slog.NewJSONHandler(e.stderr, hopts)
			}
			if p2p != "" {
				ro.P2P = []string{p2p}
			}
			n, err := node.Open(node.Home(e.home), node.Options{Logger: slog.New(handler)})
			if err != nil {
				return err
			}
			defer n.Close()
			ro.Ready = func(ri node.RunInfo) {
				fmt.Fprintf(e.stdout, "running: peer %s, http %s\n", ri.PeerID, ri.HTTP)
			}
			return n.Run(e.ctx, ro)
		},
	}
	f := c.Flags()
	f.StringVar(&p2p, "p2p", "", "libp2p listen multiaddr (default from config.toml)")
	f.StringArrayVar(&ro.Announce, "announce", nil, "libp2p multiaddr other members dial instead of the listen address, repeatable (default from config.toml)")
	f.StringVar(&ro.HTTP, "http", "", "HTTP listen address HOST:PORT (default from config.toml)")
	f.StringVar(&ro.DICOM, "dicom", "", "DIMSE listen address HOST:PORT (default from config.toml)")
	f.StringVar(&ro.AET, "aet", "", "the node's DICOM AE title (default from config.toml)")
	f.StringVar(&ro.Pprof, "pprof", "", "serve Go runtime profiles under /debug/pprof/ on this loopback HOST:PORT (off by default)")
	f.BoolVar(&logJSON, "log-json", false, "log in JSON instead of text")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	return c
}
