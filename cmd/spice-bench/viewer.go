package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"time"

	"github.com/spiceharness/spiceharness/internal/proc"
	"github.com/spiceharness/spiceharness/proxy/vv"
)

// benchViewer times remote-viewer (main, display, inputs and cursor, as
// a user's) from exec to its first frame, in the four modes interleaved
// like the screenshot section. The X server is started once, outside
// the clock, and remote-viewer keeps one home for the whole section, as
// a user's desktop would. The first frame is read from spice-gtk's own
// debug log (--spice-debug, on a pipe, timestamped on arrival): the
// later of the display widget's "widget mark: 1" (the guest's first
// picture is complete) and its first geometry with a mapped window.
func benchViewer(ctx context.Context, r *report, o *options) error {
	if _, err := exec.LookPath("remote-viewer"); err != nil {
		r.line("viewer", "skipped: remote-viewer not found (install virt-viewer, or run make deps)")
		return nil
	}
	l, err := upLane(ctx)
	if err != nil {
		return err
	}
	defer l.Close()
	x, err := startX(ctx)
	if err != nil {
		return err
	}
	defer x.Close()
	home, err := os.MkdirTemp("", "spice-bench-viewer-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(home)

	times, err := rounds(ctx, o.viewerRounds, o.verbose, "viewer", func(m mode, _ int) (float64, error) {
		ep, release, err := l.endpoint(ctx, m)
		if err != nil {
			return 0, err
		}
		d, err := firstFrame(ctx, ep, home, x.Display)
		if rerr := release(); err == nil {
			err = rerr
		}
		if err != nil {
			return 0, fmt.Errorf("%s: %w", m, err)
		}
		sleepCtx(ctx, o.shotGap)
		return ms(d), nil
	})
	if err != nil {
		return err
	}
	reportModes(r, "viewer.first_frame", times, o.viewerRounds)
	return nil
}

var (
	markRE  = regexp.MustCompile(`widget mark: 1`)
	shownRE = regexp.MustCompile(`recalc geom: guest \+\d+\+\d+:[1-9]\d*x[1-9]\d*, window [1-9]\d*x[1-9]`)
	authRE  = regexp.MustCompile(`(?i)auth(entication)? fail|Unable to connect|main channel: failed`)
)

// firstFrame runs remote-viewer on a .vv for ep (written 0600 in home,
// removed after) and returns the time from exec to its first frame.
func firstFrame(ctx context.Context, ep endpoint, home, display string) (time.Duration, error) {
	f := &vv.File{Type: "spice", Host: ep.Host, Port: ep.Port, TLSPort: ep.TLSPort, Password: ep.Password, CA: string(ep.CAPEM), Title: "spice-bench"}
	raw, err := vv.Render(f)
	if err != nil {
		return 0, err
	}
	path := filepath.Join(home, "console.vv")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return 0, err
	}
	defer os.Remove(path)
	cmd := exec.Command("remote-viewer", "--spice-debug", path)
	cmd.Env = append(slicesWithout(os.Environ(), "HOME=", "XDG_CONFIG_HOME=", "XDG_CACHE_HOME=", "XDG_DATA_HOME=", "XDG_STATE_HOME=", "DISPLAY="),
		"HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"), "XDG_CACHE_HOME="+filepath.Join(home, ".cache"),
		"XDG_DATA_HOME="+filepath.Join(home, ".local", "share"), "XDG_STATE_HOME="+filepath.Join(home, ".local", "state"), "DISPLAY="+display)
	pr, pw, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	start := time.Now()
	child, err := proc.Start(cmd)
	pw.Close()
	if err != nil {
		pr.Close()
		return 0, err
	}
	type result struct {
		d   time.Duration
		err error
	}
	got := make(chan result, 1)
	go func() {
		var mark, shown time.Time
		var tail []string
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line, now := sc.Text(), time.Now()
			tail = append(tail[max(0, len(tail)-9):], line)
			switch {
			case mark.IsZero() && markRE.MatchString(line):
				mark = now
			case shown.IsZero() && shownRE.MatchString(line):
				shown = now
			case authRE.MatchString(line):
				got <- result{err: fmt.Errorf("remote-viewer: %s", line)}
				return
			}
			if !mark.IsZero() && !shown.IsZero() {
				if shown.After(mark) {
					mark = shown
				}
				got <- result{d: mark.Sub(start)}
				return
			}
		}
		got <- result{err: errors.New("remote-viewer ended without a frame: " + oneLine(fmt.Sprint(tail)))}
	}()
	var res result
	t := time.NewTimer(60 * time.Second)
	defer t.Stop()
	select {
	case res = <-got:
	case <-t.C:
		res.err = errors.New("remote-viewer showed no frame within 60 s")
	case <-ctx.Done():
		res.err = ctx.Err()
	}
	child.Stop(2 * time.Second)
	pr.Close()
	return res.d, res.err
}
