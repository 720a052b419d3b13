package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spiceharness/spiceharness/internal/proc"
	"github.com/spiceharness/spiceharness/internal/shell"
	"github.com/spiceharness/spiceharness/internal/syncbuf"
	"github.com/spiceharness/spiceharness/internal/tail"
	"github.com/spiceharness/spiceharness/static"
)

// ExecConfig describes a proxy the harness starts itself, once per lane,
// and supervises: if it dies, the running scenario fails at once with
// its exit status and log tail, and the next lane starts a new one.
//
// The proxy must serve a Kerbside-style `.vv` API (see APIClient; the
// proxy `.vv` route at least) and load its consoles from the
// sources.yaml the harness writes (Kerbside's `type: static` format; one
// source per lane, named "harness"). Every field has an environment
// variable (ExecConfigFromEnv) and a `harness run` flag, named in the
// field's comment.
type ExecConfig struct {
	// Command is the proxy's command line (HARNESS_EXEC, --exec). It is
	// split into words like a shell would (single and double quotes
	// group; nothing is expanded), and these placeholders are replaced
	// in each word:
	//
	//	{sources}      the sources.yaml path (written before the start)
	//	{dir}          the lane's state directory
	//	{plain_port}   a free loopback port for its plain SPICE listener
	//	{tls_port}     a free loopback port for its TLS SPICE listener
	//	{api_port}     a free loopback port for its `.vv` API
	//	{api}          http://127.0.0.1:{api_port}
	//	{token_ttl}    the lane's token lifetime in whole seconds
	//
	// The command runs in the working directory of the process that
	// made the target (a test runs in its package's directory), so a
	// relative program ("./myproxy", "bin/myproxy") or argument
	// ("--config ./proxy.yaml") means what it says where it was written;
	// a bare name is looked up in PATH.
	//
	// Without {api_port} or {api} the proxy must print, on stdout, one
	// JSON line with an "api" member holding its API's base URL once it
	// is ready (`harness serve --json` does).
	Command string
	// Env adds KEY=VALUE pairs to the proxy's environment, which is the
	// harness's own otherwise (HARNESS_EXEC_ENV, shell words; --exec-env,
	// repeatable).
	Env []string
	// Token is the bearer token its API wants, "" for none
	// (HARNESS_EXEC_TOKEN, or --exec-token-file: never on a command
	// line).
	Token string
	// Reload says how the proxy learns a rewritten sources.yaml
	// (HARNESS_EXEC_RELOAD, --exec-reload; default ReloadFile).
	Reload Reload
	// Ready says how the harness knows the proxy serves the lane's
	// consoles, after its start and after each reload (HARNESS_EXEC_READY,
	// --exec-ready; default WaitDirectVV()). See Wait.
	Ready Wait
	// ReadyWithin bounds its start until Ready holds (0: 30 s;
	// HARNESS_EXEC_READY_WITHIN, --exec-ready-within); ReloadWithin how
	// long it may take to serve a rewritten file (0: 10 s;
	// HARNESS_EXEC_RELOAD_WITHIN, --exec-reload-within).
	ReadyWithin, ReloadWithin time.Duration
}

// Reload says how an exec target's proxy learns a rewritten sources.yaml.
type Reload string

const (
	// ReloadFile: the proxy watches the file (the default).
	ReloadFile Reload = "file"
	// ReloadSIGHUP: the harness sends SIGHUP after each write.
	ReloadSIGHUP Reload = "sighup"
	// ReloadRestart: the harness stops the proxy and starts it again.
	ReloadRestart Reload = "restart"
)

// Reloads are the Reload values, in the order messages list them.
var Reloads = []Reload{ReloadFile, ReloadSIGHUP, ReloadRestart}

// ParseReload reads a Reload ("file", "sighup", "restart").
func ParseReload(s string) (Reload, error) {
	for _, r := range Reloads {
		if string(r) == s {
			return r, nil
		}
	}
	names := make([]string, len(Reloads))
	for i, r := range Reloads {
		names[i] = string(r)
	}
	return "", fmt.Errorf("reload %q: want one of %s", s, strings.Join(names, ", "))
}

