// Package harness boots qemu VMs, writes their `type: static` sources,
// and serves them through the in-process SPICE proxy and `.vv` API, for
// tests (harness.Start) and for the CLI (harness.Up).
package harness
