package harness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Real clients (spicy-screenshot, remote-viewer) run with a HOME and XDG
// directories of the harness's own, never the user's: the harness must
// not read or change a person's spice-gtk or virt-viewer settings. The
// home is made once per process and shared by every client it starts,
// so the caches spice-gtk fills on its first run are there for the next
// one, as they are for a user. The one that matters is GStreamer's
// plugin registry (~/.cache/gstreamer-1.0/registry.*.bin): spice-gtk
// loads GStreamer at start, and with an empty cache GStreamer scans
// every plugin and writes the registry again, 130–150 ms per process on
// the 2-CPU machine the benchmarks run on (measured: a spicy-screenshot
// capture of the test guest took ~200 ms with a fresh HOME, ~50 ms with
// a kept one). GStreamer writes the registry to a temporary file and
// renames it, so clients running at once share the home safely.
//
// The home lives in os.TempDir() as spice-harness-home-*. Its owner
// holds an flock on the .owner file inside for as long as it runs, so a
// home whose lock can be taken belongs to a process that has gone: each
// new home sweeps those away. RemoveClientHome removes this process's.

const (
	homePrefix = "spice-harness-home-"
	homeLock   = ".owner"
	// homeGrace spares a home whose owner file is not there yet (the
	// owner is between creating the directory and locking it).
	homeGrace = time.Minute
)

var home struct {
	mu   sync.Mutex
	dir  string
	lock *os.File
}

// clientHome returns this process's client home, making it (and
// sweeping stale ones) on first use, or again after RemoveClientHome.
func clientHome() (string, error) {
	home.mu.Lock()
	defer home.mu.Unlock()
	if home.dir != "" {
		return home.dir, nil
	}
	sweepClientHomes(os.TempDir())
	dir, err := os.MkdirTemp("", homePrefix)
	if err != nil {
		return "", fmt.Errorf("harness: client home: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, homeLock), os.O_CREATE|os.O_RDWR, 0o600)
	if err == nil {
		err = syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err != nil {
			lock.Close()
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("harness: client home %s: %w", dir, err)
	}
	home.dir, home.lock = dir, lock
	return dir, nil
}

// RemoveClientHome removes this process's client home (the caches real
// clients share), if it made one. Clients started later make a new one.
// A process that never calls it leaves its home to the next process's
// sweep.
func RemoveClientHome() error {
	home.mu.Lock()
	defer home.mu.Unlock()
	if home.dir == "" {
		return nil
	}
	err := os.RemoveAll(home.dir)
	home.lock.Close()
	home.dir, home.lock = "", nil
	return err
}

// sweepClientHomes removes the client homes in root whose owner has
// exited (their lock can be taken). Errors are ignored: a home left
// behind is swept by a later process.
func sweepClientHomes(root string) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), homePrefix) {
			continue
		}
		dir := filepath.Join(root, e.Name())
		if ownerGone(dir) {
			os.RemoveAll(dir)
		}
	}
}

func ownerGone(dir string) bool {
	f, err := os.OpenFile(filepath.Join(dir, homeLock), os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		fi, serr := os.Stat(dir)
		return serr == nil && time.Since(fi.ModTime()) > homeGrace
	}
	if err != nil {
		return false
	}
	defer f.Close()
	// Taken: nobody holds it. Closing f releases it again.
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil
}

// clientEnv is the environment of a real client: this process's, with
// HOME and the XDG base directories moved into the client home, plus
// extra ("NAME=value" entries, which win).
func clientEnv(extra ...string) ([]string, error) {
	dir, err := clientHome()
	if err != nil {
		return nil, err
	}
	ours := map[string]string{
		"HOME":            dir,
		"XDG_CONFIG_HOME": filepath.Join(dir, ".config"),
		"XDG_CACHE_HOME":  filepath.Join(dir, ".cache"),
		"XDG_DATA_HOME":   filepath.Join(dir, ".local", "share"),
		"XDG_STATE_HOME":  filepath.Join(dir, ".local", "state"),
	}
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		// A SPICE_PROXY of the caller's is dropped: a client goes
		// through a proxy only when its endpoint says so.
		if _, replaced := ours[name]; !replaced && name != "SPICE_PROXY" {
			env = append(env, kv)
		}
	}
	for _, name := range []string{"HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"} {
		env = append(env, name+"="+ours[name])
	}
	return append(env, extra...), nil
}
