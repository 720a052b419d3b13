// Command harness is the spice-harness CLI. It boots qemu VMs with a
// SPICE server, describes them in a Kerbside `type: static`
// sources.yaml, serves them through the in-process SPICE proxy and `.vv`
// API, and runs the scenario tests against that lane or against a proxy
// it did not start.
//
// Subcommands (`harness help CMD` for the flags of each):
//
//	up            boot a lane and print a ready console.vv for each VM; Ctrl-C tears it down
//	serve         a standalone static SPICE proxy and .vv API for qemus started by hand
//	run           run the scenarios (--list, --scenario NAME, --external-api URL)
//	emit-example  write example-static-sources.yaml
//	validate      check a sources.yaml; every problem as file:line:col: field: message
//	version       print the harness version and the Go version it was built with
//
// Flags beat the environment, which beats the defaults. Variables read:
// HARNESS_VMS, HARNESS_ACCEL, HARNESS_LIBVIRT, HARNESS_TLS_BACKENDS,
// HARNESS_TIMEOUT, HARNESS_TOKEN_TTL, HARNESS_KEEP and HARNESS_STATE_DIR
// (see packages harness and qemu), HARNESS_QEMU (the qemu binary),
// HARNESS_EXTERNAL_TOKEN (the bearer token of an external API, for
// run) and HARNESS_API_KEY (the key serve's API requires). Secrets come
// only from the environment or from files, never from argv, which every
// user of the machine can read.
//
// Exit codes: 0 success; 1 the command ran and failed (validate found
// errors, a scenario failed); 2 usage error or unreadable input. An
// error is one line on stderr, "harness: …", naming the flag or the
// variable to change.
package main
