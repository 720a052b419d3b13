package harness

import (
	"context"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/cdproto/cdp"
	jsonv2 "github.com/chromedp/cdproto/cdp/jsonv2"
	"github.com/chromedp/cdproto/fetch"
	cdplog "github.com/chromedp/cdproto/log"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/spiceharness/spiceharness/internal/tail"
)

//go:embed browserpage
var browserPage embed.FS

// pagePrefix is where a Page's files appear on the gateway's origin. The
// browser never asks the gateway for them: Page answers them itself
// (DevTools Fetch interception), so spice-html5 runs on the gateway's own
// origin, as it does when a VDI portal serves it beside its WebSocket, and
// a gateway that checks Origin sees its own.
const pagePrefix = "/__spice-harness/"

// WebSocketEndpoint is what spice-html5 needs to reach a console through
// a WebSocket gateway: the URL it opens one WebSocket per channel on, and
// the SPICE password it sends in each link. Either may be a secret (a
// token in the URL's path or query): the harness passes both to the page
// over the DevTools pipe only and never logs them.
type WebSocketEndpoint struct {
	URL      string // ws:// or wss://, with the gateway's path and query
	Password string
	// Origin is where the page is served from, the Origin its WebSockets
	// send: the origin of the gateway's own spice-html5 page
	// ("http://HOST:PORT"; "": the URL's own host and port).
	Origin string
}

// WebSocketEndpointOf is the endpoint of a fetched WebSocket `.vv`
// (Env.FetchVV with WS): its URL, password and the gateway's origin.
func WebSocketEndpointOf(f *VVResponse) WebSocketEndpoint {
	ep := WebSocketEndpoint{URL: f.WebSocketURL, Origin: f.WebSocketOrigin}
	if f.File != nil {
		ep.Password = f.Password
	}
	return ep
}

// Redacted is the endpoint's URL with its query and password cut, for
// logs: "ws://127.0.0.1:6081/spice?…".
func (ep WebSocketEndpoint) Redacted() string {
	u, err := url.Parse(ep.URL)
	if err != nil {
		return "(unparsable WebSocket URL)"
	}
	s := u.Scheme + "://" + u.Host + u.Path
	if u.RawQuery != "" {
		s += "?…"
	}
	return s
}

// origin is the page's origin: Origin, or the http(s) origin matching
// the WebSocket URL.
func (ep WebSocketEndpoint) origin() (string, error) {
	if ep.Origin != "" {
		o, err := url.Parse(ep.Origin)
		if err != nil || (o.Scheme != "http" && o.Scheme != "https") || o.Host == "" || (o.Path != "" && o.Path != "/") {
			return "", fmt.Errorf("harness: page origin %q: want http://HOST:PORT or https://HOST:PORT", ep.Origin)
		}
		return o.Scheme + "://" + o.Host, nil
	}
	u, err := url.Parse(ep.URL)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("harness: WebSocket URL %q: want ws://HOST:PORT/PATH or wss://…", ep.Redacted())
	}
	switch u.Scheme {
	case "ws":
		return "http://" + u.Host, nil
	case "wss":
		return "https://" + u.Host, nil
	}
	return "", fmt.Errorf("harness: WebSocket URL %s: scheme %q, want ws or wss", ep.Redacted(), u.Scheme)
}

// Page is one tab running spice-html5 against one WebSocket endpoint.
type Page struct {
	b      *Browser
	ep     WebSocketEndpoint
	origin string
	ctx    context.Context
	cancel context.CancelFunc
	served chan *fetch.EventRequestPaused
	wg     sync.WaitGroup

	mu         sync.Mutex
	console    []string // console errors and warnings, exceptions (redacted)
	firstPaint time.Duration
}

