package spice

import (
	"errors"
	"fmt"
)

// LinkErr is a SPICE_LINK_ERR_* value. Non-zero values are errors, so
// callers can write errors.Is(err, spice.ErrPermissionDenied).
type LinkErr uint32

// The SPICE_LINK_ERR_* values.
const (
	LinkOK                 LinkErr = 0
	ErrLinkGeneric         LinkErr = 1
	ErrInvalidMagic        LinkErr = 2
	ErrInvalidData         LinkErr = 3
	ErrVersionMismatch     LinkErr = 4
	ErrNeedSecured         LinkErr = 5
	ErrNeedUnsecured       LinkErr = 6
	ErrPermissionDenied    LinkErr = 7
	ErrBadConnectionID     LinkErr = 8
	ErrChannelNotAvailable LinkErr = 9
)

var linkErrNames = [...]string{
	"OK", "ERROR", "INVALID_MAGIC", "INVALID_DATA", "VERSION_MISMATCH",
	"NEED_SECURED", "NEED_UNSECURED", "PERMISSION_DENIED", "BAD_CONNECTION_ID",
	"CHANNEL_NOT_AVAILABLE",
}

// Name is the bare SPICE_LINK_ERR_* suffix ("PERMISSION_DENIED"), or
// "ERR_N" for a value spice-protocol does not define.
func (e LinkErr) Name() string {
	if int(e) < len(linkErrNames) {
		return linkErrNames[e]
	}
	return fmt.Sprintf("ERR_%d", uint32(e))
}

func (e LinkErr) String() string {
	if int(e) < len(linkErrNames) {
		return fmt.Sprintf("%s (%d)", linkErrNames[e], uint32(e))
	}
	return fmt.Sprintf("link error %d", uint32(e))
}

// Error makes a LinkErr usable as an error value.
func (e LinkErr) Error() string { return "spice: " + e.String() }

// Link steps, as reported in LinkError.Step.
const (
	StepDial       = "dial"
	StepTLS        = "tls handshake"
	StepLinkSend   = "send link"
	StepLinkReply  = "link reply"
	StepAuth       = "auth"
	StepLinkResult = "link result"
	StepMainInit   = "main init"
)

// LinkError says which step of linking a channel failed, and with which
// link code when the peer sent one. It unwraps to the code (a LinkErr)
// when there is one, else to the underlying error.
type LinkError struct {
	Step    string      // one of the Step* constants
	Channel ChannelType // the channel being linked
	ID      uint8       // its channel id
	Code    LinkErr     // the peer's code, 0 if none was received
	Err     error       // the transport or decode error, if any
}

func (e *LinkError) Error() string {
	s := fmt.Sprintf("spice: link %s:%d: %s", e.Channel, e.ID, e.Step)
	if e.Code != LinkOK {
		s += ": " + e.Code.String()
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *LinkError) Unwrap() []error {
	var errs []error
	if e.Code != LinkOK {
		errs = append(errs, e.Code)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// CodeOf returns the SPICE link code carried by err and true when err is
// a link refusal: a code the peer sent (a *LinkError with Code set) or one
// a check produced (ErrInvalidMagic, ErrInvalidData…). For nil and for
// every other error (a dial failure, a timeout, EOF, a TLS error) it
// returns LinkOK and false: "no link code" is not "linked".
func CodeOf(err error) (LinkErr, bool) {
	var le LinkErr
	if errors.As(err, &le) && le != LinkOK {
		return le, true
	}
	return LinkOK, false
}

// Sentinel decode errors.
var (
	// ErrTooLarge: a size field exceeds the configured maximum; nothing
	// was allocated for it.
	ErrTooLarge = errors.New("spice: message too large")
	// ErrMalformed: a message is structurally invalid.
	ErrMalformed = errors.New("spice: malformed message")
)
