package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/internal/syncbuf"
	"github.com/spiceharness/spiceharness/internal/testenv"
	"github.com/spiceharness/spiceharness/proxy/vv"
	"github.com/spiceharness/spiceharness/qemu"
	"github.com/spiceharness/spiceharness/static"
)

var (
	buildOnce sync.Once
	builtDir  string // removed by TestMain after the tests
	builtBin  string
	buildErr  error
)

// binary builds the harness command once per test process (skipped
// under -short: a build is no unit test).
func binary(t *testing.T) string {
	t.Helper()
	testenv.Short(t, "a go build of the harness command")
	buildOnce.Do(func() {
		builtDir, buildErr = os.MkdirTemp("", "harness-bin-")
		if buildErr != nil {
			return
		}
		builtBin = filepath.Join(builtDir, "harness")
		if out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput(); err != nil {
			buildErr = errors.New(string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("go build: %v", buildErr)
	}
	return builtBin
}

// removeBinary removes what binary built; TestMain runs it after the
// tests.
func removeBinary() {
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
}

// started is a harness process whose stdout's first line is its ready
// JSON.
type started struct {
	cmd    *exec.Cmd
	ready  readyLine
	stderr *syncbuf.Buffer
	done   chan struct{} // closed when the process exited; err is then set
	err    error
}

func startHarness(t *testing.T, args ...string) *started {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &started{cmd: cmd, stderr: &syncbuf.Buffer{}, done: make(chan struct{})}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	go func() {
		r := bufio.NewReader(out)
		line, _ := r.ReadString('\n')
		lines <- line
		io.Copy(io.Discard, r)
		s.err = cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
		}
	})
	select {
	case line := <-lines:
		if err := json.Unmarshal([]byte(line), &s.ready); err != nil {
			t.Fatalf("harness %s: ready line %q: %v\nstderr:\n%s", args[0], line, err, s.stderr.String())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("harness %s: no ready line in 90 s\nstderr:\n%s", args[0], s.stderr.String())
	}
	return s
}

// stop sends SIGINT and returns the exit code.
func (s *started) stop(t *testing.T) int {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
		err := s.err
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(30 * time.Second):
		t.Fatal("no exit 30 s after SIGINT")
		return -1
	}
}

func TestIntegrationUp(t *testing.T) {
	testenv.Short(t, "qemu", "a go build of the harness command")
	testenv.NeedCommand(t, "qemu-system-x86_64", "qemu-system-x86")
	for _, p := range []string{"remote-viewer:virt-viewer", "Xvfb:xvfb", "xdotool:xdotool", "import:imagemagick"} {
		prog, pkg, _ := strings.Cut(p, ":")
		testenv.NeedCommand(t, prog, pkg)
	}
	h := startHarness(t, "up", "--json", "--vms", "2")
	r := h.ready
	if !strings.HasPrefix(r.API, "http://127.0.0.1:") || r.Proxy.TLSPort == 0 || r.Proxy.Port == 0 || len(r.Consoles) != 2 {
		t.Fatalf("ready line %+v", r)
	}
	for _, c := range r.Consoles {
		if c.Source == "" || c.UUID == "" || c.Name == "" || c.Direct.Port == 0 || c.VVURL == "" {
			t.Errorf("console %+v lacks fields", c)
		}
		if st, err := os.Stat(c.VVFile); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("vv_file %s: %v", c.VVFile, err)
		}
	}
	if _, err := os.Stat(r.Proxy.CAFile); err != nil {
		t.Errorf("ca_file: %v", err)
	}
	// No ticket or token in the ready line or in any process's argv.
	f, err := static.ParseFile(r.SourcesYAML)
	if err != nil {
		t.Fatalf("sources.yaml of up: %v", err)
	}
	line, _ := json.Marshal(r)
	var secrets []string
	for _, c := range f.Consoles() {
		secrets = append(secrets, c.Ticket)
	}
	raw, err := os.ReadFile(r.Consoles[0].VVFile)
	if err != nil {
		t.Fatal(err)
	}
	file, err := vv.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, file.Password)
	for _, s := range secrets {
		if strings.Contains(string(line), s) || strings.Contains(h.stderr.String(), s) {
			t.Errorf("a ticket or token is in the ready line or the progress log")
		}
		if pids := testenv.ArgvHolding(s); len(pids) > 0 {
			t.Errorf("a ticket or token is on the command line of pids %v", pids)
		}
	}
	// vv_url mints a fresh .vv.
	resp, err := http.Get(r.Consoles[1].VVURL)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET vv_url: %v %v", err, resp)
	}
	resp.Body.Close()

	// remote-viewer on the written console.vv shows the guest.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rv, err := harness.StartRemoteViewer(ctx, raw, file.Title, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer rv.Close()
	if err := rv.WaitOpened(ctx); err != nil {
		t.Fatal(err)
	}
	img, err := rv.Capture(ctx, 720, 400)
	if err != nil || img.Blank() {
		t.Fatalf("remote-viewer shows no guest: %v", err)
	}

	// Ctrl-C: exit 0, no qemu left.
	qemus := testenv.ChildrenOf(h.cmd.Process.Pid)
	if len(qemus) != 2 {
		t.Errorf("up has %d child processes, want 2 qemus", len(qemus))
	}
	if code := h.stop(t); code != 0 {
		t.Fatalf("up exited %d after SIGINT\nstderr:\n%s", code, h.stderr.String())
	}
	for _, p := range qemus {
		if testenv.Alive(p) {
			t.Errorf("qemu pid %d still running after up exited", p)
		}
	}
	if _, err := os.Stat(r.SourcesYAML); !os.IsNotExist(err) {
		t.Errorf("state dir left behind: %v", err)
	}
}