// Open opens a tab on spice-html5 and connects it to ep: it returns once
// spice-html5 started its main connection (not once it linked: see
// WaitPainted). The page is the harness's own, loading Debian's
// spice-html5 modules from HTML5Dir; the browser closes it with itself.
func (b *Browser) Open(ctx context.Context, ep WebSocketEndpoint) (*Page, error) {
	origin, err := ep.origin()
	if err != nil {
		return nil, err
	}
	tctx, cancel := chromedp.NewContext(b.ctx)
	p := &Page{b: b, ep: ep, origin: origin, ctx: tctx, cancel: cancel, served: make(chan *fetch.EventRequestPaused, 64)}
	b.mu.Lock()
	b.pages = append(b.pages, p)
	b.mu.Unlock()
	if err := p.open(ctx); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

func (p *Page) open(ctx context.Context) error {
	// Opening the tab runs on the tab's own context (its first action
	// binds the tab to it): ctx's end closes the tab instead.
	stop := context.AfterFunc(ctx, p.cancel)
	defer stop()
	if err := chromedp.Do(p.ctx); err != nil { // the tab itself
		return fmt.Errorf("harness: opening a tab: %w", err)
	}
	if err := chromedp.Listen(p.ctx, p.event); err != nil {
		return err
	}
	p.wg.Add(1)
	go p.serve()
	run := func(a chromedp.Action[chromedp.Void]) error {
		c, done := p.within(ctx)
		defer done()
		_, err := chromedp.Run(c, a)
		return err
	}
	enable := chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if _, err := cdp.Call(ctx, t, runtime.Enable, cdp.Empty{}); err != nil {
			return err
		}
		// Chromium's own messages: why a WebSocket handshake failed
		// ("Sent non-empty 'Sec-WebSocket-Protocol' header but no
		// response was received"), which the page's scripts never see.
		if _, err := cdp.Call(ctx, t, cdplog.Enable, cdp.Empty{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, t, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{
			{URLPattern: p.origin + pagePrefix + "*", RequestStage: fetch.RequestStageRequest},
		}})
		return err
	})
	if err := run(enable); err != nil {
		return fmt.Errorf("harness: preparing the tab: %w", err)
	}
	if err := run(chromedp.Navigate(p.origin + pagePrefix + "index.html")); err != nil {
		return fmt.Errorf("harness: loading the spice-html5 page: %w", err)
	}
	ok, err := pageEval[bool](p, ctx, `typeof window.harness === "object"`)
	if err != nil || !ok {
		return fmt.Errorf("harness: the spice-html5 page did not load its modules from %s (%v): %s", p.b.HTML5Dir, err, p.consoleTail())
	}
	args := []any{p.ep.URL, p.ep.Password}
	if _, err := pageCall[jsonv2.Value](p, ctx, `function(u, pw) { window.harness.connect(u, pw); }`, args...); err != nil {
		return fmt.Errorf("harness: spice-html5 refused to start: %w", err)
	}
	return nil
}

// within returns the tab's context, also ended by ctx (commands run on
// the tab's context; the caller's bounds their wait), and its release.
func (p *Page) within(ctx context.Context) (context.Context, func()) {
	c, cancel := context.WithCancelCause(p.ctx)
	stop := context.AfterFunc(ctx, func() { cancel(context.Cause(ctx)) })
	return c, func() { stop(); cancel(context.Canceled) }
}

// pageEval is evaluate on the tab, bounded by ctx.
func pageEval[T any](p *Page, ctx context.Context, expr string) (T, error) {
	c, done := p.within(ctx)
	defer done()
	return evaluate[T](c, expr)
}

// pageCall is call on the tab, bounded by ctx.
func pageCall[T any](p *Page, ctx context.Context, fn string, args ...any) (T, error) {
	c, done := p.within(ctx)
	defer done()
	return call[T](c, fn, args...)
}

