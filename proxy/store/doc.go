// Package store is the embedded, in-memory console store shared by the
// `.vv` API and the proxy: sources (with their errored state and
// problems), consoles keyed by (source, uuid), tokens and the sessions
// they open, and a bounded audit log.
//
// Sources are loaded by Apply (one reload of a sources file) or Load
// (some sources): last good wins. A source whose new entry has errors is
// marked errored with its problems and keeps serving the consoles of its
// last good entry until a good one comes; Apply with prune removes the
// sources a complete list no longer names. Live sessions survive all of
// it. Sources and Source report, per source, when it was last read, when
// last good, what it serves and its problems.
//
// A token is 48 characters of [A-Za-z0-9] from crypto/rand, valid for
// Options.TokenTTL (60 s by default) to open one session. The API mints
// it (Mint); the proxy redeems it (Authorize): the main channel consumes
// it, MAIN_INIT's session id is recorded (Lease.Established), and other
// channels must present the same token with that id as connection id.
// Terminate closes a session's live channels through the hooks the
// proxy registered (Lease.Attach).
//
// Memory follows live work: an ended session is kept for
// Options.EndedRetention (30 s) and at most Options.MaxEnded (1024) of
// them, not for the token lifetime; an unused token's session until its
// token expired and one more TokenTTL passed; the audit log holds the
// last Options.AuditSize events. A timer sweeps while something is due.
//
// Listings (Sources, Consoles, Sessions, Audit) never carry a ticket or
// token; Console and Targets do carry tickets, for the proxy and the
// direct `.vv` route only. ListSessions and ListConsoles answer one page
// (100 by default) and an opaque cursor for the next, at the cost of the
// page.
package store
