package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/internal/shell"
	"github.com/spiceharness/spiceharness/static"
)

// fakeProxyEnv makes the test binary act as a proxy under test (see
// TestMain): a unit-test stand-in that serves an API and dies on demand.
const fakeProxyEnv = "HARNESS_TEST_FAKE_PROXY"

// fakeProxy is the stand-in's main: `fake-proxy MODE [ADDR]`.
//
//	exit3   prints "boom" and exits 3
//	serve   serves an API on ADDR; GET /die makes it print "dying" and exit 2;
//	        SIGHUP makes it print "reloaded N"
//	ready   serves on a port of its own and prints {"api": URL}
func fakeProxy(args []string) int {
	mode := args[0]
	switch mode {
	case "exit3":
		fmt.Fprintln(os.Stderr, "boom")
		return 3
	}
	addr := "127.0.0.1:0"
	if len(args) > 1 {
		addr = args[1]
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if mode == "ready" {
		fmt.Printf("starting\n{\"api\":\"http://%s\"}\n", ln.Addr())
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for n := 1; ; n++ {
			<-hup
			fmt.Fprintf(os.Stderr, "reloaded %d\n", n)
		}
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /console", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("[]")) })
	mux.HandleFunc("GET /die", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(os.Stderr, "dying")
		os.Exit(2)
	})
	fmt.Fprintln(os.Stderr, "serving")
	http.Serve(ln, mux)
	return 0
}

func fakeExec(t *testing.T, args string, set ...func(*ExecConfig)) (*execTarget, *Env) {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	cfg := ExecConfig{Command: shell.Quote(self) + " " + args, Env: []string{fakeProxyEnv + "=1"}, ReadyWithin: 20 * time.Second}
	for _, f := range set {
		f(&cfg)
	}
	tg, err := ExecTarget(cfg)(Settings{})
	require.NoError(t, err)
	dir := t.TempDir()
	env := &Env{Dir: dir, SourcesYAML: filepath.Join(dir, "sources.yaml"), target: tg, closed: make(chan struct{}), cfg: &config{}}
	t.Cleanup(func() { tg.Close() })
	return tg.(*execTarget), env
}

func TestExecStartReportsAnEarlyExit(t *testing.T) {
	x, env := fakeExec(t, "exit3")
	err := x.Start(context.Background(), env)
	var te *TargetExitError
	require.ErrorAs(t, err, &te)
	assert.Equal(t, "exit status 3", te.Status)
	assert.Contains(t, te.Log, "boom")
}

func TestExecSupervisesAndEndsTheScenario(t *testing.T) {
	x, env := fakeExec(t, "serve 127.0.0.1:{api_port}")
	require.NoError(t, x.Start(context.Background(), env))
	assert.Equal(t, "http://127.0.0.1:"+x.vars["{api_port}"], env.APIURL)
	ctx, stop := env.Context(context.Background())
	defer stop()
	require.NoError(t, env.TargetErr())

	resp, err := http.Get(env.APIURL + "/die")
	if err == nil {
		resp.Body.Close()
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the scenario context did not end 10 s after the proxy died")
	}
	var te *TargetExitError
	require.ErrorAs(t, context.Cause(ctx), &te, "the cause names the exit")
	assert.Equal(t, "exit status 2", te.Status)
	assert.Contains(t, te.Log, "dying")
	assert.True(t, strings.HasPrefix(te.Error(), "proxy under test exited (exit status 2)"), te.Error())
	require.ErrorAs(t, env.TargetErr(), &te)
	_, err = x.ProxyVV(context.Background(), static.Key{Source: "lab", UUID: "u1"})
	require.ErrorAs(t, err, &te, "calls after the death fail with it at once")
}

func TestExecReadyLine(t *testing.T) {
	x, env := fakeExec(t, "ready")
	require.NoError(t, x.Start(context.Background(), env))
	assert.True(t, strings.HasPrefix(env.APIURL, "http://127.0.0.1:"), env.APIURL)
	require.NoError(t, x.Close())
	require.NoError(t, env.TargetErr(), "an exit the harness asked for is no death")
}

func TestExecConfigErrors(t *testing.T) {
	_, err := ExecTarget(ExecConfig{Command: "  "})(Settings{})
	assert.ErrorContains(t, err, "HARNESS_EXEC")
	_, err = ExecTarget(ExecConfig{Command: "true", Reload: "poll"})(Settings{})
	assert.ErrorContains(t, err, "file, sighup, restart")
	assert.ErrorContains(t, err, "--exec-reload or HARNESS_EXEC_RELOAD")
	_, err = ExecTarget(ExecConfig{Command: "true", Ready: WaitSPICELink()})(Settings{})
	assert.ErrorContains(t, err, "use it with ReloadRestart", "a strategy that cannot judge a reload in place, with a proxy reloaded in place")
	_, err = ExecTarget(ExecConfig{Command: "true", Ready: WaitSPICELink(), Reload: ReloadRestart})(Settings{})
	assert.NoError(t, err)
	var ce *CapabilityError
	tg, err := ExecTarget(ExecConfig{Command: "true"})(Settings{})
	require.NoError(t, err)
	env := &Env{target: tg}
	err = env.WaitIdle(context.Background())
	require.True(t, errors.As(err, &ce) && errors.Is(err, ErrUnsupported), "got %v", err)
	assert.Equal(t, CapIdle, ce.Cap)
}

// A relative program is the caller's, not the lane directory's: it is
// resolved against the working directory of whoever made the target,
// and the command runs there.
func TestExecRelativeCommand(t *testing.T) {
	dir := t.TempDir()
	self, err := os.Executable()
	require.NoError(t, err)
	require.NoError(t, os.Symlink(self, filepath.Join(dir, "myproxy")))
	t.Chdir(dir)
	x, env := fakeExec(t, "", func(c *ExecConfig) { c.Command = "./myproxy serve 127.0.0.1:{api_port}" })
	assert.Equal(t, filepath.Join(dir, "myproxy"), x.prog)
	assert.Equal(t, "exec ./myproxy", x.Name(), "reports name the program as written")
	require.NoError(t, x.Start(context.Background(), env))

	y, env := fakeExec(t, "", func(c *ExecConfig) { c.Command = "./not-here --sources {sources}" })
	err = y.Start(context.Background(), env)
	assert.ErrorContains(t, err, "starting ./not-here ("+filepath.Join(dir, "not-here")+", resolved against "+dir+")")
}

// Readiness strategies wait for this start's or this reload's evidence,
// never an earlier one.
func TestExecReadyStrategies(t *testing.T) {
	srcs := []static.Source{{Name: "lab", Type: static.TypeStatic}}
	t.Run("log line after each reload", func(t *testing.T) {
		x, env := fakeExec(t, "serve 127.0.0.1:{api_port}", func(c *ExecConfig) {
			c.Reload, c.Ready, c.ReloadWithin = ReloadSIGHUP, WaitLogLine(regexp.MustCompile(`^reloaded \d+$`)), 5*time.Second
		})
		require.NoError(t, x.Start(context.Background(), env))
		require.NoError(t, x.Load(context.Background(), srcs), "the first load waits for the first SIGHUP's line")
		require.Contains(t, x.out.String(), "reloaded 1")
		x.beforeSources()
		require.NoError(t, x.Load(context.Background(), srcs), "a reload waits for its own line")
		assert.Contains(t, x.out.String(), "reloaded 2")
	})
	t.Run("a line from before the reload does not count", func(t *testing.T) {
		x, env := fakeExec(t, "serve 127.0.0.1:{api_port}", func(c *ExecConfig) {
			c.Ready, c.ReloadWithin = WaitLogLine(regexp.MustCompile(`^serving$`)), 300*time.Millisecond
		})
		require.NoError(t, x.Start(context.Background(), env))
		require.NoError(t, x.Load(context.Background(), srcs))
		x.beforeSources()
		err := x.Load(context.Background(), srcs)
		require.Error(t, err)
		assert.Contains(t, err.Error(), `WaitLogLine("^serving$")`, "the failure names the strategy")
		assert.Contains(t, err.Error(), "no line matching")
	})
	t.Run("http, port and all", func(t *testing.T) {
		x, env := fakeExec(t, "serve 127.0.0.1:{api_port}", func(c *ExecConfig) {
			c.Ready = WaitAll(WaitHTTP("/console"), WaitLogLine(regexp.MustCompile("serving")))
		})
		require.NoError(t, x.Start(context.Background(), env))
		require.NoError(t, x.Load(context.Background(), srcs))
		p := &probe{api: x.api, vars: x.vars}
		require.NoError(t, WaitPort("api_port").check(context.Background(), p))
		require.Error(t, WaitPort("plain_port").check(context.Background(), p), "nothing listens on the plain port")
		require.Error(t, WaitHTTP("/nowhere").check(context.Background(), p))
	})
}

func TestParseWait(t *testing.T) {
	for in, want := range map[string]string{
		"direct-vv":       "WaitDirectVV()",
		"spice-link":      "WaitSPICELink()",
		"http:/healthz":   `WaitHTTP("/healthz")`,
		"log:ready: true": `WaitLogLine("ready: true")`,
		"port:plain_port": `WaitPort("plain_port")`,
	} {
		w, err := ParseWait(in)
		if assert.NoError(t, err, in) {
			assert.Equal(t, want, w.String())
		}
	}
	for _, bad := range []string{"", "http", "http:healthz", "log:(", "port:9", "tcp:1"} {
		_, err := ParseWait(bad)
		assert.Error(t, err, bad)
	}
}

// Every ExecConfig field has its variable.
func TestExecConfigFromEnv(t *testing.T) {
	t.Setenv(EnvExec, "./p --sources {sources}")
	t.Setenv(EnvExecEnv, "A=1 'B=two words'")
	t.Setenv(EnvExecToken, "s3cret")
	t.Setenv(EnvExecReload, "sighup")
	t.Setenv(EnvExecReady, "http:/console")
	t.Setenv(EnvExecReadyWithin, "45s")
	t.Setenv(EnvExecReloadWithin, "3s")
	c, err := ExecConfigFromEnv()
	require.NoError(t, err)
	assert.Equal(t, ExecConfig{Command: "./p --sources {sources}", Env: []string{"A=1", "B=two words"}, Token: "s3cret", Reload: ReloadSIGHUP,
		Ready: WaitHTTP("/console"), ReadyWithin: 45 * time.Second, ReloadWithin: 3 * time.Second}, c)
	for name, val := range map[string]string{EnvExecEnv: "NOEQUALS", EnvExecReload: "poll", EnvExecReady: "tcp:1", EnvExecReadyWithin: "soon"} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(name, val)
			_, err := ExecConfigFromEnv()
			assert.ErrorContains(t, err, name, "the error names the variable")
		})
	}
}
