package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
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
//	serve   serves an API on ADDR; GET /die makes it print "dying" and exit 2
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

func fakeExec(t *testing.T, args string) (*execTarget, *Env) {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	nt := Exec(ExecConfig{Command: shell.Quote(self) + " " + args, Env: []string{fakeProxyEnv + "=1"}, ReadyWithin: 20 * time.Second})
	tg, err := nt(Settings{})
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
	_, err := Exec(ExecConfig{Command: "  "})(Settings{})
	assert.ErrorContains(t, err, "HARNESS_EXEC")
	_, err = Exec(ExecConfig{Command: "p", Reload: "poll"})(Settings{})
	assert.ErrorContains(t, err, "file, sighup, restart")
	var ce *CapabilityError
	tg, err := Exec(ExecConfig{Command: "p"})(Settings{})
	require.NoError(t, err)
	env := &Env{target: tg}
	err = env.WaitIdle(context.Background())
	require.True(t, errors.As(err, &ce) && errors.Is(err, ErrUnsupported), "got %v", err)
	assert.Equal(t, CapIdle, ce.Cap)
}
