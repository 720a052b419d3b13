package daemon

import (
	"context"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// restartWatch stops the watcher of the previous file (if any) and
// watches the current one, unless Config.Watch is WatchOff.
func (d *Daemon) restartWatch() {
	d.watchMu.Lock()
	defer d.watchMu.Unlock()
	d.mu.Lock()
	stopOld := d.stopWatch
	d.stopWatch = nil
	path, closed := d.path, d.state == stateClosed
	d.mu.Unlock()
	if stopOld != nil {
		stopOld()
	}
	if path == "" || closed || d.cfg.Watch == WatchOff {
		return
	}
	w := d.inotify(path)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); d.watch(w, path, stop) }()
	var once sync.Once
	stopNew := func() { once.Do(func() { close(stop); wg.Wait() }) }
	d.mu.Lock()
	closed = d.state == stateClosed
	if !closed {
		d.stopWatch = stopNew
	}
	d.mu.Unlock()
	if closed { // shut down meanwhile: nobody else will stop it
		stopNew()
	}
}

// inotify watches path's directory, before restartWatch returns so that
// no change after it is missed; nil when polling is asked for or
// inotify is not available.
func (d *Daemon) inotify(path string) *fsnotify.Watcher {
	if d.cfg.Watch != WatchAuto {
		d.log.Info("watching the sources file", "file", path, "with", "polling", "every", d.cfg.PollInterval)
		return nil
	}
	w, err := fsnotify.NewWatcher()
	if err == nil {
		if err = w.Add(filepath.Dir(path)); err != nil {
			w.Close()
		}
	}
	if err != nil {
		d.log.Warn("cannot watch the sources file with inotify; polling it instead", "file", path, "every", d.cfg.PollInterval, "err", err)
		return nil
	}
	d.log.Info("watching the sources file", "file", path, "with", "inotify")
	return w
}

// watch calls changed whenever path may have changed, until stop:
// through w, or by polling when w is nil or breaks. It first checks the
// file once, for a change between the last read and the watch.
func (d *Daemon) watch(w *fsnotify.Watcher, path string, stop <-chan struct{}) {
	d.changed()
	if w != nil {
		if d.watchInotify(w, path, stop) {
			return
		}
		d.log.Warn("inotify stopped watching the sources file's directory; polling it instead", "file", path, "every", d.cfg.PollInterval)
	}
	d.poll(stop)
}

// watchInotify watches the directory of path: an editor that writes a
// new file and renames it over the old one, a rewrite in place, a
// symlink swap (Kubernetes ConfigMaps) all show up as events there. It
// waits for Debounce of quiet after the last event, then checks the
// file. It returns true at stop, false when the watch broke (the
// directory went away, or the watcher failed).
func (d *Daemon) watchInotify(w *fsnotify.Watcher, path string, stop <-chan struct{}) bool {
	defer w.Close()
	dir := filepath.Clean(filepath.Dir(path))
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	defer quiet.Stop()
	for {
		select {
		case <-stop:
			return true
		case ev, ok := <-w.Events:
			if !ok {
				return false
			}
			if filepath.Clean(ev.Name) == dir && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				return false
			}
			if ev.Op == fsnotify.Chmod {
				continue // permissions only; the content is the same
			}
			quiet.Reset(d.cfg.Debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return false
			}
			// An overflowed queue loses events: look at the file anyway.
			d.log.Warn("inotify error on the sources file's directory", "file", path, "err", err)
			quiet.Reset(d.cfg.Debounce)
		case <-quiet.C:
			d.changed()
		}
	}
}

// poll checks the file every PollInterval until stop. The check compares
// the bytes read, so a rewrite of the same size within the same second
// (mtime unchanged on coarse file systems) is seen too.
func (d *Daemon) poll(stop <-chan struct{}) {
	tick := time.NewTicker(d.cfg.PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			d.changed()
		}
	}
}

// changed reloads the file when it reads differently from last time.
func (d *Daemon) changed() {
	d.reloadFile(context.Background(), TriggerChange, true)
}
