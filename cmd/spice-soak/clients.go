package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/internal/proc"
	"github.com/spiceharness/spiceharness/proxy/vv"
)

// shooter runs spicy-screenshot with one HOME kept for the whole run: a
// fresh HOME makes GStreamer rebuild its plugin registry (+130-150 ms a
// capture), which would measure GStreamer instead of the proxy.
type shooter struct {
	bin  string
	home string
	// failLog is where the spice-gtk debug log of a failed capture goes
	// (every capture logs to memory; only failures are written).
	failLog string
	fails   atomic.Int64
}

func newShooter(dir, name string) (*shooter, error) {
	bin, err := exec.LookPath("spicy-screenshot")
	if err != nil {
		return nil, fmt.Errorf("spicy-screenshot not found (install spice-client-gtk, or run make deps): %w", err)
	}
	home := filepath.Join(dir, "home-"+name)
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	return &shooter{bin: bin, home: home, failLog: filepath.Join(dir, "failed-"+name)}, nil
}

// endpoint is where one capture connects.
type endpoint struct {
	host     string
	port     int // plain
	tlsPort  int
	password string // single use: a proxy token (or the reference's ticket)
	caFile   string // for TLS, through SSL_CERT_FILE
}

// shoot captures the guest screen.
func (s *shooter) shoot(ctx context.Context, ep endpoint) (*harness.Image, error) {
	out := filepath.Join(s.home, "shot.ppm")
	os.Remove(out)
	args := []string{"-h", ep.host, "-o", out, "-w", ep.password}
	if ep.port != 0 {
		args = append(args, "-p", strconv.Itoa(ep.port))
	}
	if ep.tlsPort != 0 {
		args = append(args, "-s", strconv.Itoa(ep.tlsPort))
	}
	cmd := exec.Command(s.bin, args...)
	env := []string{"HOME=" + s.home, "XDG_CONFIG_HOME=" + filepath.Join(s.home, ".config"),
		"XDG_CACHE_HOME=" + filepath.Join(s.home, ".cache"), "XDG_DATA_HOME=" + filepath.Join(s.home, ".local/share")}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "XDG_") && !strings.HasPrefix(kv, "SSL_CERT_") {
			env = append(env, kv)
		}
	}
	if ep.caFile != "" {
		env = append(env, "SSL_CERT_FILE="+ep.caFile)
	}
	env = append(env, "SPICE_DEBUG=1") // kept only when the capture fails
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	child, err := proc.Start(cmd)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := child.Wait(ctx); err != nil {
		child.Stop(time.Second)
		log := fmt.Sprintf("%s-%d.log", s.failLog, s.fails.Add(1))
		os.WriteFile(log, redact(stderr.Bytes(), ep.password), 0o600)
		return nil, fmt.Errorf("spicy-screenshot: %v (spice-gtk debug log: %s)", err, log)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("spicy-screenshot exited 0 without a picture: %w", err)
	}
	return harness.DecodePPM(b)
}

// redact removes the capture's password from its log.
func redact(b []byte, password string) []byte {
	return bytes.ReplaceAll(b, []byte(password), []byte("[redacted]"))
}

// vmLoop captures one VM through the proxy again and again, alternating
// TLS and plain, and compares each picture with the VM's reference.
type vmLoop struct {
	name string
	l    *lane
	vv   string // the console's proxy .vv URL
	ref  *harness.Image
	sh   *shooter

	sessions   atomic.Int64 // captures attempted
	failures   atomic.Int64
	mismatches atomic.Int64
	captureNS  atomic.Int64 // total capture time, for the mean

	mu       sync.Mutex
	firstErr string
}

// reference captures the VM straight from qemu, with the ticket the
// API's direct .vv carries.
func reference(ctx context.Context, l *lane, sh *shooter, source, uuid string) (*harness.Image, error) {
	f, err := l.vvFile(ctx, "/console/direct/"+source+"/"+uuid+"/console.vv")
	if err != nil {
		return nil, err
	}
	return sh.shoot(ctx, endpoint{host: f.Host, port: f.Port, password: f.Password})
}

// run loops until ctx ends.
func (v *vmLoop) run(ctx context.Context) {
	for i := 0; ctx.Err() == nil; i++ {
		secure := i%2 == 0
		f, err := v.l.vvFile(ctx, v.vv) // a fresh single-use token
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			v.fail(fmt.Errorf("fetch .vv: %w", err))
			continue
		}
		start := time.Now()
		img, err := v.sh.shoot(context.WithoutCancel(ctx), v.endpoint(f, secure))
		v.sessions.Add(1)
		v.captureNS.Add(int64(time.Since(start)))
		if err != nil {
			v.fail(fmt.Errorf("%s capture: %w", modeName(secure), err))
			continue
		}
		if img.W != v.ref.W || img.H != v.ref.H || img.DiffPixels(v.ref) != 0 {
			v.mismatches.Add(1)
		}
	}
}

func (v *vmLoop) endpoint(f *vv.File, secure bool) endpoint {
	if secure {
		return endpoint{host: f.Host, tlsPort: f.TLSPort, password: f.Password, caFile: v.l.ready.Proxy.CAFile}
	}
	return endpoint{host: f.Host, port: f.Port, password: f.Password}
}

func (v *vmLoop) fail(err error) {
	v.failures.Add(1)
	v.mu.Lock()
	if v.firstErr == "" {
		v.firstErr = err.Error()
	}
	v.mu.Unlock()
}

func modeName(secure bool) string {
	if secure {
		return "TLS"
	}
	return "plain"
}

// tally is what the loops did in one phase.
type tally struct {
	sessions, failures, mismatches int64
	meanCapture                    time.Duration
	firstErr                       string
}

func count(loops []*vmLoop) tally {
	var t tally
	var ns int64
	for _, v := range loops {
		t.sessions += v.sessions.Swap(0)
		t.failures += v.failures.Swap(0)
		t.mismatches += v.mismatches.Swap(0)
		ns += v.captureNS.Swap(0)
		v.mu.Lock()
		if t.firstErr == "" && v.firstErr != "" {
			t.firstErr = v.name + ": " + v.firstErr
		}
		v.firstErr = ""
		v.mu.Unlock()
	}
	if t.sessions > 0 {
		t.meanCapture = time.Duration(ns / t.sessions)
	}
	return t
}
