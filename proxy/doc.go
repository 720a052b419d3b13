// Package proxy is an in-process SPICE proxy: TLS and plain listeners,
// token authentication against a console store, a backend link with the
// console's ticket, and a framed relay with size caps and a message-type
// allowlist.
package proxy
