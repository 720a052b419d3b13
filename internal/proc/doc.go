// Package proc starts child programs (qemu, Xvfb, remote-viewer,
// spicy-screenshot) so that they never outlive the harness, and reads
// what the harness needs to know about processes from /proc.
//
// Start runs each child in its own process group with a parent-death
// signal, forked from a goroutine locked to its own OS thread for the
// child's whole life (Pdeathsig follows the forking thread, not the
// process); Stop escalates SIGTERM → SIGKILL on the whole group and
// reaps it.
//
// Lookup, Alive and All read /proc through github.com/prometheus/procfs:
// state, parent, start time and argv, enough to tell a live process from
// a zombie or a reused pid, to find a VM's stray qemu and to check that
// no secret sits in any argv.
package proc
