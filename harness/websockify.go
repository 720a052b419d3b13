package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spiceharness/spiceharness/internal/proc"
	"github.com/spiceharness/spiceharness/internal/syncbuf"
	"github.com/spiceharness/spiceharness/internal/tail"
)

// SpiceHTML5Dir is where Debian's spice-html5 package puts its pages
// (spice_auto.html and its modules).
const SpiceHTML5Dir = "/usr/share/spice-html5"

// WebsockifyOptions configure StartWebsockify.
type WebsockifyOptions struct {
	// Targets maps each token to the HOST:PORT it opens (required): the
	// token file websockify's TokenFile plugin reads, one `TOKEN: HOST:PORT`
	// line each, re-read on every connection (SetTargets rewrites it).
	Targets map[string]string
	// Origin, when set, is the only Origin websockify accepts (its
	// ExpectOrigin plugin: 403 before the upgrade for any other, or
	// none). "origin" puts websockify's own origin (http://127.0.0.1:PORT,
	// where it serves Web) there.
	Origin string
	// Web is a directory websockify serves over HTTP on the same port
	// ("": SpiceHTML5Dir when it exists): spice-html5's pages, so a
	// browser loads spice_auto.html from websockify's own origin.
	Web string
	// Dir holds the token file and websockify's log ("": a new temporary
	// directory, removed by Close).
	Dir string
	// Binary is the websockify program ("": websockify from PATH).
	Binary string
}

// Websockify is Debian's websockify (the noVNC project's WebSocket to TCP
// bridge, what IsardVDI, Ravada and TrueNAS put in front of qemu for
// spice-html5) started on 127.0.0.1 with its token plugin: a WebSocket to
// ws://127.0.0.1:PORT/?token=T is relayed to the HOST:PORT of T, bytes
// unread (it does not terminate SPICE).
type Websockify struct {
	// URL is "ws://127.0.0.1:PORT"; a channel's URL adds /websockify?token=T.
	URL  string
	Port int
	// Origin is the origin websockify serves its pages from
	// (http://127.0.0.1:PORT).
	Origin string
	// Dir holds tokens (the token file) and websockify.log.
	Dir string

	child  *proc.Child
	log    *syncbuf.Buffer
	ownDir bool
	mu     sync.Mutex
}

// ErrWebsockify is matched by StartWebsockify's errors about websockify.
var ErrWebsockify = errors.New("harness: websockify")

// WebsockifyTokenFile renders a token file: `TOKEN: HOST:PORT` lines,
// sorted.
func WebsockifyTokenFile(targets map[string]string) ([]byte, error) {
	var lines []string
	for tok, addr := range targets {
		if tok == "" || strings.ContainsAny(tok, ": \t\r\n") {
			return nil, fmt.Errorf("%w: token %q: want letters and digits", ErrWebsockify, tok)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("%w: target %q is not HOST:PORT", ErrWebsockify, addr)
		}
		lines = append(lines, tok+": "+addr)
	}
	sort.Strings(lines)
	return []byte(strings.Join(lines, "\n") + "\n"), nil
}

// StartWebsockify writes the token file and runs websockify as a child,
// and returns once it accepts connections. Close stops it.
func StartWebsockify(ctx context.Context, o WebsockifyOptions) (*Websockify, error) {
	bin := o.Binary
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("websockify"); err != nil {
			return nil, fmt.Errorf("%w: not found (install websockify, or run make deps): %v", ErrWebsockify, err)
		}
	}
	w := &Websockify{Dir: o.Dir}
	if w.Dir == "" {
		dir, err := os.MkdirTemp("", "spice-harness-websockify-")
		if err != nil {
			return nil, err
		}
		w.Dir, w.ownDir = dir, true
	}
	if err := w.SetTargets(o.Targets); err != nil {
		w.Close()
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		err := w.start(ctx, bin, o)
		if err == nil {
			return w, nil
		}
		if !errors.Is(err, errWebsockifyBind) || attempt == squidPortAttempts || ctx.Err() != nil {
			w.Close()
			return nil, err
		}
	}
}

