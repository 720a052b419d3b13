package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/spiceharness/spiceharness/internal/syncbuf"
	"github.com/spiceharness/spiceharness/static"
)

// A Wait is a readiness strategy of the exec target: how the harness
// knows that the proxy it started serves the lane's consoles, once after
// its start and again after each reload (ExecConfig.Ready). The harness
// checks it every 50 ms until it holds or the bound (ReadyWithin,
// ReloadWithin) passes; the failure then says which strategy was waited
// for and what it last saw.
//
//	WaitDirectVV()        the API's direct .vv of every console has its current ticket (the default)
//	WaitHTTP(path)        GET path on the API answers 2xx ({source} and {uuid}: for every console)
//	WaitLogLine(re)       the proxy printed a line matching re since the start or the reload
//	WaitPort(name)        the {name} port (plain_port, tls_port, api_port) accepts TCP
//	WaitSPICELink()       a proxy .vv of every console links main through the proxy (qemu took the ticket)
//	WaitAll(w…)           each of them, in order
//
// Only WaitDirectVV and WaitSPICELink see a changed ticket; the others
// prove what they check. A proxy that reloads in place (ReloadFile,
// ReloadSIGHUP) needs a strategy that can tell a reload from none:
// WaitPort and WaitSPICELink cannot (a port is open all along; a new link
// would end the lane's live session on that VM, as qemu serves one
// session per VM), so they go with ReloadRestart.
type Wait interface {
	fmt.Stringer
	// check returns nil once the proxy is ready.
	check(ctx context.Context, p *probe) error
	// inPlace says why the strategy cannot judge a reload in place (nil:
	// it can).
	inPlace() error
}

// probe is what a strategy looks at.
type probe struct {
	api   *APIClient
	srcs  []static.Source
	out   *syncbuf.Buffer // the proxy's stdout and stderr
	since int             // where this start's or reload's output begins in out
	vars  map[string]string
}

// WaitDirectVV waits until the API lists every console of the lane and
// its direct `.vv` carries the console's current ticket: exact after a
// start and after a reload, for a proxy whose API hands out direct `.vv`
// files (the direct-vv capability).
func WaitDirectVV() Wait { return directVVWait{} }

type directVVWait struct{}

func (directVVWait) String() string { return "WaitDirectVV()" }
func (directVVWait) inPlace() error { return nil }
func (directVVWait) check(ctx context.Context, p *probe) error {
	for _, s := range p.srcs {
		for _, c := range s.Consoles {
			k := static.Key{Source: s.Name, UUID: c.UUID}
			ok, err := p.api.Listed(ctx, k)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("the API does not list %s yet", k)
			}
			f, err := p.api.VV(ctx, Direct, k)
			if err != nil {
				return err
			}
			if f.Password != c.Ticket {
				return fmt.Errorf("the direct .vv of %s still has an older ticket", k)
			}
		}
	}
	return nil
}

// WaitHTTP waits until GET path on the proxy's API answers 2xx (with the
// exec target's token). A path with {source} and {uuid} is asked for
// every console of the lane ("/console/{source}/{uuid}": listed). After a
// reload in place it proves what the route proves: a route that answers
// only once the rewritten file is loaded makes it exact; a listing does
// not see a changed ticket.
func WaitHTTP(path string) Wait { return httpWait{path} }

type httpWait struct{ path string }

func (w httpWait) String() string { return fmt.Sprintf("WaitHTTP(%q)", w.path) }
func (httpWait) inPlace() error   { return nil }
func (w httpWait) check(ctx context.Context, p *probe) error {
	if !strings.Contains(w.path, "{source}") && !strings.Contains(w.path, "{uuid}") {
		_, _, err := p.api.get(ctx, w.path)
		return err
	}
	for _, s := range p.srcs {
		for _, c := range s.Consoles {
			k := static.Key{Source: s.Name, UUID: c.UUID}
			path := strings.NewReplacer("{source}", url.PathEscape(k.Source), "{uuid}", url.PathEscape(k.UUID)).Replace(w.path)
			if _, _, err := p.api.get(ctx, path); err != nil {
				return err
			}
		}
	}
	return nil
}

// WaitLogLine waits until the proxy prints (on stdout or stderr) a line
// matching re, after its start or after the reload being waited for: a
// JSON ready line (`"ready":true`) or a log line ("loaded 2 consoles").
func WaitLogLine(re *regexp.Regexp) Wait { return logWait{re} }

type logWait struct{ re *regexp.Regexp }

func (w logWait) String() string { return fmt.Sprintf("WaitLogLine(%q)", w.re) }
func (logWait) inPlace() error   { return nil }
func (w logWait) check(_ context.Context, p *probe) error {
	out := p.out.String()
	if p.since <= len(out) {
		out = out[p.since:]
	}
	for _, line := range strings.Split(out, "\n") {
		if w.re.MatchString(line) {
			return nil
		}
	}
	return fmt.Errorf("no line matching %q since the %s", w.re, map[bool]string{true: "start", false: "reload"}[p.since == 0])
}