// event records the tab's events; it runs on the tab's reader and must
// not block.
func (p *Page) event(ev any) {
	switch ev := ev.(type) {
	case *fetch.EventRequestPaused:
		select {
		case p.served <- ev:
		default:
			// 64 requests in flight: the page loads ~30 files. A request
			// left paused fails the page's load, which says so.
		}
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError && ev.Type != runtime.ConsoleAPICalledTypeWarning && ev.Type != runtime.ConsoleAPICalledTypeLog {
			return
		}
		var parts []string
		for _, a := range ev.Args {
			parts = append(parts, remoteText(a))
		}
		p.note(string(ev.Type) + ": " + strings.Join(parts, " "))
	case *cdplog.EventEntryAdded:
		if e := ev.Entry; e != nil && (e.Level == cdplog.EntryLevelError || e.Level == cdplog.EntryLevelWarning) {
			p.note("chromium " + string(e.Source) + " " + string(e.Level) + ": " + e.Text)
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil {
			msg += " " + remoteText(d.Exception)
		}
		p.note("exception: " + msg)
	}
}

// remoteText is a console argument as text.
func remoteText(o *runtime.RemoteObject) string {
	if o == nil {
		return ""
	}
	if len(o.Value) > 0 {
		var s string
		if err := json.Unmarshal(o.Value, &s); err == nil {
			return s
		}
		return string(o.Value)
	}
	if o.Description != "" {
		return o.Description
	}
	return string(o.Type)
}

// consoleKeep bounds the console lines a page keeps (spice-html5 logs a
// line per unknown message; a long session must not grow without end).
const consoleKeep = 200

func (p *Page) note(line string) {
	line = p.redact(line)
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.console) == consoleKeep {
		p.console = append(p.console[:0], p.console[consoleKeep/2:]...)
	}
	p.console = append(p.console, line)
}

// redact removes the endpoint's URL, query and password from s
// (spice-html5 logs "Connected to <url>").
func (p *Page) redact(s string) string {
	if p.ep.URL != "" {
		s = strings.ReplaceAll(s, p.ep.URL, p.ep.Redacted())
	}
	if u, err := url.Parse(p.ep.URL); err == nil && u.RawQuery != "" {
		s = strings.ReplaceAll(s, u.RawQuery, "…")
	}
	if p.ep.Password != "" {
		s = strings.ReplaceAll(s, p.ep.Password, "<password>")
	}
	return s
}

// Console is what the page logged (errors, warnings, spice-html5's log
// lines, uncaught exceptions), redacted, oldest first.
func (p *Page) Console() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.console...)
}

func (p *Page) consoleTail() string {
	c := p.Console()
	return strings.Join(c[max(0, len(c)-10):], "\n")
}

// serve answers the page's requests under pagePrefix: the harness's page
// and spice-html5's files. Anything else there is a 404.
func (p *Page) serve() {
	defer p.wg.Done()
	for {
		select {
		case <-p.ctx.Done():
			return
		case ev := <-p.served:
			status, body, ctype := p.file(ev.Request.URL)
			params := fetch.FulfillRequestParams{RequestID: ev.RequestID, ResponseCode: int64(status), Body: body,
				ResponseHeaders: []*fetch.HeaderEntry{{Name: "Content-Type", Value: ctype}, {Name: "Cache-Control", Value: "no-store"}}}
			if _, err := chromedp.Run(p.ctx, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
				_, err := cdp.Call(ctx, t, fetch.FulfillRequest, params)
				return err
			})); err != nil && p.ctx.Err() == nil {
				p.note("harness: serving " + ev.Request.URL + ": " + err.Error())
			}
		}
	}
}

// file maps a page URL to its content.
func (p *Page) file(raw string) (status int, body []byte, ctype string) {
	u, err := url.Parse(raw)
	if err != nil || !strings.HasPrefix(u.Path, pagePrefix) {
		return 404, []byte("not found"), "text/plain"
	}
	rel := path.Clean("/" + strings.TrimPrefix(u.Path, pagePrefix))[1:]
	if rest, ok := strings.CutPrefix(rel, "spice-html5/"); ok {
		body, err = os.ReadFile(filepath.Join(p.b.HTML5Dir, filepath.FromSlash(rest)))
		if err == nil && rest == "ticket.js" {
			body = patchTicketJS(body)
		}
	} else {
		body, err = fs.ReadFile(browserPage, "browserpage/"+rel)
	}
	if err != nil {
		return 404, []byte("not found"), "text/plain"
	}
	ctype = mime.TypeByExtension(path.Ext(rel))
	switch path.Ext(rel) {
	case ".js":
		ctype = "text/javascript" // modules need a JavaScript type
	case "":
		ctype = "application/octet-stream"
	}
	return 200, body, ctype
}

// ticketShortHex and ticketFullHex are spice-html5 0.3.0's rsa_encrypt
// hex conversion, and the same keeping the ciphertext's leading zero
// bytes.
const (
	ticketShortHex = "var h = enc.toString(16);\n    if ((h.length & 1) != 0)\n        h = \"0\" + h;"
	ticketFullHex  = "var h = enc.toString(16);\n    while (h.length < ((rsa.n.bitLength() + 7) >> 3) * 2) /* spice-harness: keep leading zero bytes */\n        h = \"0\" + h;"
)

