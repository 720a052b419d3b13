package vv_test

import (
	"errors"
	"fmt"

	"github.com/spiceharness/spiceharness/proxy/vv"
)

// Render writes what remote-viewer reads, escaping as GLib does: the CA
// PEM becomes one line with literal \n.
func ExampleRender() {
	b, err := vv.Render(&vv.File{
		Type: "spice", Host: "127.0.0.1", TLSPort: 5901, Password: "one-time-token",
		CA: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", HostSubject: "O=spice-harness,CN=localhost",
		Title: "vm1 via proxy", DeleteThisFile: true, SecureChannels: []string{"main", "display"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(string(b))
	// Output:
	// [virt-viewer]
	// type=spice
	// host=127.0.0.1
	// tls-port=5901
	// password=one-time-token
	// ca=-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n
	// host-subject=O=spice-harness,CN=localhost
	// title=vm1 via proxy
	// delete-this-file=1
	// secure-channels=main;display;
}

// Parse reads a .vv back; fmt and slog print it with the password
// redacted.
func ExampleParse() {
	f, err := vv.Parse([]byte("[virt-viewer]\ntype=spice\nhost=127.0.0.1\nport=5900\npassword=s3cret\nfullscreen=1\n"))
	if err != nil {
		fmt.Println(err)
		return
	}
	full, _ := f.Get("fullscreen")
	fmt.Println(f.Host, f.Port, full)
	fmt.Println(f)
	// Output:
	// 127.0.0.1 5900 1
	// vv.File{type="spice" host="127.0.0.1" port=5900 password=[redacted] fullscreen="1"}
}

// A bad value is a *ParseError with its line and key, matching ErrValue.
func ExampleParse_error() {
	_, err := vv.Parse([]byte("[virt-viewer]\ntype=spice\nport=x\n"))
	var pe *vv.ParseError
	fmt.Println(errors.Is(err, vv.ErrValue), errors.As(err, &pe) && pe.Line == 3 && pe.Key == "port")
	fmt.Println(err)
	// Output:
	// true true
	// vv: line 3: port: "x" is not a port (a decimal number 1-65535)
}
