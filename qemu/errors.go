package qemu

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spiceharness/spiceharness/internal/shell"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrExited: qemu is no longer running. Every *ExitError matches it,
	// and so does every call made on a VM after its qemu exited.
	ErrExited = errors.New("qemu: exited")
	// ErrClosed: the VM was closed by its owner.
	ErrClosed = errors.New("qemu: VM closed")
	// ErrInvalidConfig: an option or HARNESS_* variable was rejected
	// before anything was started. Every *ConfigError matches it.
	ErrInvalidConfig = errors.New("qemu: invalid configuration")
	// ErrBind: qemu could not bind its SPICE port. Start retries with
	// other ports when it picked them itself; with a fixed port the
	// *ExitError of the failed launch matches ErrBind.
	ErrBind = errors.New("qemu: SPICE port in use")
	// ErrNoTicket: the VM has no ticket yet (Endpoint().Ticket is empty).
	ErrNoTicket = errors.New("qemu: no ticket set")
	// ErrUnsupported: the backend cannot do what was asked (for example
	// SPICE TLS on the libvirt backend).
	ErrUnsupported = errors.New("qemu: not supported by this backend")
	// ErrHostLost: the libvirtd running the VM could not be reached, or
	// the connection to it was lost (libvirtd killed, host down, network
	// cut). The *ExitError of a domain whose connection dropped matches
	// it, and so does a failed dial.
	ErrHostLost = errors.New("qemu: hypervisor host lost")
)

// ConfigError is a rejected option, part or environment variable.
type ConfigError struct {
	// Field names what was wrong: an option ("Memory"), an argv part
	// ("-spice") or an environment variable ("HARNESS_ACCEL").
	Field string
	// Value is the offending value, as given.
	Value any
	// Reason says what is wrong with it.
	Reason string
	// Err, when set, is a sentinel the error matches as well, such as
	// ErrUnsupported for what the chosen backend cannot do.
	Err error
}

func (e *ConfigError) Error() string {
	s := fmt.Sprintf("qemu: invalid %s %v: %s", e.Field, e.Value, e.Reason)
	if e.Err != nil {
		s += " (" + e.Err.Error() + ")"
	}
	return s
}

// Is makes every ConfigError match ErrInvalidConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// Unwrap returns Err, so errors.Is(err, ErrUnsupported) holds for an
// option the backend does not support.
func (e *ConfigError) Unwrap() error { return e.Err }

func configErr(field string, value any, format string, args ...any) error {
	return &ConfigError{Field: field, Value: value, Reason: fmt.Sprintf(format, args...)}
}

// QMPError is an error answered by qemu to a QMP command, with QMP's
// error class kept (go-qemu's own monitors keep only the description).
type QMPError struct {
	// Command is the QMP command ("set_password").
	Command string
	// Class is QMP's error class ("GenericError", "CommandNotFound", …).
	Class string
	// Desc is qemu's human-readable description.
	Desc string
}

func (e *QMPError) Error() string {
	return fmt.Sprintf("qemu: QMP %s: %s: %s", e.Command, e.Class, e.Desc)
}

// ExitError reports a qemu that exited when nobody asked it to (or that
// failed to launch). Its message carries everything needed to reproduce
// and diagnose: the exit status, the shell-quoted command line, and the
// tails of qemu's own log and of the guest's serial log.
type ExitError struct {
	// VM is the VM's String() at the time of exit.
	VM string
	// Status is the exit status as Go reports it ("exit status 1",
	// "signal: killed") or, on the libvirt backend, the domain's
	// lifecycle reason ("crashed", "destroyed").
	Status string
	// Code is the exit code, or -1 when qemu was killed by a signal or
	// the code is unknown (libvirt).
	Code int
	// Argv is qemu's command line (direct backend only).
	Argv []string
	// Log is the tail of qemu's stdout+stderr log (on libvirt, the
	// domain log when it is readable from this host).
	Log string
	// Serial is the tail of the guest's serial log.
	Serial string
	// Expected is true when the exit was asked for (Close, Kill, QMP
	// quit). Start and the waits never return an expected ExitError;
	// it is only visible through Err-like accessors.
	Expected bool

	bind     bool
	hostLost bool
}

func (e *ExitError) Error() string {
	var b strings.Builder
	what := "exited unexpectedly"
	if e.Expected {
		what = "exited"
	}
	fmt.Fprintf(&b, "qemu: %s %s (%s)", e.VM, what, e.Status)
	if len(e.Argv) > 0 {
		fmt.Fprintf(&b, "\n  command: %s", shell.Join(e.Argv))
	}
	section := func(name, body string) {
		if strings.TrimRight(body, "\r\n") == "" {
			fmt.Fprintf(&b, "\n  %s: (empty)", name)
			return
		}
		fmt.Fprintf(&b, "\n  %s (tail):\n%s", name, indent(body))
	}
	section("qemu log", e.Log)
	section("serial log", e.Serial)
	return b.String()
}

// Is makes every ExitError match ErrExited, ErrBind when the SPICE port
// could not be bound, and ErrHostLost when the connection to the VM's
// libvirtd was lost.
func (e *ExitError) Is(target error) bool {
	return target == ErrExited || (target == ErrBind && e.bind) || (target == ErrHostLost && e.hostLost)
}

// redact replaces every occurrence of secret in err's message. It keeps
// *QMPError and the sentinels reachable through errors.Is/As.
func redact(err error, secret string) error {
	if err == nil || secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	var qe *QMPError
	if errors.As(err, &qe) {
		return &QMPError{
			Command: qe.Command,
			Class:   qe.Class,
			Desc:    strings.ReplaceAll(qe.Desc, secret, "[ticket]"),
		}
	}
	return &redactedError{msg: strings.ReplaceAll(err.Error(), secret, "[ticket]"), err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }

// Is keeps the sentinels of the redacted error matchable without
// exposing its message through Unwrap.
func (e *redactedError) Is(target error) bool { return errors.Is(e.err, target) }

// indent prefixes each line of a log tail with "    | ", for error
// messages.
func indent(s string) string {
	s = strings.TrimRight(s, "\r\n")
	if s == "" {
		return "    | (empty)"
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = "    | " + strings.TrimRight(l, "\r")
	}
	return strings.Join(lines, "\n")
}
