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
// not read or change a person's spice-gtk or virt-viewer settings. Each
// client gets a fresh HOME inside its own work directory, removed with
// it when the client is done, so a test binary leaves nothing behind and
// no client sees another's settings.
//
// Their caches (XDG_CACHE_HOME) go to one directory shared by every
// client of every run, the harness's own cache under the user's cache
// directory (os.UserCacheDir()/spice-harness/clients, like Go's build
// cache), so the caches spice-gtk fills on its first run are there for
// the next one, as they are for a user. The one that matters is
// GStreamer's plugin registry (gstreamer-1.0/registry.*.bin): spice-gtk
// loads GStreamer at start, and with an empty cache GStreamer scans every
// plugin and writes the registry again, 130–150 ms per process on the
// 2-CPU machine the benchmarks run on (measured: a spicy-screenshot
// capture of the test guest took ~200 ms with a fresh cache, ~50 ms with
// a kept one). GStreamer writes the registry to a temporary file and
// renames it, so clients running at once share the cache safely.
//
// Earlier versions kept one home per process in os.TempDir() as
// spice-harness-home-*, left behind unless the test's TestMain removed
// it; the first client of a process sweeps those whose owner is gone.

const (
	homePrefix = "spice-harness-home-"
	homeLock   = ".owner"
	// homeGrace spares a home whose owner file is not there yet (its
	// owner, an older version, is between creating it and locking it).
	homeGrace = time.Minute
)

var cache struct {
	once sync.Once
	dir  string
	err  error
}

// clientCache returns the clients' shared cache directory, making it
// (and sweeping homes older versions left) on first use.
func clientCache() (string, error) {
	cache.once.Do(func() {
		sweepClientHomes(os.TempDir())
		base, err := os.UserCacheDir()
		if err != nil {
			base = filepath.Join(os.TempDir(), fmt.Sprintf("spice-harness-cache-%d", os.Getuid()))
		}
		cache.dir = filepath.Join(base, "spice-harness", "clients")
		if err := os.MkdirAll(cache.dir, 0o700); err != nil {
			cache.err = fmt.Errorf("harness: the clients' cache: %w", err)
		}
	})
	return cache.dir, cache.err
}

// RemoveClientHome is kept for test mains written for earlier versions,
// which had to call it: the harness now removes each client's home
// itself, and the clients' cache is meant to stay. It does nothing.
func RemoveClientHome() error { return nil }

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

// clientEnv is the environment of a real client whose work directory is
// work: this process's, with HOME and the XDG config, data and state
// directories in work/home (removed with work) and XDG_CACHE_HOME the
// shared cache, plus extra ("NAME=value" entries, which win).
func clientEnv(work string, extra ...string) ([]string, error) {
	cacheDir, err := clientCache()
	if err != nil {
		return nil, err
	}
	home := filepath.Join(work, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, fmt.Errorf("harness: client home: %w", err)
	}
	ours := map[string]string{
		"HOME":            home,
		"XDG_CONFIG_HOME": filepath.Join(home, ".config"),
		"XDG_CACHE_HOME":  cacheDir,
		"XDG_DATA_HOME":   filepath.Join(home, ".local", "share"),
		"XDG_STATE_HOME":  filepath.Join(home, ".local", "state"),
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