// patchTicketJS fixes a bug of spice-html5's that is the client's, not
// the gateway's: rsa_encrypt turns the encrypted ticket into bytes
// through BigInteger.toString(16), which drops its leading zero bytes,
// so when the ciphertext's top byte is 0 the 128-byte ticket goes out
// shifted and no server decrypts it ("Permission denied.", PERMISSION_DENIED
// from qemu or a terminating gateway alike). Measured in Chromium
// against five RSA-1024 keys: 62 of 10 000 tickets short, about one link
// in 160, so a session of four channels fails one time in 40. A person
// reloads the page; an oracle must not flake, so the page's copy keeps the
// zeros. A spice-html5 without that code is served as it is.
func patchTicketJS(src []byte) []byte {
	return []byte(strings.Replace(string(src), ticketShortHex, ticketFullHex, 1))
}

// evaluate runs a JavaScript expression in the page (awaiting a promise)
// and decodes its value.
func evaluate[T any](ctx context.Context, expr string) (T, error) {
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// call calls a JavaScript function declaration with args (passed as
// protocol values, never spliced into source) and decodes its result.
func call[T any](ctx context.Context, fn string, args ...any) (T, error) {
	return chromedp.Run(ctx, func(ctx context.Context, t *chromedp.Target) (T, error) {
		var zero T
		win, err := cdp.Call(ctx, t, runtime.Evaluate, runtime.EvaluateParams{Expression: "window"})
		if err != nil {
			return zero, err
		}
		var cargs []*runtime.CallArgument
		for _, a := range args {
			v, err := json.Marshal(a)
			if err != nil {
				return zero, err
			}
			cargs = append(cargs, &runtime.CallArgument{Value: jsonv2.Value(v)})
		}
		yes := true
		r, err := cdp.Call(ctx, t, runtime.CallFunctionOn, runtime.CallFunctionOnParams{
			FunctionDeclaration: fn, ObjectID: win.Result.ObjectID, Arguments: cargs, ReturnByValue: &yes, AwaitPromise: &yes,
		})
		cdp.Call(ctx, t, runtime.ReleaseObject, runtime.ReleaseObjectParams{ObjectID: win.Result.ObjectID}) //nolint:errcheck // freed with the page anyway
		if err != nil {
			return zero, err
		}
		if r.ExceptionDetails != nil {
			return zero, &chromedp.ExceptionError{ExceptionDetails: r.ExceptionDetails}
		}
		var out T
		if r.Result == nil || len(r.Result.Value) == 0 {
			return out, nil
		}
		if err := json.Unmarshal(r.Result.Value, &out); err != nil {
			return zero, fmt.Errorf("harness: decoding a page result: %w", err)
		}
		return out, nil
	})
}

// SocketState is one of the WebSockets spice-html5 opened (one per SPICE
// channel), as the page saw it.
type SocketState struct {
	Channel  string  `json:"channel"`  // "main", "display", "inputs", "cursor", …
	Link     string  `json:"link"`     // spice-html5's channel state: "start", "link", "ticket", "ready", "error"
	State    string  `json:"state"`    // the WebSocket's: "connecting", "open", "closed"
	Protocol string  `json:"protocol"` // the subprotocol the gateway chose
	Code     int     `json:"code"`     // the close code (0 while open)
	Reason   string  `json:"reason"`   // the close reason
	Clean    bool    `json:"clean"`    // a close handshake happened
	Error    bool    `json:"error"`    // the socket fired an error event
	Opened   float64 `json:"opened"`   // ms after connect
	Closed   float64 `json:"closed"`   // ms after connect
}

// PageState is what the page knows about its connection.
type PageState struct {
	Started   bool          `json:"started"`
	Connected bool          `json:"connected"` // spice-html5's success callback ran (main linked, MAIN_INIT read)
	Errors    []string      `json:"errors"`    // spice-html5's error callback, in order
	Sockets   []SocketState `json:"sockets"`
	Draws     int           `json:"draws"`   // draw calls on a SPICE surface
	Painted   *float64      `json:"painted"` // ms from connect to the first non-blank primary surface
	Width     int           `json:"width"`   // the primary surface (0: none yet)
	Height    int           `json:"height"`
}

// State reads the page's view of its connection.
func (p *Page) State(ctx context.Context) (PageState, error) {
	st, err := pageEval[PageState](p, ctx, `window.harness.state()`)
	if err != nil {
		return st, p.deadErr(err)
	}
	for i := range st.Errors {
		st.Errors[i] = p.redact(st.Errors[i])
	}
	return st, nil
}

// deadErr adds the browser's state to an error of a page call.
func (p *Page) deadErr(err error) error {
	select {
	case <-p.b.Exited():
		return fmt.Errorf("harness: chromium exited (%v): %w\n%s", p.b.child.ProcessState(), err, tail.Lines(p.b.Output(), 10))
	default:
		return err
	}
}

// PageError is what the page reported when spice-html5 did not show the
// guest: its error callback's messages ("Permission denied.", "Unexpected
// close while ready", …), the WebSockets that closed or failed with
// their codes, and the console's last lines. errors.As finds it in the
// errors of WaitPainted, WaitCanvas and Err.
type PageError struct {
	Errors  []string
	Sockets []SocketState // those closed or failed
	Console []string
}

func (e *PageError) Error() string {
	var b strings.Builder
	b.WriteString("spice-html5: ")
	switch {
	case len(e.Errors) > 0:
		b.WriteString(strings.Join(e.Errors, "; "))
	case len(e.Sockets) > 0:
		// No error of its own (spice-html5 reports only the main
		// channel's): the first socket that ended says what happened.
		b.WriteString("the " + e.Sockets[0].String())
	default:
		b.WriteString("no error of its own")
	}
	for _, s := range e.Sockets {
		b.WriteString("\n  " + s.String())
	}
	if len(e.Console) > 0 {
		b.WriteString("\n  console:\n    " + strings.Join(e.Console, "\n    "))
	}
	return b.String()
}

// String says how the socket ended: "inputs WebSocket closed with code
// 1008 ("SPICE link refused: PERMISSION_DENIED")".
func (s SocketState) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s WebSocket %s", orUnknown(s.Channel), s.State)
	if s.State == "closed" {
		fmt.Fprintf(&b, " with code %d", s.Code)
		if s.Reason != "" {
			fmt.Fprintf(&b, " (%q)", s.Reason)
		}
		if !s.Clean {
			b.WriteString(", no close handshake")
		}
	}
	if s.Error {
		b.WriteString(", error event")
	}
	if s.Protocol == "" && s.Opened == 0 {
		b.WriteString(", never opened")
	}
	return b.String()
}