// Exec makes command the proxy under test, started per lane and
// supervised (the exec target):
//
//	env := harness.Start(t, harness.Exec("./myproxy --sources {sources} --api 127.0.0.1:{api_port}"))
//
// set, when given, tunes the rest of its ExecConfig:
//
//	harness.Exec("./myproxy …", func(c *harness.ExecConfig) { c.Reload = harness.ReloadSIGHUP })
//
// It is WithTarget(ExecTarget(cfg)).
func Exec(command string, set ...func(*ExecConfig)) Option {
	cfg := ExecConfig{Command: command}
	for _, f := range set {
		f(&cfg)
	}
	return WithTarget(ExecTarget(cfg))
}

// ExecTarget is the exec target of cfg, for WithTarget. It offers the
// direct-vv and terminate capabilities (through the API) and token-ttl
// when the command uses {token_ttl}. The command's program is resolved
// now, against the current working directory, where the command will
// also run.
func ExecTarget(cfg ExecConfig) NewTarget {
	argv, splitErr := shell.Split(cfg.Command)
	wd, wdErr := os.Getwd()
	prog := ""
	if splitErr == nil && len(argv) > 0 {
		prog = resolveProgram(argv[0], wd)
	}
	return func(s Settings) (Target, error) {
		cfg := cfg // each lane its own copy
		switch {
		case splitErr != nil:
			return nil, fmt.Errorf("the exec command: %w", splitErr)
		case len(argv) == 0:
			return nil, fmt.Errorf("the exec command is empty (set --exec or %s)", EnvExec)
		case wdErr != nil:
			return nil, fmt.Errorf("the exec command: the working directory: %w", wdErr)
		}
		if cfg.Reload == "" {
			cfg.Reload = ReloadFile
		}
		if _, err := ParseReload(string(cfg.Reload)); err != nil {
			return nil, fmt.Errorf("exec %w (set --exec-reload or %s)", err, EnvExecReload)
		}
		if cfg.Ready == nil {
			cfg.Ready = WaitDirectVV()
		}
		if cfg.Reload != ReloadRestart {
			if err := cfg.Ready.inPlace(); err != nil {
				return nil, fmt.Errorf("exec readiness with reload %q: %w (set --exec-ready/%s or --exec-reload/%s)", cfg.Reload, err, EnvExecReady, EnvExecReload)
			}
		}
		if cfg.ReadyWithin <= 0 {
			cfg.ReadyWithin = 30 * time.Second
		}
		if cfg.ReloadWithin <= 0 {
			cfg.ReloadWithin = 10 * time.Second
		}
		x := &execTarget{cfg: cfg, argv: argv, prog: prog, wd: wd, settings: s, died: make(chan struct{})}
		x.usesTTL = strings.Contains(cfg.Command, "{token_ttl}")
		return x, nil
	}
}

// resolveProgram is the program a command names, as a shell started in
// wd would run it: a relative path with a slash is made absolute against
// wd; a bare name stays for a PATH lookup at start; a name with a
// placeholder is left to run time. Whether it exists is the start's
// business (a target is also made only to list its capabilities).
func resolveProgram(name, wd string) string {
	if strings.Contains(name, "/") && !filepath.IsAbs(name) && !strings.Contains(name, "{") {
		return filepath.Join(wd, name)
	}
	return name
}

