// Command init is the Linux test guest's /init: see package guestagent.
// It wires the agent-port and WebDAV-port protocol packages to the
// agent.
package main

import (
	"context"
	"io"

	"github.com/spiceharness/spiceharness/internal/guestagent"
	"github.com/spiceharness/spiceharness/internal/guestagent/vdagent"
	"github.com/spiceharness/spiceharness/internal/guestagent/webdav"
)

func main() {
	guestagent.Run(guestagent.Config{
		Agent: func(ctx context.Context, port io.ReadWriter, r guestagent.Reporter) guestagent.Clipboard {
			return vdagent.Serve(ctx, port, r)
		},
		WebDAV: func(ctx context.Context, port io.ReadWriter, r guestagent.Reporter) guestagent.WebDAVReader {
			return webdav.New(ctx, port, r)
		},
	})
}
