package harness

import (
	"fmt"
	"regexp"
)

// Endpoint is what a real SPICE client needs to connect: the fields of a
// `.vv` file.
type Endpoint struct {
	Host     string
	Port     int // plain port, 0 for none
	TLSPort  int // TLS port, 0 for none
	Password string
	// CAPEM is the CA to trust for TLS (spicy-screenshot gets it through
	// SSL_CERT_FILE; it has no host-subject option and checks the SANs).
	CAPEM []byte
	// Proxy is the HTTP CONNECT proxy to go through ("http://HOST:PORT",
	// a .vv's proxy=; spicy-screenshot gets it as SPICE_PROXY). Host is
	// then passed to the proxy unchanged.
	Proxy string
}

// ClientError is a real client's failure: exit status, the spice-gtk
// channel event it reported (ChannelEventName: 10 OPENED, 11 SWITCHING,
// 12 CLOSED, 20 ERROR_CONNECT, 21 ERROR_TLS, 22 ERROR_LINK, 23 ERROR_AUTH,
// 24 ERROR_IO; 0 when none) and the tail of its stderr.
type ClientError struct {
	Program string
	Status  string
	Event   int
	Stderr  string
}

func (e *ClientError) Error() string {
	s := fmt.Sprintf("%s: %s", e.Program, e.Status)
	if e.Event != 0 {
		s += fmt.Sprintf(" (main channel event %d: %s)", e.Event, ChannelEventName(e.Event))
	}
	if e.Stderr != "" {
		s += "\n" + e.Stderr
	}
	return s
}

// ChannelEventName names a spice-gtk SpiceChannelEvent number as its
// SPICE_CHANNEL_* suffix ("CLOSED"); a number spice-gtk does not define
// is "unknown event N".
func ChannelEventName(n int) string {
	switch n {
	case 0:
		return "NONE"
	case 10:
		return "OPENED"
	case 11:
		return "SWITCHING"
	case 12:
		return "CLOSED (the server closed the channel)"
	case 20:
		return "ERROR_CONNECT"
	case 21:
		return "ERROR_TLS"
	case 22:
		return "ERROR_LINK"
	case 23:
		return "ERROR_AUTH"
	case 24:
		return "ERROR_IO"
	}
	return fmt.Sprintf("unknown event %d", n)
}

var eventRE = regexp.MustCompile(`main channel event: (\d+)`)