func orUnknown(s string) string {
	if s == "" {
		return "(channel unknown)"
	}
	return s
}

// ErrPageNotPainted: the page's canvas did not show the guest in time.
var ErrPageNotPainted = errors.New("harness: spice-html5 painted no picture of the guest")

// pageError builds the PageError of st, nil when st shows no error and
// no failed socket.
func (p *Page) pageError(st PageState) *PageError {
	e := &PageError{Errors: st.Errors}
	for _, s := range st.Sockets {
		if s.State == "closed" || s.Error {
			e.Sockets = append(e.Sockets, s)
		}
	}
	if len(e.Errors) == 0 && len(e.Sockets) == 0 {
		return nil
	}
	c := p.Console()
	e.Console = c[max(0, len(c)-8):]
	return e
}

// Err returns a *PageError when spice-html5 reported an error or one of
// its WebSockets closed or failed, nil otherwise.
func (p *Page) Err(ctx context.Context) error {
	st, err := p.State(ctx)
	if err != nil {
		return err
	}
	if e := p.pageError(st); e != nil {
		return e
	}
	return nil
}

// waitChange returns the page's state once it differs from st: a draw,
// an error, a socket opening or closing.
func (p *Page) waitChange(ctx context.Context, st PageState) (PageState, error) {
	sig, err := pageEval[string](p, ctx, `window.harness.sig()`)
	if err != nil {
		return st, p.deadErr(err)
	}
	next, err := pageCall[PageState](p, ctx, `function(d, e, s) { return window.harness.change(d, e, s); }`, st.Draws, len(st.Errors), sig)
	if err != nil {
		return st, p.deadErr(err)
	}
	for i := range next.Errors {
		next.Errors[i] = p.redact(next.Errors[i])
	}
	return next, nil
}

