package spicetest

import (
	"crypto/tls"
	"net"
)

// ClientHello returns the first flight of a real Go TLS client (its
// ClientHello record), for feeding a listener that expects something
// else.
func ClientHello() ([]byte, error) {
	a, z := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tls.Client(a, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true}).Handshake()
	}()
	buf := make([]byte, 16<<10)
	n, err := z.Read(buf)
	a.Close()
	z.Close()
	<-done
	return buf[:n], err
}
