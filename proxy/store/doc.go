// Package store is the embedded, in-memory console store shared by the
// `.vv` API and the proxy: sources (with their errored state and
// problems), consoles keyed by (source, uuid), tokens and the sessions
// they open, and a bounded audit log.
//
// A token is 48 characters of [A-Za-z0-9] from crypto/rand, valid for
// Options.TokenTTL (60 s by default) to open one session. The API mints
// it (Mint); the proxy redeems it (Authorize): the main channel consumes
// it, MAIN_INIT's session id is recorded (Lease.Established), and other
// channels must present the same token with that id as connection id.
// Terminate closes a session's live channels through the hooks the
// proxy registered (Lease.Attach).
//
// Listings (Sources, Consoles, Sessions, Audit) never carry a ticket or
// token; Console and Targets do carry tickets, for the proxy and the
// direct `.vv` route only.
package store