var errWebsockifyBind = errors.New("harness: websockify could not bind its port")

func (w *Websockify) tokenPath() string { return filepath.Join(w.Dir, "tokens") }

// SetTargets rewrites the token file (atomically, mode 0600: a token
// opens a plain path to qemu); websockify reads it on each connection.
func (w *Websockify) SetTargets(targets map[string]string) error {
	b, err := WebsockifyTokenFile(targets)
	if err != nil {
		return err
	}
	return writeFileAtomic(w.tokenPath(), b)
}

func (w *Websockify) start(ctx context.Context, bin string, o WebsockifyOptions) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)
	args := []string{"--token-plugin", "TokenFile", "--token-source", w.tokenPath()}
	switch o.Origin {
	case "":
	case "origin":
		args = append(args, "--auth-plugin", "ExpectOrigin", "--auth-source", origin)
	default:
		args = append(args, "--auth-plugin", "ExpectOrigin", "--auth-source", o.Origin)
	}
	web := o.Web
	if web == "" {
		if st, err := os.Stat(SpiceHTML5Dir); err == nil && st.IsDir() {
			web = SpiceHTML5Dir
		}
	}
	if web != "" {
		args = append(args, "--web", web)
	}
	args = append(args, fmt.Sprintf("127.0.0.1:%d", port))
	cmd := exec.Command(bin, args...)
	cmd.Dir = w.Dir
	logf := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = logf, logf
	child, err := proc.Start(cmd)
	if err != nil {
		return fmt.Errorf("%w: start: %v", ErrWebsockify, err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			w.mu.Lock()
			w.child, w.log, w.Port, w.Origin = child, logf, port, origin
			w.URL = fmt.Sprintf("ws://127.0.0.1:%d", port)
			w.mu.Unlock()
			return nil
		}
		select {
		case <-child.Exited():
			out := logf.String()
			if strings.Contains(out, "Address already in use") {
				return errWebsockifyBind
			}
			return fmt.Errorf("%w: exited before accepting connections (%v); its output:\n%s", ErrWebsockify, child.ProcessState(), tail.Lines(out, 10))
		case <-ctx.Done():
			child.Stop(time.Second)
			return fmt.Errorf("%w: not accepting connections: %v", ErrWebsockify, ctx.Err())
		case <-time.After(20 * time.Millisecond): // no readiness event: websockify prints before it binds
		}
	}
}

// tokenRE finds the tokens websockify prints (request paths, "Token 'x'
// not found").
var tokenRE = regexp.MustCompile(`(token=|Token ')[^&'"\s]+`)

// Log is websockify's output so far (connections, targets, refusals),
// its tokens redacted; it sees no SPICE ticket.
func (w *Websockify) Log() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.log == nil {
		return ""
	}
	return tokenRE.ReplaceAllString(w.log.String(), "${1}…")
}

// Exited is closed once websockify has exited.
func (w *Websockify) Exited() <-chan struct{} { return w.child.Exited() }

// ProcessState is websockify's exit state, nil while it runs.
func (w *Websockify) ProcessState() *os.ProcessState { return w.child.ProcessState() }

// Close stops websockify and the per-connection processes it forked
// (its process group), and removes Dir if StartWebsockify made it.
//
// SIGTERM goes to websockify's main process only: it terminates its
// handler processes itself and joins them. A SIGTERM to the whole group
// (as proc.Child.Stop sends) reaches a handler first at times; the handler
// then ignores the main process's own SIGTERM (websockify's terminate
// runs once per process) and the main process waits on it forever
// (websockify 0.10). What is left after the grace is killed with the
// group; websockify's exit status is not the proxy's verdict, so that is
// no error.
func (w *Websockify) Close() error {
	if w == nil {
		return nil
	}
	if w.child != nil {
		syscall.Kill(w.child.Pid(), syscall.SIGTERM)
		select {
		case <-w.child.Exited():
		case <-time.After(3 * time.Second):
		}
		w.child.Stop(time.Second) // the group's stragglers
	}
	if w.ownDir {
		os.RemoveAll(w.Dir)
	}
	return nil
}
