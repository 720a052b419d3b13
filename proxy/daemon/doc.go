// Package daemon is the standalone static SPICE proxy behind `harness
// serve`: a sources.yaml (Kerbside's `type: static`) loaded into a
// console store, the SPICE proxy and the `.vv` API in front of it, the
// file reloaded when it changes, and a certificate that survives
// restarts. Tests build their in-process target on it with Load instead
// of a file.
//
// Typical use:
//
//	d, err := daemon.New(daemon.Config{
//		Sources:        "/etc/spice-harness/sources.yaml",
//		StateDir:       "/var/lib/spice-harness", // CA kept across restarts
//		ReloadOnSIGHUP: true,
//		Logger:         logger,
//	})
//	if err != nil { … } // *daemon.ConfigError: names the setting
//	if err := d.Start(ctx); err != nil { … } // an invalid file lists every problem
//	defer d.Shutdown(ctx)
//	// d.APIURL(), d.ProxyVVURL(key), d.CAFile(), d.LastReload() …
//
// In Go, with no file:
//
//	d, _ := daemon.New(daemon.Config{}) // loopback, free ports, ephemeral CA
//	d.Start(ctx)
//	d.Load(static.Source{Name: "lab", Type: static.TypeStatic, Consoles: consoles})
//
// # Reloads: last good wins
//
// A reload reads the whole file and applies it at once (store.Apply); a
// live session is never cut by one, and a broken file never takes a
// console offline:
//
//   - a file that cannot be read or parsed (YAML syntax, not a list, too
//     large, not UTF-8, empty) changes nothing: result "refused";
//   - a source whose entry has errors keeps serving its last good
//     consoles and is marked errored with its problems (file:line:col);
//     it recovers on the next good entry; other sources reload normally:
//     result "partial";
//   - a source missing from the file is removed (its live sessions keep
//     running), but only when every error of the file belongs to a named
//     source: an entry whose `source` key is mistyped could be hiding it;
//   - a valid file is served as written: result "ok".
//
// Reloads come from Start (or LoadFile), the watcher, SIGHUP
// (Config.ReloadOnSIGHUP), POST /reload and Reload. The watcher uses
// inotify on the file's directory, so an editor's rename over the file,
// a rewrite in place and a symlink swap are seen; it waits for
// Config.Debounce of quiet and reloads only when the bytes differ from
// the last read, which also catches a same-size rewrite within one
// second. Without inotify (or with WatchPoll) it reads the file every
// Config.PollInterval.
//
// Each reload is one log line ("sources reload": seq, trigger, result,
// sources, consoles, errored, changed, problems), the answer of GET
// /reload, and the metrics spice_proxy_sources_reload_total{result},
// spice_proxy_sources_last_reload_timestamp_seconds,
// spice_proxy_sources_last_reload_successful and, per source,
// spice_proxy_source_errored{source} and spice_proxy_source_consoles.
// GET /source and /source/{name} show each source's state, errored,
// consoles, loaded_at, last_good_at and problems.
//
// # Certificates
//
// In order: Config.Certificate; TLSCertFile and TLSKeyFile (with CAFile,
// the CA `.vv` files embed); a CA and server certificate generated once
// in StateDir (StateCAFile, …; keys 0600 in a 0700 directory) and reused,
// so `.vv` files stay valid across restarts; else an ephemeral CA. The
// `.vv` host-subject is always the served certificate's subject. A key
// file open to group or others, or a state directory they may write to,
// is refused (ErrKeyPermissions) with the chmod that fixes it.
//
// # Errors
//
// Configuration errors are *ConfigError values whose messages name the
// setting as the user sets it: a CLI passes Config.Names (for example
// SettingAPIKey → "HARNESS_API_KEY", SettingTLSKey → "--tls-key").
//
// # What it is not
//
// It boots no qemu and knows no test: package harness does that. It is
// not the proxy (package proxy), the API (proxy/api) or the store
// (proxy/store); it wires them together and owns their lifecycle.
package daemon
