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
// channel event it reported (20 connect, 21 TLS, 22 link, 23 auth,
// 24 I/O; 0 when none) and the tail of its stderr.
type ClientError struct {
	Program string
	Status  string
	Event   int
	Stderr  string
}

func (e *ClientError) Error() string {
	s := fmt.Sprintf("%s: %s", e.Program, e.Status)
	if e.Event != 0 {
		s += fmt.Sprintf(" (main channel event %d: %s)", e.Event, channelEventName(e.Event))
	}
	if e.Stderr != "" {
		s += "\n" + e.Stderr
	}
	return s
}

func channelEventName(n int) string {
	switch n {
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
	return "?"
}

var eventRE = regexp.MustCompile(`main channel event: (\d+)`)
