package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/spiceharness/spiceharness/proxy/api"
	"github.com/spiceharness/spiceharness/proxy/store"
	"github.com/spiceharness/spiceharness/static"
)

// Trigger says what asked for a reload.
type Trigger string

// Triggers.
const (
	TriggerStart  Trigger = "start"  // Start, or LoadFile
	TriggerChange Trigger = "change" // the watcher saw the file change
	TriggerSignal Trigger = "signal" // SIGHUP
	TriggerAPI    Trigger = "api"    // POST /reload
	TriggerCall   Trigger = "call"   // Reload or Load, in Go
)

// ReloadResult is one reload: what was read, what changed, what is
// served afterwards. It never holds a ticket.
type ReloadResult struct {
	// Seq counts reloads from 1.
	Seq     uint64
	Trigger Trigger
	// Result is api.ReloadOK (valid: the file is what is served),
	// api.ReloadPartial (errors: the good sources were loaded, errored
	// ones keep their last good consoles) or api.ReloadRefused (the file
	// could not be read or parsed: nothing changed).
	Result string
	At     time.Time
	// File is the sources file ("" for Load).
	File string
	// Changes says what happened to each source.
	Changes []store.Change
	// Problems are the file's errors, Warnings its warnings.
	Problems []static.Problem
	Warnings []static.Problem
	// Sources and Consoles count what is served afterwards; Errored
	// names the errored sources.
	Sources, Consoles int
	Errored           []string
	// Err is nil for a valid file, else why not: the read error, or a
	// *static.ParseError listing the errors (errors.Is static.ErrInvalid).
	Err error
	// TLS is what the reload did with the proxy's certificate: SIGHUP,
	// POST /reload and Reload re-read it too (nil: not re-read, or a
	// certificate that is not from files or StateDir). Its refusal is
	// not the reload's Err: the sources were still reloaded.
	TLS *TLSReload
}

// Report is the result as GET and POST /reload answer it.
func (r ReloadResult) Report() api.ReloadReport {
	ps := make([]api.Problem, 0, len(r.Problems))
	for _, p := range r.Problems {
		ps = append(ps, api.Problem{Problem: p.String(), File: p.File, Line: p.Line, Col: p.Col, Field: p.Field,
			Message: p.Message, Severity: p.Severity.String()})
	}
	rep := api.ReloadReport{Seq: r.Seq, Trigger: string(r.Trigger), Result: r.Result, At: r.At, File: r.File,
		Sources: r.Sources, Consoles: r.Consoles, Errored: r.Errored, Changes: r.Changes, Problems: ps, Warnings: len(r.Warnings)}
	if t := r.TLS; t != nil {
		rep.TLS = &api.TLSReloadReport{Result: t.Result, Origin: t.Origin, HostSubject: t.Subject, Expires: t.Expires}
		if t.Err != nil {
			rep.TLS.Error = t.Err.Error()
		}
	}
	return rep
}

// Reload re-reads the sources file now and applies it (last good wins;
// see the package doc), and re-reads the certificate (see TLSReload).
// The error is the result's Err, ErrNoSources without a file, or ctx's
// while another reload runs.
func (d *Daemon) Reload(ctx context.Context) (ReloadResult, error) {
	return d.reloadFile(ctx, TriggerCall, false)
}

// LoadFile makes path the sources file, reloads it now and, once the
// daemon is started, watches it instead of the previous one. Before
// Start, Start then serves what it loaded.
func (d *Daemon) LoadFile(ctx context.Context, path string) (ReloadResult, error) {
	if path == "" {
		return ReloadResult{}, d.cfg.errorf(SettingSources, ErrConfig, "%s is empty: name a sources.yaml", d.cfg.name(SettingSources))
	}
	d.mu.Lock()
	d.path = path
	started := d.state == stateStarted
	if d.state == stateNew {
		d.loaded = path
	}
	d.mu.Unlock()
	res, err := d.reloadFile(ctx, TriggerStart, false)
	if started {
		d.restartWatch()
	}
	return res, err
}

// Load serves exactly sources, as a reload of a file that lists them
// would (last good wins; sources not listed are removed). Sources built
// in Go are checked as the parser checks a file (Source.Validate). Mixing
// Load with a sources file is allowed but the next reload of the file
// replaces what Load set.
func (d *Daemon) Load(sources ...static.Source) ReloadResult {
	d.reloadSem <- struct{}{}
	defer func() { <-d.reloadSem }()
	res := ReloadResult{Trigger: TriggerCall, At: time.Now()}
	var named []static.Source
	prune := true
	for _, s := range sources {
		if len(s.Errors) == 0 {
			s.Errors = validate(s)
		}
		res.Problems = append(res.Problems, s.Errors...)
		res.Warnings = append(res.Warnings, s.Warnings...)
		if !s.Named() {
			prune = false // as for a file: a nameless entry may hide a source
			continue
		}
		named = append(named, s)
	}
	res.Changes = d.store.Apply(named, prune)
	res.Result = api.ReloadOK
	if len(res.Problems) > 0 {
		res.Result = api.ReloadPartial
		res.Err = &static.ParseError{File: "(Load)", Problems: res.Problems}
	}
	d.finish(&res)
	return res
}

// validate turns Source.Validate's joined problems into the source's
// errors, with fields under the source's name.
func validate(s static.Source) []static.Problem {
	err := s.Validate()
	if err == nil {
		return nil
	}
	var out []static.Problem
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		var p static.Problem
		if errors.As(e, &p) {
			p.Field = "source " + strconv.Quote(s.Name) + ": " + p.Field
			out = append(out, p)
		}
	}
	return out
}

