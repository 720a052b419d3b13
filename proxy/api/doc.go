// Package api is the `.vv` HTTP API of spice-harness, on gorilla/mux,
// with Kerbside's routes: it hands out virt-viewer files that point
// either at the in-process SPICE proxy (with a fresh one-time token) or
// straight at the hypervisor (with the console's current ticket), lists
// sources, consoles and sessions as JSON, and terminates sessions.
//
// Typical use, with a proxy already started on the same store:
//
//	srv, err := api.New(api.Config{
//		Store: st,
//		Proxy: api.ProxyEndpoint{Host: "127.0.0.1", Port: p.PlainAddr().Port,
//			TLSPort: p.TLSAddr().Port, CAPEM: p.CAPEM(), HostSubject: p.HostSubject()},
//		Metrics: p.MetricsHandler(),
//		Logger:  logger,
//	})
//	if err != nil { … }
//	if err := srv.Start("127.0.0.1:0"); err != nil { … }
//	defer srv.Shutdown(ctx)
//	// GET srv.URL() + "/console/proxy/lab/" + uuid + "/console.vv"
//
// # Routes
//
//	GET       /console/proxy/{source}/{uuid}/console.vv   mint a token (store.Mint), .vv for the proxy
//	GET       /console/direct/{source}/{uuid}/console.vv  .vv for the hypervisor, current ticket
//	GET       /console/ws/{source}/{uuid}                 mint a token: JSON with the WebSocket URL and password (Config.WebSocket)
//	GET       /source, /source/{name}                     sources: state, errored, consoles served,
//	                                                      loaded_at, last_good_at, problems
//	GET       /console, /console/{source}/{uuid}          consoles (never a ticket), paged
//	GET       /session, /session/{id}                     sessions (never a token), paged
//	POST|GET  /console/{source}/{uuid}/terminate          end the console's sessions and channels
//	POST|GET  /session/{id}/terminate                     end one session and its channels
//	GET       /healthz, /metrics (when Config.Metrics)
//	POST      /reload                                      reload the sources now (when Config.Reloader)
//	GET       /reload                                      the last reload: result, changes, problems
//
// # Listings
//
// GET /session and GET /console answer a JSON array, as Kerbside's do,
// one page at a time: newest session first, consoles by (source, uuid).
// ?limit=N sets the page size (1-1000; default 100). When more items
// follow, the answer carries the next page's address in a Link header
// (RFC 8288, GitHub's convention), relative to the API:
//
//	Link: </session?cursor=cwQ&limit=100&state=live>; rel="next"
//
// Follow it until no Link comes; the cursor is opaque, and stays valid
// while items come and go (a page never repeats an item of the pages
// before it). GET /session also takes ?state=live (not ended: minted,
// connecting, active), or one state: minted, connecting, active, ended.
// The body keeps its shape, so a client that ignores Link reads the
// first page. Ended sessions are listed for 30 s after they end (see
// store.Options.EndedRetention), so the cost of a page does not grow
// with the proxy's history. An unknown, repeated or malformed parameter
// is a 400.
//
// A proxy .vv has type=spice, host, port (the proxy's plain listener),
// tls-port, password=<token>, ca (the proxy CA, newlines as \n),
// host-subject, title "<console name> via proxy session <id>" and
// delete-this-file=1; the session id is also in the X-Spice-Session header.
// A direct .vv has the console's hypervisor_ip, insecure_port, secure_port
// (when set), the source's ca_cert, the console's host_subject and its
// ticket, read from the store at request time; serving it never writes to
// the store (Kerbside's proxy route wrote an empty ticket back). Both are
// served as application/x-virt-viewer, as an attachment named console.vv,
// with Cache-Control: no-store, and rendered by package vv.
//
// Path values are percent-decoded and must look like a sources.yaml name
// or uuid (printable, no '/', no white space at either end) or, for
// sessions, [A-Za-z0-9]; otherwise 400. Errors are JSON
// {"error": "...", "status": N}: 400 malformed path, 401 missing or wrong
// API key (every route, including unknown ones, when Config.APIKey is
// set), 404 unknown source, console, session or route, 405 wrong method
// (with Allow), 409 POST /reload without a sources file, 422 POST or GET
// /reload when the file has errors (the report is in the body beside the
// error), 431 headers over MaxHeaderBytes, 503 no proxy configured.
//
// # Security
//
// Listings never carry a ticket, token or key. Without an API key, Start
// and Serve refuse any address that is not loopback (ErrInsecureListen).
// The API key is compared in constant time. Each request is logged once
// with its route, ids and status; tickets, tokens, the key and request
// headers never reach the log, and token-like runs in client-chosen paths
// are scrubbed.
//
// # What it is not
//
// Not the proxy (package proxy) and not the store (package proxy/store):
// it reads and mints through the store and never touches SPICE. It does
// not serve TLS itself; put it on loopback or behind a key.
package api