// WaitPort waits until the port of the placeholder name ("plain_port",
// "tls_port" or "api_port", braces optional) accepts TCP connections on
// 127.0.0.1. It cannot tell a reload in place from none: use it with
// ReloadRestart.
func WaitPort(name string) Wait { return portWait{strings.Trim(name, "{}")} }

type portWait struct{ name string }

func (w portWait) String() string { return fmt.Sprintf("WaitPort(%q)", w.name) }
func (w portWait) inPlace() error {
	return fmt.Errorf("%s cannot tell a proxy reloaded in place from one that has not (its port is open all along): "+
		"use it with ReloadRestart, or wait with WaitLogLine, WaitHTTP or WaitDirectVV", w)
}
func (w portWait) check(ctx context.Context, p *probe) error {
	port, ok := p.vars["{"+w.name+"}"]
	if !ok {
		return permanent(fmt.Errorf("%s: no such placeholder (want plain_port, tls_port or api_port)", w))
	}
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c, err := d.DialContext(dctx, "tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		return err
	}
	return c.Close()
}

// WaitSPICELink waits until a proxy `.vv` of every console of the lane
// links a session through the proxy (qemu answered MAIN_INIT: the proxy
// has the console and its current ticket), then closes it. It uses one
// token per console per check. A link after a reload in place would end
// the lane's live session on that VM (qemu serves one session per VM):
// use it with ReloadRestart.
func WaitSPICELink() Wait { return spiceLinkWait{} }

type spiceLinkWait struct{}

func (spiceLinkWait) String() string { return "WaitSPICELink()" }
func (w spiceLinkWait) inPlace() error {
	return fmt.Errorf("%s cannot check a proxy reloaded in place (a new link would end the lane's live session on that VM: qemu serves one session per VM): "+
		"use it with ReloadRestart, or wait with WaitLogLine, WaitHTTP or WaitDirectVV", w)
}
func (spiceLinkWait) check(ctx context.Context, p *probe) error {
	for _, s := range p.srcs {
		for _, c := range s.Consoles {
			k := static.Key{Source: s.Name, UUID: c.UUID}
			f, err := p.api.VV(ctx, Proxy, k)
			if err != nil {
				return err
			}
			d := DialerFor(f)
			d.Timeout = 5 * time.Second
			sess, err := d.Connect(ctx)
			if err != nil {
				return fmt.Errorf("a session of %s through the proxy: %w", k, err)
			}
			sess.Close()
		}
	}
	return nil
}

// WaitAll waits for each of ws in turn.
func WaitAll(ws ...Wait) Wait { return allWait(ws) }

type allWait []Wait

func (w allWait) String() string {
	s := make([]string, len(w))
	for i, x := range w {
		s[i] = x.String()
	}
	return "WaitAll(" + strings.Join(s, ", ") + ")"
}

func (w allWait) inPlace() error {
	for _, x := range w {
		if err := x.inPlace(); err != nil {
			return err
		}
	}
	return nil
}

func (w allWait) check(ctx context.Context, p *probe) error {
	for _, x := range w {
		if err := x.check(ctx, p); err != nil {
			return fmt.Errorf("%s: %w", x, err)
		}
	}
	return nil
}

// ParseWait reads a strategy as variables and flags write it:
// "direct-vv", "spice-link", "http:PATH", "log:REGEXP" or "port:NAME".
func ParseWait(s string) (Wait, error) {
	kind, arg, hasArg := strings.Cut(strings.TrimSpace(s), ":")
	switch {
	case kind == "direct-vv" && !hasArg:
		return WaitDirectVV(), nil
	case kind == "spice-link" && !hasArg:
		return WaitSPICELink(), nil
	case kind == "http" && strings.HasPrefix(arg, "/"):
		return WaitHTTP(arg), nil
	case kind == "log" && arg != "":
		re, err := regexp.Compile(arg)
		if err != nil {
			return nil, fmt.Errorf("readiness %q: %w", s, err)
		}
		return WaitLogLine(re), nil
	case kind == "port" && arg != "":
		w := WaitPort(arg)
		if n := w.(portWait).name; n != "plain_port" && n != "tls_port" && n != "api_port" {
			return nil, fmt.Errorf("readiness %q: want port:plain_port, port:tls_port or port:api_port", s)
		}
		return w, nil
	}
	return nil, fmt.Errorf("readiness %q: want direct-vv, spice-link, http:/PATH, log:REGEXP or port:NAME", s)
}

// waitReady checks w until it holds or ctx ends.
func waitReady(ctx context.Context, w Wait, p *probe, what string) error {
	err := wait(ctx, 50*time.Millisecond, what+" (readiness: "+w.String()+")", func() (bool, error) {
		err := w.check(ctx, p)
		if errors.Is(err, ErrAPIAuth) || errors.Is(err, ErrAPIUnreachable) {
			return false, permanent(err)
		}
		return err == nil, err
	})
	return err
}
