// Package store holds sources, consoles, tokens, sessions and the audit
// log shared by the `.vv` API (which mints tokens) and the proxy (which
// redeems them).
package store