// ExecConfigFromEnv reads the exec target from the HARNESS_EXEC_*
// variables (HARNESS_EXEC is the command, "" when unset).
func ExecConfigFromEnv() (ExecConfig, error) {
	c := ExecConfig{Command: os.Getenv(EnvExec), Token: os.Getenv(EnvExecToken)}
	if v := os.Getenv(EnvExecEnv); v != "" {
		words, err := shell.Split(v)
		if err != nil {
			return c, fmt.Errorf("harness: %s: %w", EnvExecEnv, err)
		}
		for _, w := range words {
			if !strings.Contains(w, "=") || strings.HasPrefix(w, "=") {
				return c, fmt.Errorf("harness: %s: %q is not KEY=VALUE", EnvExecEnv, w)
			}
		}
		c.Env = words
	}
	if v := os.Getenv(EnvExecReload); v != "" {
		r, err := ParseReload(v)
		if err != nil {
			return c, fmt.Errorf("harness: %s: %w", EnvExecReload, err)
		}
		c.Reload = r
	}
	if v := os.Getenv(EnvExecReady); v != "" {
		w, err := ParseWait(v)
		if err != nil {
			return c, fmt.Errorf("harness: %s: %w", EnvExecReady, err)
		}
		c.Ready = w
	}
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{{EnvExecReadyWithin, &c.ReadyWithin}, {EnvExecReloadWithin, &c.ReloadWithin}} {
		if v := os.Getenv(d.name); v != "" {
			x, err := time.ParseDuration(v)
			if err != nil || x <= 0 {
				return c, fmt.Errorf("harness: %s=%q: want a positive duration like 30s", d.name, v)
			}
			*d.dst = x
		}
	}
	return c, nil
}

type execTarget struct {
	cfg      ExecConfig
	argv     []string
	prog     string // argv[0], resolved
	wd       string // where the command runs
	settings Settings
	usesTTL  bool

	env    *Env
	api    *APIClient
	vars   map[string]string
	loaded bool // the first Load follows the start: no restart

	mu       sync.Mutex
	child    *proc.Child
	started  time.Time
	out      *syncbuf.Buffer
	mark     int // where the output of the current reload begins in out
	closing  bool
	died     chan struct{}
	diedErr  error
	closeErr error
	once     sync.Once
}

func (x *execTarget) Name() string { return "exec " + x.argv[0] }

func (x *execTarget) Start(ctx context.Context, env *Env) error {
	x.env = env
	x.vars = map[string]string{"{sources}": env.SourcesYAML, "{dir}": env.Dir,
		"{token_ttl}": strconv.Itoa(max(1, int(x.settings.TokenTTL.Round(time.Second)/time.Second)))}
	for _, name := range []string{"plain_port", "tls_port", "api_port"} {
		p, err := freePort()
		if err != nil {
			return err
		}
		x.vars["{"+name+"}"] = strconv.Itoa(p)
	}
	x.vars["{api}"] = "http://127.0.0.1:" + x.vars["{api_port}"]
	return x.launch(ctx)
}

// launch starts the proxy and waits until its API answers.
func (x *execTarget) launch(ctx context.Context) error {
	argv := make([]string, len(x.argv))
	for i, w := range x.argv {
		if i == 0 {
			w = x.prog
		}
		for k, v := range x.vars {
			w = strings.ReplaceAll(w, k, v)
		}
		argv[i] = w
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), x.cfg.Env...)
	cmd.Dir = x.wd
	out := &syncbuf.Buffer{}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = out
	child, err := proc.Start(cmd)
	if err != nil {
		where := ""
		if x.prog != x.argv[0] {
			where = " (" + x.prog + ", resolved against " + x.wd + ")"
		}
		return fmt.Errorf("starting %s%s: %w", x.argv[0], where, err)
	}
	x.mu.Lock()
	x.child, x.out, x.started, x.mark = child, out, time.Now(), 0
	x.mu.Unlock()
	apiURL := make(chan string, 1)
	go x.readStdout(stdout, out, apiURL)
	go x.supervise(child)

	rctx, cancel := context.WithTimeout(ctx, x.cfg.ReadyWithin)
	defer cancel()
	base := ""
	if strings.Contains(x.cfg.Command, "{api") {
		base = x.vars["{api}"]
	} else {
		select {
		case base = <-apiURL:
		case <-child.Exited():
			return x.exitErr(child)
		case <-rctx.Done():
			return fmt.Errorf("%s printed no ready line with \"api\" within %v (use {api_port} in the command, or have it print {\"api\":URL})\n%s",
				x.argv[0], x.cfg.ReadyWithin, x.logTail())
		}
	}
	x.api = &APIClient{URL: strings.TrimRight(base, "/"), Token: x.cfg.Token, CredentialsHint: "the exec target's token (" + EnvExecToken + " or --exec-token-file)",
		HTTP: &http.Client{Timeout: 30 * time.Second}}
	x.env.APIURL = x.api.URL
	err = wait(rctx, 50*time.Millisecond, "waiting for "+x.argv[0]+"'s API at "+x.api.URL, func() (bool, error) {
		select {
		case <-child.Exited():
			return false, permanent(x.exitErr(child))
		default:
		}
		_, _, err := x.api.get(rctx, "/console")
		var he *HTTPError
		switch {
		case err == nil || errors.As(err, &he):
			return true, nil
		case errors.Is(err, ErrAPIAuth):
			return false, permanent(err)
		}
		return false, err
	})
	if err != nil {
		return fmt.Errorf("%w\n%s", err, x.logTail())
	}
	return nil
}