// WaitError returns the page's *PageError as soon as spice-html5
// reports an error or one of its WebSockets closes or fails; nil when
// ctx ends first (nothing went wrong meanwhile).
func (p *Page) WaitError(ctx context.Context) error {
	st, err := p.State(ctx)
	for err == nil {
		if e := p.pageError(st); e != nil {
			return e
		}
		st, err = p.waitChange(ctx, st)
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// WaitPainted waits until the primary surface first holds a picture
// that is not one flat colour, and returns the time from connect to that
// draw, as the page measured it. It fails at once with a *PageError when
// spice-html5 reports an error first.
func (p *Page) WaitPainted(ctx context.Context) (time.Duration, error) {
	st, err := p.State(ctx)
	for err == nil {
		if st.Painted != nil {
			d := time.Duration(*st.Painted * float64(time.Millisecond))
			p.mu.Lock()
			p.firstPaint = d
			p.mu.Unlock()
			return d, nil
		}
		if e := p.pageError(st); e != nil {
			return 0, fmt.Errorf("%w: %w", ErrPageNotPainted, e)
		}
		st, err = p.waitChange(ctx, st)
	}
	if ctx.Err() != nil {
		if e := p.pageError(st); e != nil {
			return 0, fmt.Errorf("%w: %w (and %w)", ErrPageNotPainted, e, err)
		}
		return 0, fmt.Errorf("%w: %w (spice-html5 reported nothing; %d draws, %d sockets)", ErrPageNotPainted, err, st.Draws, len(st.Sockets))
	}
	return 0, err
}

// FirstPaint is what WaitPainted measured (0 before).
func (p *Page) FirstPaint() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.firstPaint
}

// Canvas reads the primary surface's pixels (what spice-html5 drew, at
// the guest's resolution).
func (p *Page) Canvas(ctx context.Context) (*Image, error) {
	type px struct {
		Width, Height int
		RGB           string
	}
	r, err := pageEval[*px](p, ctx, `window.harness.pixels()`)
	if err != nil {
		return nil, p.deadErr(err)
	}
	if r == nil {
		return nil, fmt.Errorf("%w: no primary surface yet", ErrPageNotPainted)
	}
	pix, err := base64.StdEncoding.DecodeString(r.RGB)
	if err != nil || len(pix) != 3*r.Width*r.Height {
		return nil, fmt.Errorf("harness: the page's canvas: %d bytes for %dx%d (%v)", len(pix), r.Width, r.Height, err)
	}
	return &Image{W: r.Width, H: r.Height, Pix: pix}, nil
}

// WaitCanvas reads the canvas after each draw until ok accepts it, and
// returns it. It fails with the last picture and a *PageError when
// spice-html5 reports an error, or ctx's error when ctx ends first.
func (p *Page) WaitCanvas(ctx context.Context, ok func(*Image) bool) (*Image, error) {
	var last *Image
	st, err := p.State(ctx)
	for err == nil {
		if st.Width > 0 {
			img, cerr := p.Canvas(ctx)
			if cerr != nil {
				return last, cerr
			}
			last = img
			if ok(img) {
				return img, nil
			}
		}
		if e := p.pageError(st); e != nil {
			return last, e
		}
		st, err = p.waitChange(ctx, st)
	}
	if e := p.pageError(st); e != nil && ctx.Err() != nil {
		return last, fmt.Errorf("%w (and %w)", e, err)
	}
	return last, err
}

// WaitInputs waits until spice-html5's inputs channel is linked (its
// state "ready"): before that spice-html5 drops the keys a person types.
// It fails with a *PageError when spice-html5 reports an error first.
func (p *Page) WaitInputs(ctx context.Context) error {
	st, err := p.State(ctx)
	for err == nil {
		for _, s := range st.Sockets {
			if s.Channel == "inputs" && s.Link == "ready" && s.State == "open" {
				return nil
			}
		}
		if e := p.pageError(st); e != nil {
			return fmt.Errorf("harness: spice-html5's inputs channel never linked: %w", e)
		}
		st, err = p.waitChange(ctx, st)
	}
	if e := p.pageError(st); e != nil {
		return fmt.Errorf("harness: spice-html5's inputs channel never linked: %w (and %w)", e, err)
	}
	return fmt.Errorf("harness: spice-html5's inputs channel never linked (sockets %+v): %w", st.Sockets, err)
}

// Type types text into the page the way a person would, once the inputs
// channel is linked (WaitInputs): the canvas has the focus and each rune
// is a key down, char and key up (Input.dispatchKeyEvent), which
// spice-html5 turns into scancodes on its inputs channel. Use letters,
// digits, space and Enter ("\n"): spice-html5 maps keys by the browser's
// key codes.
func (p *Page) Type(ctx context.Context, text string) error {
	if err := p.WaitInputs(ctx); err != nil {
		return err
	}
	ok, err := pageEval[bool](p, ctx, `window.harness.focus()`)
	if err != nil {
		return p.deadErr(err)
	}
	if !ok {
		return fmt.Errorf("%w: no canvas to type into", ErrPageNotPainted)
	}
	c, done := p.within(ctx)
	defer done()
	if _, err := chromedp.Run(c, chromedp.KeyEvent(text)); err != nil {
		return p.deadErr(fmt.Errorf("harness: typing into the page: %w", err))
	}
	return nil
}

// Screenshot captures the tab as a person sees it (PNG).
func (p *Page) Screenshot(ctx context.Context) ([]byte, error) {
	c, done := p.within(ctx)
	defer done()
	return chromedp.Run(c, func(ctx context.Context, t *chromedp.Target) ([]byte, error) {
		r, err := cdp.Call(ctx, t, cdppage.CaptureScreenshot, cdppage.CaptureScreenshotParams{Format: cdppage.CaptureScreenshotFormatPng})
		if err != nil {
			return nil, err
		}
		return r.Data, nil
	})
}

// Visible captures the part of the tab where the guest's screen is, as
// Chromium composites it for a person (Page.captureScreenshot clipped to
// the canvas), rather than the canvas's own pixels (Canvas).
func (p *Page) Visible(ctx context.Context) (*Image, error) {
	type rect struct{ X, Y, Width, Height float64 }
	r, err := pageEval[*rect](p, ctx, `window.harness.rect()`)
	if err != nil {
		return nil, p.deadErr(err)
	}
	if r == nil || r.Width <= 0 || r.Height <= 0 {
		return nil, fmt.Errorf("%w: no primary surface on the page", ErrPageNotPainted)
	}
	png, err := p.Screenshot(ctx)
	if err != nil {
		return nil, p.deadErr(err)
	}
	page, err := DecodePNG(png)
	if err != nil {
		return nil, err
	}
	return page.Crop(int(r.X), int(r.Y), int(r.Width), int(r.Height))
}

// Close disconnects spice-html5 and closes the tab. Idempotent.
func (p *Page) Close() {
	if p == nil || p.cancel == nil {
		return
	}
	if p.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		pageEval[chromedp.Void](p, ctx, `window.harness && window.harness.stop()`) //nolint:errcheck // closing the tab ends its sockets anyway
		cancel()
	}
	p.cancel()
	p.wg.Wait()
	p.b.mu.Lock()
	for i, q := range p.b.pages {
		if q == p {
			p.b.pages = append(p.b.pages[:i], p.b.pages[i+1:]...)
			break
		}
	}
	p.b.mu.Unlock()
}

// OpenPage opens spice-html5 on ep in the lane's browser (headless
// Chromium, started by the first OpenPage: one per lane, a tab per page).
// The lane owns the page: when the test fails, the report gets a
// screenshot of it (SaveArtifact) and its console before Close closes it.
func (e *Env) OpenPage(ctx context.Context, ep WebSocketEndpoint) (*Page, error) {
	e.mu.Lock()
	b := e.browser
	e.mu.Unlock()
	if b == nil {
		nb, err := StartBrowser(ctx, BrowserOptions{Logger: e.log})
		if err != nil {
			return nil, err
		}
		e.mu.Lock()
		if e.browser == nil {
			e.browser = nb
		} else {
			defer nb.Close()
		}
		b = e.browser
		e.mu.Unlock()
	}
	return b.Open(ctx, ep)
}
