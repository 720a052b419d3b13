package qemu

import (
	"context"
	"encoding/json"
	"regexp"
	"time"
)

// VM is one running qemu with a SPICE server, whatever started it. Both
// backends (a qemu child process, a libvirt domain) implement it the same
// way; Start picks the backend.
//
// Every method that talks to qemu takes a context, is bounded by
// DefaultQMPTimeout when the context has no deadline, and returns at
// once, with the *ExitError, when qemu exits.
type VM interface {
	// String names the VM for messages: backend, name, pid or domain,
	// accelerator and SPICE address.
	String() string

	// Endpoint is where this VM's SPICE server listens and the current
	// ticket (empty until SetTicket; still the last ticket after
	// ExpireTicket).
	Endpoint() Endpoint

	// SetTicket sets a fresh random ticket and returns it. Clients
	// already connected keep their session; new links need the new
	// ticket. It also lifts an earlier ExpireTicket.
	SetTicket(ctx context.Context) (string, error)
	// RotateTicket sets a fresh random ticket like SetTicket and also
	// disconnects every connected client, so nobody holding the old
	// ticket stays in.
	RotateTicket(ctx context.Context) (string, error)
	// SetTicketFor sets a fresh random ticket that expires after d
	// (rounded up to whole seconds, at least MinTicketLifetime): QMP
	// set_password, then expire_password +N, as Proxmox does for each
	// .vv it hands out. It returns the ticket and when it expires, N
	// after the command; qemu counts whole seconds on two clocks, so new
	// links are refused from within a second of that time on. Clients
	// connected before keep their channels; a later SetTicket lifts the
	// expiry.
	SetTicketFor(ctx context.Context, d time.Duration) (ticket string, expires time.Time, err error)
	// ExpireTicket expires the ticket now: every new link is refused
	// until the next SetTicket or RotateTicket. Connected clients stay.
	ExpireTicket(ctx context.Context) error

	// QuerySpice runs QMP query-spice.
	QuerySpice(ctx context.Context) (SpiceInfo, error)
	// Run runs any QMP command and returns its "return" value. cmd is a
	// command name ("query-status"), a qmp.Command, raw JSON ([]byte or
	// json.RawMessage) or any value that marshals to a QMP command
	// object. QMP errors are *QMPError. Running "quit" makes the exit
	// expected.
	Run(ctx context.Context, cmd any) (json.RawMessage, error)
	// SendKeys sends each key with QMP send-key, one after the other.
	// A key is a QKeyCode ("h", "ret", "spc") or a chord of them joined
	// by "-" ("shift-a", "ctrl-alt-delete").
	SendKeys(ctx context.Context, keys ...string) error

	// Events returns the QMP events seen so far (the last 1024).
	Events() []Event
	// Subscribe returns a subscription to the events that arrive from
	// now on. Subscribe before running the command that causes them.
	Subscribe() *Subscription

	// WaitFor waits for each strategy in turn, bounded only by ctx; it
	// fails fast, with the *ExitError, when qemu exits, and a timeout's
	// error carries the serial log's tail.
	WaitFor(ctx context.Context, s ...Strategy) error
	// WaitSerial is WaitFor(ctx, ForSerial(re)).
	WaitSerial(ctx context.Context, re *regexp.Regexp) error
	// WaitSPICE is WaitFor(ctx, ForSPICE()).
	WaitSPICE(ctx context.Context) error

	// SerialLog is the path of the guest's serial log (COM1) on this
	// host.
	SerialLog() string
	// SerialTail returns the last n lines of the serial log.
	SerialTail(n int) string

	// Exited is closed once qemu has exited, for whatever reason.
	Exited() <-chan struct{}
	// Wait waits for qemu to exit. It returns nil when the exit was
	// asked for (Close, Kill, QMP quit), the *ExitError when it was not,
	// and ctx's error if ctx ends first.
	Wait(ctx context.Context) error
	// Kill kills qemu abruptly (SIGKILL to its process group; on
	// libvirt, virDomainDestroy) and waits until it is gone. The exit
	// counts as expected. For fault injection.
	Kill() error
	// Close shuts qemu down (QMP quit, wait, then SIGKILL and wait) and
	// removes its state dir. It is idempotent and safe on a nil or
	// partially started VM. It returns the *ExitError if qemu had exited
	// unexpectedly before Close, else the shutdown's own error.
	Close() error
}

// SpiceInfo is the answer to query-spice.
type SpiceInfo struct {
	Enabled   bool
	Migrated  bool
	Host      string
	Port      int // 0: no plain port
	TLSPort   int // 0: no TLS port
	Auth      string
	MouseMode string
	Channels  []SpiceChannel
}

// SpiceChannel is one connected SPICE channel as qemu reports it.
type SpiceChannel struct {
	Host         string
	Port         string
	ConnectionID int64
	ChannelType  int64
	ChannelID    int64
	TLS          bool
}
