// Command dicomesh runs and operates a dicomesh facility node.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/dicomesh/dicomesh/cmd/dicomesh/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
