// Package spicetest is a synthetic SPICE server for unit tests and relay
// benchmarks: it speaks the link stage (fresh RSA key, ticket check,
// connection ids), main's INIT / CHANNELS_LIST / PING, display's
// DISPLAY_INIT → SET_ACK → SURFACE_CREATE → DRAW_COPY with the ack
// window enforced, inputs and cursor, and records what it saw.
//
// It imitates spice-server 0.15 where the proxy depends on it, including
// the display crash (a display channel closed after its link and before
// DISPLAY_INIT had been answered is recorded in Crashed, as qemu would
// die). It is never the only proof of a behaviour: real qemu is.
//
// Like qemu it keeps one session at a time by default; MultiSession lets
// many sessions live side by side (for load benchmarks: one synthetic
// backend standing in for many consoles), and LinkKey spares it qemu's
// RSA key generation per link.
package spicetest
