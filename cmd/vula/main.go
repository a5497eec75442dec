// Command vula is the one binary of the Vula trust-services platform.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/vula-eid/vula/internal/cli"
)

var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, cli.Env{Args: os.Args[1:], Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Environ: os.Environ(), Version: version})
	stop()
	os.Exit(code)
}