// reloadFile reads and applies the sources file. With onlyIfChanged, a
// file that reads the same as last time (same bytes, or the same read
// error) is left alone and the result has Seq 0.
func (d *Daemon) reloadFile(ctx context.Context, trigger Trigger, onlyIfChanged bool) (ReloadResult, error) {
	select {
	case d.reloadSem <- struct{}{}:
	case <-ctx.Done():
		return ReloadResult{}, ctx.Err()
	}
	defer func() { <-d.reloadSem }()
	d.mu.Lock()
	path := d.path
	d.mu.Unlock()
	if path == "" {
		return ReloadResult{}, ErrNoSources
	}
	f, key, readErr := readSources(path)
	if onlyIfChanged && key == d.lastKey {
		return ReloadResult{}, nil
	}
	d.lastKey = key
	res := ReloadResult{Trigger: trigger, At: time.Now(), File: path}
	switch {
	case readErr != nil:
		res.Result, res.Err = api.ReloadRefused, readErr
		res.Problems = []static.Problem{{File: path, Field: "file", Message: "cannot be read: " + cause(readErr), Err: readErr}}
	case fatal(f):
		res.Result, res.Err = api.ReloadRefused, f.Err()
		res.Problems, res.Warnings = f.Errors(), f.Warnings()
	default:
		var named []static.Source
		for _, s := range f.Sources {
			if s.Named() {
				named = append(named, s)
			}
		}
		res.Changes = d.store.Apply(named, len(f.DocumentErrors()) == 0)
		res.Problems, res.Warnings, res.Err = f.Errors(), f.Warnings(), f.Err()
		res.Result = api.ReloadOK
		if res.Err != nil {
			res.Result = api.ReloadPartial
		}
	}
	switch trigger {
	case TriggerSignal, TriggerAPI, TriggerCall:
		res.TLS = d.reloadTLS(res.At)
	}
	d.finish(&res)
	return res, res.Err
}

// finish numbers, counts, records, measures and logs a reload, and warms
// the proxy's caps probes for new consoles. The caller holds reloadSem.
func (d *Daemon) finish(res *ReloadResult) {
	for _, s := range d.store.Sources() {
		res.Sources++
		res.Consoles += s.Consoles
		if s.Errored {
			res.Errored = append(res.Errored, s.Name)
		}
	}
	d.mu.Lock()
	d.seq++
	res.Seq = d.seq
	d.last, d.hasLast = *res, true
	d.mu.Unlock()
	d.metrics.observe(*res)
	d.logReload(*res)
	if d.cfg.OnReload != nil {
		d.cfg.OnReload(*res)
	}
	if slices.ContainsFunc(res.Changes, func(c store.Change) bool {
		return c.Action == store.ActionAdded || c.Action == store.ActionUpdated || c.Action == store.ActionRecovered
	}) {
		d.warm()
	}
}

// maxLoggedProblems bounds the problems in a reload's log line; GET
// /reload lists them all.
const maxLoggedProblems = 20

// logReload writes the one line a reload gets.
func (d *Daemon) logReload(r ReloadResult) {
	var changed []string
	for _, c := range r.Changes {
		if c.Action != store.ActionUnchanged {
			changed = append(changed, c.Source+":"+string(c.Action))
		}
	}
	var problems []string
	for i, p := range r.Problems {
		if i == maxLoggedProblems {
			problems = append(problems, fmt.Sprintf("… and %d more (GET /reload lists them)", len(r.Problems)-i))
			break
		}
		problems = append(problems, p.String())
	}
	level := slog.LevelInfo
	switch r.Result {
	case api.ReloadPartial:
		level = slog.LevelWarn
	case api.ReloadRefused:
		level = slog.LevelError
	}
	d.log.LogAttrs(context.Background(), level, "sources reload",
		slog.Uint64("seq", r.Seq), slog.String("trigger", string(r.Trigger)), slog.String("result", r.Result), slog.String("file", r.File),
		slog.Int("sources", r.Sources), slog.Int("consoles", r.Consoles), slog.Any("errored", nonNil(r.Errored)),
		slog.Any("changed", nonNil(changed)), slog.Int("errors", len(r.Problems)), slog.Int("warnings", len(r.Warnings)),
		slog.Any("problems", nonNil(problems)))
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// LastReload returns the latest reload; false before the first.
func (d *Daemon) LastReload() (ReloadResult, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last, d.hasLast
}

// fatal reports whether the file could not be parsed into a list of
// sources: size, encoding, YAML syntax, a document that is not one list.
// Such a file changes nothing.
func fatal(f *static.File) bool {
	return slices.ContainsFunc(f.DocumentErrors(), func(p static.Problem) bool {
		return p.Field == "file" || p.Field == "yaml" || p.Field == "sources"
	})
}

// readSources reads and parses path once, and fingerprints what it read
// (the bytes, or the error), so the watcher can tell a real change.
func readSources(path string) (f *static.File, key string, err error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, "error:" + cause(err), err
	}
	defer fh.Close()
	if st, err := fh.Stat(); err == nil && st.Mode().IsRegular() && st.Size() > static.MaxFileSize {
		f, _ := static.ParseFile(path) // reports the size without reading
		return f, fmt.Sprintf("large:%d:%d", st.Size(), st.ModTime().UnixNano()), nil
	}
	data, err := io.ReadAll(io.LimitReader(fh, static.MaxFileSize+1))
	if err != nil {
		return nil, "error:" + cause(err), &fs.PathError{Op: "read", Path: path, Err: err}
	}
	sum := sha256.Sum256(data)
	f, _ = static.Parse(path, data)
	return f, hex.EncodeToString(sum[:]), nil
}

// cause is an os error without the path it repeats.
func cause(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
