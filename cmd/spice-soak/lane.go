package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
	"github.com/spiceharness/spiceharness/internal/proc"
	"github.com/spiceharness/spiceharness/proxy/vv"
)

// ready is the part of `harness up --json`'s line the soak reads.
type ready struct {
	API   string `json:"api"`
	Proxy struct {
		Host    string `json:"host"`
		Port    int    `json:"port"`
		TLSPort int    `json:"tls_port"`
		CAFile  string `json:"ca_file"`
	} `json:"proxy"`
	Consoles []struct {
		Source string `json:"source"`
		UUID   string `json:"uuid"`
		Name   string `json:"name"`
		VVURL  string `json:"vv_url"`
	} `json:"consoles"`
}

// lane is a running `harness up`.
type lane struct {
	child *proc.Child
	ready ready
	log   string // its stderr
	// http has no keep-alive: the soak's own idle connections must not
	// count in the harness's fds.
	http *http.Client
}

// startLane runs `harness up --vms N --allow-plain --json` and waits for
// its ready line.
func startLane(ctx context.Context, o options, dir string) (*lane, error) {
	l := &lane{log: filepath.Join(dir, "harness.log"),
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	logf, err := os.Create(l.log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	args := []string{"up", "--vms", strconv.Itoa(o.vms), "--allow-plain", "--json"}
	if o.proxyLog {
		args = append(args, "-v")
	}
	cmd := exec.Command(o.harness, args...)
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if l.child, err = proc.Start(cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", o.harness, err)
	}
	line := make(chan []byte, 1)
	go func() {
		b, _ := bufio.NewReader(out).ReadBytes('\n')
		line <- b
		io.Copy(io.Discard, out)
	}()
	select {
	case b := <-line:
		if err := json.Unmarshal(b, &l.ready); err != nil || l.ready.API == "" {
			l.child.Stop(5 * time.Second)
			return nil, fmt.Errorf("harness up gave no ready line (%q; log %s)", b, l.log)
		}
	case <-time.After(3 * time.Minute):
		l.child.Stop(5 * time.Second)
		return nil, fmt.Errorf("harness up not ready after 3 minutes (log %s)", l.log)
	case <-ctx.Done():
		l.child.Stop(5 * time.Second)
		return nil, ctx.Err()
	}
	if len(l.ready.Consoles) != o.vms {
		l.child.Stop(5 * time.Second)
		return nil, fmt.Errorf("harness up listed %d consoles, want %d", len(l.ready.Consoles), o.vms)
	}
	return l, nil
}

func (l *lane) pid() int { return l.child.Pid() }

// get fetches path (or a full URL) from the API.
func (l *lane) get(ctx context.Context, path string) ([]byte, http.Header, error) {
	u := path
	if !strings.HasPrefix(path, "http://") && !strings.HasPrefix(path, "https://") {
		u = l.ready.API + path
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := l.http.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s: %.200s", path, resp.Status, b)
	}
	return b, resp.Header, err
}

// vvFile fetches and parses a .vv.
func (l *lane) vvFile(ctx context.Context, path string) (*vv.File, error) {
	b, _, err := l.get(ctx, path)
	if err != nil {
		return nil, err
	}
	return vv.Parse(b)
}

// children lists the harness's child processes (its qemus).
func (l *lane) children() []int {
	procs, err := procfs.AllProcs()
	if err != nil {
		return nil
	}
	var out []int
	for _, p := range procs {
		if st, err := p.Stat(); err == nil && st.PPID == l.pid() && st.State != "Z" {
			out = append(out, p.PID)
		}
	}
	return out
}

// stop sends SIGINT, as Ctrl-C would, and waits for the harness to tear
// down; it returns how long that took and the child processes (qemu)
// still alive after.
func (l *lane) stop() (time.Duration, []int, error) {
	kids := l.children()
	start := time.Now()
	if err := l.child.Cmd.Process.Signal(syscall.SIGINT); err != nil {
		return 0, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := l.child.Wait(ctx)
	took := time.Since(start)
	if errors.Is(err, context.DeadlineExceeded) {
		l.child.Stop(5 * time.Second)
		return took, nil, fmt.Errorf("harness still running 60 s after SIGINT (log %s)", l.log)
	}
	var left []int
	for _, pid := range kids {
		if p, err := procfs.NewProc(pid); err == nil {
			if st, err := p.Stat(); err == nil && st.State != "Z" {
				left = append(left, pid)
			}
		}
	}
	return took, left, err
}

// kill ends the harness at once (on the soak's own failure).
func (l *lane) kill() { l.child.Stop(5 * time.Second) }