// readStdout copies the proxy's stdout into its log and reports the
// first JSON line with an "api" member.
func (x *execTarget) readStdout(r io.Reader, out io.Writer, apiURL chan<- string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sent := false
	for sc.Scan() {
		line := sc.Bytes()
		fmt.Fprintf(out, "%s\n", line)
		if !sent && len(line) > 0 && line[0] == '{' {
			var ready struct {
				API string `json:"api"`
			}
			if json.Unmarshal(line, &ready) == nil && ready.API != "" {
				apiURL <- ready.API
				sent = true
			}
		}
	}
	io.Copy(out, r)
}

// supervise records an exit the harness did not ask for.
func (x *execTarget) supervise(child *proc.Child) {
	<-child.Exited()
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closing || x.child != child {
		return
	}
	x.diedErr = x.exitErrLocked(child)
	close(x.died)
}

func (x *execTarget) exitErr(child *proc.Child) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.exitErrLocked(child)
}

func (x *execTarget) exitErrLocked(child *proc.Child) error {
	status := "exited"
	if st := child.ProcessState(); st != nil {
		status = st.String()
	}
	return &TargetExitError{Command: x.argv[0], Status: status, After: time.Since(x.started).Round(time.Millisecond), Log: tail.Lines(x.out.String(), 20)}
}

// TargetExitError: the proxy under test exited while the lane needed it.
type TargetExitError struct {
	Command string
	Status  string
	After   time.Duration
	Log     string // its log tail
}

func (e *TargetExitError) Error() string {
	return fmt.Sprintf("proxy under test exited (%s) %v after its start: %s; its log tail:\n%s", e.Status, e.After, e.Command, e.Log)
}

func (x *execTarget) Died() <-chan struct{} { return x.died }
func (x *execTarget) Err() error            { x.mu.Lock(); defer x.mu.Unlock(); return x.diedErr }

func (x *execTarget) logTail() string {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.out == nil {
		return ""
	}
	return "--- " + x.argv[0] + " log tail:\n" + tail.Lines(x.out.String(), 20)
}

// FailureLog is the proxy's log tail, for failed tests.
func (x *execTarget) FailureLog() string { return x.logTail() }

// beforeSources marks where the output of the reload about to happen
// begins (the lane calls it before it rewrites sources.yaml: a proxy
// watching the file may log its reload before Load runs).
func (x *execTarget) beforeSources() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.out != nil && x.loaded {
		x.mark = x.out.Len()
	}
}

