package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spiceharness/spiceharness/internal/proc"
)

// helperReady is the helper's first stdout line.
type helperReady struct {
	API         string `json:"api"`
	Port        int    `json:"port"`
	TLSPort     int    `json:"tls_port"`
	CAFile      string `json:"ca_file"`
	HostSubject string `json:"host_subject"`
	// ForwardPort is the plain TCP forwarder's port (--forward).
	ForwardPort int `json:"forward_port,omitempty"`
}

// helperMem answers the "gc" and "mem" commands.
type helperMem struct {
	HeapInuse    uint64 `json:"heap_inuse"`
	StackInuse   uint64 `json:"stack_inuse"`
	Sys          uint64 `json:"sys"`
	HeapObjects  uint64 `json:"heap_objects"`
	NumGoroutine int    `json:"goroutines"`
	Channels     int    `json:"channels"`
	Handshaking  int    `json:"handshaking"`
}

// runHelper is `bench proxy-helper --sources FILE`: the proxy and `.vv`
// API of `harness serve --allow-plain` (harness.Serve with the default
// proxy settings and Go's default GOGC and GOMEMLIMIT) in a process of
// its own, so that its memory can be read from /proc without the
// clients' and backends'. It prints a helperReady line, then answers
// commands read from stdin, one JSON line each:
//
//	gc   runtime.GC + debug.FreeOSMemory, then the memory figures
//	mem  the memory figures as they are
//
// It stops when stdin closes or on SIGINT/SIGTERM.
func runHelper(args []string) error {
	fs := flag.NewFlagSet("proxy-helper", flag.ContinueOnError)
	sources := fs.String("sources", "", "sources.yaml to serve")
	forward := fs.String("forward", "", "also forward raw TCP to this HOST:PORT (a reference relay)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if path := os.Getenv("BENCH_HELPER_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	env, err := serve(ctx, *sources)
	if err != nil {
		return err
	}
	defer env.close()
	ca := filepath.Join(filepath.Dir(*sources), "proxy-ca.pem")
	if err := os.WriteFile(ca, env.caPEM, 0o644); err != nil {
		return err
	}
	ready := helperReady{API: env.api, Port: env.port, TLSPort: env.tlsPort, CAFile: ca, HostSubject: env.hostSubject}
	if *forward != "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		go forwardTCP(ln, *forward)
		ready.ForwardPort = ln.Addr().(*net.TCPAddr).Port
	}
	out := json.NewEncoder(os.Stdout)
	out.Encode(ready)

	cmds := make(chan string)
	go func() {
		defer close(cmds)
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			cmds <- strings.TrimSpace(sc.Text())
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return env.close()
		case cmd, ok := <-cmds:
			if !ok {
				return env.close()
			}
			switch cmd {
			case "gc":
				runtime.GC()
				debug.FreeOSMemory()
			case "mem":
			default:
				return fmt.Errorf("unknown command %q", cmd)
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			st := env.stats()
			out.Encode(helperMem{HeapInuse: ms.HeapInuse, StackInuse: ms.StackInuse, Sys: ms.Sys, HeapObjects: ms.HeapObjects,
				NumGoroutine: runtime.NumGoroutine(), Channels: st.Channels, Handshaking: st.Handshaking})
		}
	}
}

// forwardTCP is the least a relay can do: each connection accepted on ln
// is copied both ways to target with io.Copy (splice(2) on Linux), with
// no framing, checks or TLS. It runs until ln is closed.
func forwardTCP(ln net.Listener, target string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			b, err := net.Dial("tcp", target)
			if err != nil {
				return
			}
			defer b.Close()
			done := make(chan struct{})
			go func() {
				io.Copy(b, c)
				b.(*net.TCPConn).CloseWrite()
				close(done)
			}()
			io.Copy(c, b)
			c.(*net.TCPConn).CloseWrite()
			<-done
		}()
	}
}

// helper is a running proxy-helper process.
type helper struct {
	helperReady
	child *proc.Child
	stdin io.WriteCloser
	out   *bufio.Reader
}

// startHelper runs this binary (or bin, another build of it) as a
// proxy-helper serving sources.
func startHelper(ctx context.Context, sources, bin string, args ...string) (*helper, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if bin != "" {
		self = bin
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	cmd := exec.Command(self, append([]string{"proxy-helper", "--sources", sources}, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, os.Stderr
	// Go's defaults, whatever the bench itself runs with.
	cmd.Env = slicesWithout(os.Environ(), "GOGC=", "GOMEMLIMIT=", "GODEBUG=")
	child, err := proc.Start(cmd)
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, err
	}
	h := &helper{child: child, stdin: inW, out: bufio.NewReader(outR)}
	line, err := h.readLine(ctx, 30*time.Second)
	if err == nil {
		err = json.Unmarshal(line, &h.helperReady)
	}
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("proxy helper did not get ready: %w", err)
	}
	return h, nil
}

func slicesWithout(env []string, prefixes ...string) []string {
	var out []string
next:
	for _, e := range env {
		for _, p := range prefixes {
			if strings.HasPrefix(e, p) {
				continue next
			}
		}
		out = append(out, e)
	}
	return out
}

func (h *helper) readLine(ctx context.Context, timeout time.Duration) ([]byte, error) {
	type res struct {
		b   []byte
		err error
	}
	got := make(chan res, 1)
	go func() {
		b, err := h.out.ReadBytes('\n')
		got <- res{b, err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-got:
		return r.b, r.err
	case <-h.child.Exited():
		return nil, errors.New("proxy helper exited")
	case <-t.C:
		return nil, errors.New("timed out")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// mem sends "gc" or "mem" and returns the answer.
func (h *helper) mem(ctx context.Context, cmd string) (helperMem, error) {
	var m helperMem
	if _, err := fmt.Fprintln(h.stdin, cmd); err != nil {
		return m, err
	}
	line, err := h.readLine(ctx, 30*time.Second)
	if err != nil {
		return m, err
	}
	return m, json.Unmarshal(line, &m)
}

// rss is the helper's resident set size in bytes (VmRSS).
func (h *helper) rss() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", h.child.Pid()))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc/PID/status")
}

// cpu is the helper's CPU time so far (user + system).
func (h *helper) cpu() time.Duration { return procCPU(h.child.Pid()) }

// cpuSelf is this process's CPU time so far.
func cpuSelf() time.Duration { return procCPU(os.Getpid()) }

// procCPU reads utime + stime from /proc/PID/stat (0 when unreadable).
func procCPU(pid int) time.Duration { return statCPU(pid, 11) }

// childrenCPU is the CPU time of pid's children it has waited for
// (cutime + cstime).
func childrenCPU(pid int) time.Duration { return statCPU(pid, 13) }

// statCPU adds /proc/PID/stat's field i and i+1 (counted after the
// command name) as clock ticks.
func statCPU(pid, i int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	end := strings.LastIndexByte(string(b), ')')
	if end < 0 {
		return 0
	}
	f := strings.Fields(string(b[end+1:]))
	if len(f) < i+2 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[i], 10, 64)
	st, _ := strconv.ParseInt(f[i+1], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks
}

// clockTicks is USER_HZ, 100 on Linux.
const clockTicks = 100

// Close stops the helper: stdin closed (a clean exit), then signals.
func (h *helper) Close() error {
	h.stdin.Close()
	select {
	case <-h.child.Exited():
	case <-time.After(10 * time.Second):
	}
	err := h.child.Stop(2 * time.Second)
	if st := h.child.ProcessState(); err == nil && st != nil && !st.Success() {
		err = fmt.Errorf("proxy helper: %s", st)
	}
	return err
}
