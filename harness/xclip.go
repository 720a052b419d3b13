package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/spiceharness/spiceharness/internal/proc"
	"github.com/spiceharness/spiceharness/internal/syncbuf"
	"github.com/spiceharness/spiceharness/internal/tail"
)

// ClipboardOwner is an X client (xclip) holding the CLIPBOARD selection
// of an X display, as a user's application does after a copy.
type ClipboardOwner struct {
	child  *proc.Child
	stderr *syncbuf.Buffer
}

// SetClipboard makes a new X client own the display's CLIPBOARD
// selection with text (UTF8_STRING and the other text targets), the
// way copying in an application does: clients on the display that
// follow the clipboard (spice-gtk's) see the owner change and may ask
// for the text. The owner serves requests until another client takes
// the selection or Close.
func (x *Xvfb) SetClipboard(ctx context.Context, text []byte) (*ClipboardOwner, error) {
	bin, err := exec.LookPath("xclip")
	if err != nil {
		return nil, fmt.Errorf("harness: xclip not found (install xclip, or run make deps): %w", err)
	}
	// -quiet keeps xclip in the foreground (a child we stop); it serves
	// any number of requests until it loses the selection.
	cmd := exec.Command(bin, "-quiet", "-selection", "clipboard", "-i")
	cmd.Env = append(os.Environ(), "DISPLAY="+x.Display)
	cmd.Stdin = bytes.NewReader(text)
	o := &ClipboardOwner{stderr: &syncbuf.Buffer{}}
	cmd.Stdout, cmd.Stderr = o.stderr, o.stderr
	if o.child, err = proc.Start(cmd); err != nil {
		return nil, fmt.Errorf("harness: start xclip: %w", err)
	}
	// xclip reads all of stdin before it takes the selection; it says
	// nothing when it has, so a read of the selection is the barrier.
	for {
		got, err := x.Clipboard(ctx)
		if err == nil && bytes.Equal(got, text) {
			return o, nil
		}
		select {
		case <-o.child.Exited():
			return nil, fmt.Errorf("harness: xclip exited (%v): %s", o.child.ProcessState(), tail.Lines(o.stderr.String(), 5))
		case <-ctx.Done():
			o.Close()
			return nil, fmt.Errorf("harness: xclip never owned the clipboard of %s: %w", x.Display, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Close stops the owner (the selection then has none).
func (o *ClipboardOwner) Close() error {
	if o == nil {
		return nil
	}
	return o.child.Stop(time.Second)
}

// Clipboard reads the display's CLIPBOARD selection as text
// (UTF8_STRING), as pasting in an application does: from whichever
// client owns it.
func (x *Xvfb) Clipboard(ctx context.Context) ([]byte, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, "xclip", "-selection", "clipboard", "-o", "-t", "UTF8_STRING")
	cmd.Env = append(os.Environ(), "DISPLAY="+x.Display)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("harness: xclip -o on %s: %v: %s", x.Display, err, tail.Lines(stderr.String(), 3))
	}
	return out, nil
}
