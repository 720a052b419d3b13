// Command harness is the spice-harness CLI: up, serve, run, emit-example,
// validate and version.
//
// Exit codes: 0 success; 1 the command ran and failed (validate found
// errors); 2 usage error or the input could not be read. Errors are one
// line on stderr, "harness: …".
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