// twoQemus starts two qemus the way a person would for `serve`: outside
// the harness, with their tickets set over QMP, and writes FILE for them.
func twoQemus(t *testing.T) (string, []qemu.VM) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src := static.Source{Name: "lab", Type: static.TypeStatic}
	var vms []qemu.VM
	for i := 0; i < 2; i++ {
		vm, err := qemu.Start(ctx)
		t.Cleanup(func() { vm.Close() })
		if err != nil {
			t.Fatal(err)
		}
		if _, err := vm.SetTicket(ctx); err != nil {
			t.Fatal(err)
		}
		if err := vm.WaitFor(ctx, qemu.ForSPICE(), qemu.ForGuestPrompt()); err != nil {
			t.Fatal(err)
		}
		src.Consoles = append(src.Consoles, harness.ConsoleOf(vm.Endpoint()))
		vms = append(vms, vm)
	}
	path := filepath.Join(t.TempDir(), "sources.yaml")
	var b bytes.Buffer
	if err := static.Emit(&b, []static.Source{src}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, vms
}

func TestIntegrationServeTwoHandLaunchedQemus(t *testing.T) {
	testenv.Short(t, "qemu", "spicy-screenshot", "a go build of the harness command")
	testenv.NeedCommand(t, "qemu-system-x86_64", "qemu-system-x86")
	testenv.NeedCommand(t, "spicy-screenshot", "spice-client-gtk")
	path, vms := twoQemus(t)
	h := startHarness(t, "serve", "--sources", path, "--json", "--state-dir", t.TempDir())
	if len(h.ready.Consoles) != 2 {
		t.Fatalf("serve lists %d consoles, want 2", len(h.ready.Consoles))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i, c := range h.ready.Consoles {
		resp, err := http.Get(c.VVURL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		f, err := vv.Parse(body)
		if err != nil {
			t.Fatalf("console %d .vv: %v", i, err)
		}
		ep := harness.EndpointOf(f)
		ep.Port = 0 // TLS
		img, err := harness.Screenshot(ctx, ep, t.TempDir())
		if err != nil {
			t.Fatalf("spicy-screenshot through serve, console %d: %v\nserve stderr:\n%s", i, err, h.stderr.String())
		}
		if img.Blank() {
			t.Errorf("console %d: blank capture", i)
		}
	}
	// Each capture went to its own qemu: every one saw a SPICE link
	// complete its ticket check (SPICE_INITIALIZED), which the readiness
	// probe never does (it closes before the link message).
	for i, vm := range vms {
		if err := vm.WaitFor(ctx, qemu.ForEvent(qemu.EventSPICEInitialized)); err != nil {
			t.Errorf("qemu %d saw no authenticated SPICE link through serve: %v", i, err)
		}
	}
	// … and both still run with ticketing on, on the ports serve lists.
	port := map[string]int{}
	for _, c := range h.ready.Consoles {
		port[c.UUID] = c.Direct.Port
	}
	for i, vm := range vms {
		info, err := vm.QuerySpice(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := qemu.SpiceInfo{Enabled: true, Auth: "spice", Port: port[vm.Endpoint().UUID]}
		got := qemu.SpiceInfo{Enabled: info.Enabled, Auth: info.Auth, Port: info.Port}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("unexpected query-spice of qemu %d (-want +got):\n%s", i, d)
		}
	}
	if code := h.stop(t); code != 0 {
		t.Fatalf("serve exited %d after SIGINT", code)
	}
}

// TestIntegrationRunAgainstExternalServe drives `harness serve` as a
// Kerbside-style deployment the harness did not start: every scenario
// whose capabilities it has must pass, the rest must be skipped with the
// capability named, and JUnit and JSON reports must agree.
func TestIntegrationRunAgainstExternalServe(t *testing.T) {
	testenv.Short(t, "qemu", "spicy-screenshot", "a go build of the harness command")
	testenv.NeedCommand(t, "qemu-system-x86_64", "qemu-system-x86")
	testenv.NeedCommand(t, "spicy-screenshot", "spice-client-gtk")
	// serve starts on an empty lab; run writes the sources it must load.
	dir := t.TempDir()
	path := filepath.Join(dir, "sources.yaml")
	var b bytes.Buffer
	if err := static.Emit(&b, []static.Source{{Name: harness.DefaultSource, Type: static.TypeStatic}}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startHarness(t, "serve", "--sources", path, "--json", "--state-dir", t.TempDir())
	pass := []string{"vv-proxy-fields", "vv-direct-fields", "proxy-handshake", "token-replay", "foreign-session",
		"multi-channel", "need-secured", "ticket-rotation", "terminate", "pixels-proxy-equal-direct",
		"key-through-proxy", "two-vms-isolated", "display-drop-before-init"}
	skip := map[string]string{
		"token-expired":        "needs the token-ttl capability",
		"vv-proxy-conventions": "needs the capabilities in-process, spice-listener",
	}
	junit := filepath.Join(dir, "report.xml")
	args := []string{"run", "--external-api", h.ready.API, "--external-sources", path, "--json", "--junit", junit,
		"--external-reload", "kill -HUP " + strconv.Itoa(h.cmd.Process.Pid)}
	for _, s := range pass {
		args = append(args, "--scenario", s)
	}
	for s := range skip {
		args = append(args, "--scenario", s)
	}
	cmd := exec.Command(binary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("harness run against serve: %v\nstdout:\n%s\nstderr:\n%s\nserve stderr:\n%s", err, stdout.String(), stderr.String(), h.stderr.String())
	}
	got := map[string]string{}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var r struct{ Name, Status, Reason, Tier string }
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("--json line %q: %v", sc.Text(), err)
		}
		if r.Tier == "" {
			t.Errorf("%s: no tier in its JSON result", r.Name)
		}
		got[r.Name] = r.Status
		if why, ok := skip[r.Name]; ok && !strings.Contains(r.Reason, why) {
			t.Errorf("%s skipped because %q, want it to say %q", r.Name, r.Reason, why)
		}
	}
	want := map[string]string{}
	for _, s := range pass {
		want[s] = "pass"
	}
	for s := range skip {
		want[s] = "skip"
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("unexpected results (-want +got):\n%s\nstderr:\n%s", d, stderr.String())
	}
	if !strings.Contains(stderr.String(), "--- PASS: terminate [hardening]") {
		t.Errorf("no go-test style line with the tier on stderr:\n%s", stderr.String())
	}
	x, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`<testsuite name="spice-harness.core"`, `<testcase name="terminate" classname="scenarios.hardening"`, `<skipped message="needs the token-ttl capability`} {
		if !strings.Contains(string(x), want) {
			t.Errorf("JUnit report lacks %s:\n%s", want, x)
		}
	}
	if code := h.stop(t); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
}
