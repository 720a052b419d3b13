// Package guestproto is the line protocol between the Linux test guest's
// agent and the harness: the events the agent prints on the serial
// console, the commands the harness writes to the agent's control port,
// and the deterministic picture and byte patterns both sides compute.
//
// An event is one line:
//
//	t=1.234 type=ready ports=com.redhat.spice.0,org.spice-space.webdav.0 heads=2
//
// t is the guest's CLOCK_BOOTTIME in seconds with millisecond precision,
// type a word, then key=value pairs in the order the agent wrote them.
// A value that is empty or holds a space, a quote, an equals sign, a
// backslash or anything outside printable ASCII is written as a Go
// double-quoted string (strconv.QuoteToASCII); every other value is bare.
// Keys are lower case: [a-z][a-z0-9_.-]*.
//
// A command is the same form without t and type, starting with cmd and
// id:
//
//	cmd=draw id=3 head=1
//
// and the agent answers it with an ack event carrying the same cmd and
// id: ok=true (plus whatever the command reports) or ok=false err="…".
//
// Typical use on the harness side:
//
//	ev, err := guestproto.Parse(line)
//	if err == nil && ev.Type == guestproto.TypeReady {
//		ports := ev.List("ports")
//	}
//
// It is not a transport: package qemu reads the serial log and dials the
// control port; the agent (internal/guestagent) writes and reads them.
package guestproto