func (x *execTarget) Load(ctx context.Context, srcs []static.Source) error {
	if err := x.checkAlive(); err != nil {
		return err
	}
	first := !x.loaded
	switch x.cfg.Reload {
	case ReloadSIGHUP:
		x.mu.Lock()
		err := syscall.Kill(x.child.Pid(), syscall.SIGHUP)
		x.mu.Unlock()
		if err != nil {
			return fmt.Errorf("SIGHUP to the proxy under test: %w", err)
		}
	case ReloadRestart:
		if !first {
			if err := x.restart(ctx); err != nil {
				return err
			}
			first = true
		}
	}
	x.loaded = true
	within, what := x.cfg.ReloadWithin, "the proxy under test did not serve the rewritten "+x.env.SourcesYAML
	if first {
		within, what = x.cfg.ReadyWithin, "the proxy under test did not become ready for the lane's consoles"
	}
	wctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	x.mu.Lock()
	p := &probe{api: x.api, srcs: srcs, out: x.out, since: x.mark, vars: x.vars}
	x.mu.Unlock()
	if err := waitReady(wctx, x.cfg.Ready, p, what); err != nil {
		if err := x.checkAlive(); err != nil {
			return err
		}
		return fmt.Errorf("%w\n(bound %v, reload mode %q; set --exec-ready/%s to wait on something else)\n%s", err, within, x.cfg.Reload, EnvExecReady, x.logTail())
	}
	return nil
}

func (x *execTarget) restart(ctx context.Context) error {
	x.mu.Lock()
	old := x.child
	x.closing = true
	x.mu.Unlock()
	old.Stop(5 * time.Second)
	x.mu.Lock()
	x.closing = false
	x.mu.Unlock()
	return x.launch(ctx)
}

func (x *execTarget) checkAlive() error {
	select {
	case <-x.died:
		return x.Err()
	default:
		return nil
	}
}

func (x *execTarget) ProxyVV(ctx context.Context, key static.Key) (*VVResponse, error) {
	if err := x.checkAlive(); err != nil {
		return nil, err
	}
	f, err := x.api.VV(ctx, Proxy, key)
	return f, x.whyFailed(err)
}

func (x *execTarget) DirectVV(ctx context.Context, key static.Key) (*VVResponse, error) {
	if err := x.checkAlive(); err != nil {
		return nil, err
	}
	f, err := x.api.VV(ctx, Direct, key)
	return f, x.whyFailed(err)
}

func (x *execTarget) SessionID(ctx context.Context, f *VVResponse) (string, error) {
	return x.api.SessionID(ctx, f)
}

func (x *execTarget) TerminateSession(ctx context.Context, id string) error {
	return x.whyFailed(x.api.TerminateSession(ctx, id))
}

func (x *execTarget) TerminateConsole(ctx context.Context, key static.Key) error {
	return x.whyFailed(x.api.TerminateConsole(ctx, key))
}

// whyFailed turns a request that failed below HTTP (the connection was
// refused or dropped) into the proxy's exit, when the proxy exits within
// a few seconds: "proxy under test exited (exit status 3)" and its log
// tail say more than "EOF".
func (x *execTarget) whyFailed(err error) error {
	var he *HTTPError
	if err == nil || errors.As(err, &he) || errors.Is(err, ErrAPIAuth) {
		return err
	}
	select {
	case <-x.died:
		return fmt.Errorf("%w (the request failed: %v)", x.Err(), err)
	case <-time.After(3 * time.Second):
		return err
	}
}

// TokenTTL is the lane's lifetime when the command passes it on.
func (x *execTarget) TokenTTL() time.Duration {
	if !x.usesTTL {
		return 0
	}
	return x.settings.TokenTTL
}

func (x *execTarget) AdvanceTokenClock(time.Duration) error { return ErrUnsupported }

// Close stops the proxy: SIGTERM to its process group, SIGKILL after 5 s.
func (x *execTarget) Close() error {
	x.once.Do(func() {
		x.mu.Lock()
		x.closing = true
		child := x.child
		x.mu.Unlock()
		if child != nil {
			if err := child.Stop(5 * time.Second); err != nil && !errors.Is(err, proc.ErrKilled) {
				var ee *exec.ExitError
				if !errors.As(err, &ee) {
					x.closeErr = err
				}
			}
		}
	})
	return x.closeErr
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// TerminatesSPICE: the proxy swaps its own credential for qemu's ticket.
func (x *execTarget) TerminatesSPICE() {}

// TerminateMethod says how the terminate routes were called (POST, or
// GET after a 405).
func (x *execTarget) TerminateMethod() string { return x.api.TerminateMethod() }
