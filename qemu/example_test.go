package qemu_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/spiceharness/spiceharness/qemu"
)

// Boot the built-in guest, open it with a fresh ticket and type into it.
// It boots a real qemu, so it is compiled but not run by go test (its
// port and ticket differ on every run); the integration tests run the
// same steps.
func ExampleStart() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vm, err := qemu.Start(ctx, qemu.Accel(qemu.AccelTCG), qemu.Name("example"))
	defer vm.Close() // safe even when Start failed
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := vm.SetTicket(ctx); err != nil {
		fmt.Println(err)
		return
	}
	if err := vm.WaitFor(ctx, qemu.ForSPICE(), qemu.ForGuestPrompt()); err != nil {
		fmt.Println(err)
		return
	}
	if err := vm.SendKeys(ctx, "h", "i"); err != nil {
		fmt.Println(err)
		return
	}
	if err := vm.WaitSerial(ctx, regexp.MustCompile(`READY> hi`)); err != nil {
		fmt.Println(err)
		return
	}
	ep := vm.Endpoint()
	fmt.Println(ep.Name, ep.HostIP, ep.Port > 0, len(ep.Ticket))
}

// Options are checked before anything is launched: every rejected
// option is reported at once, each naming the option and the value.
func ExampleStart_invalidOptions() {
	vm, err := qemu.Start(context.Background(), qemu.Memory(4), qemu.Name("-vm"))
	defer vm.Close()
	fmt.Println(errors.Is(err, qemu.ErrInvalidConfig))
	fmt.Println(err)
	// Output:
	// true
	// qemu: invalid Memory 4: want 8..1048576 MiB
	// qemu: invalid Name -vm: want 1-64 characters of [A-Za-z0-9._-], not starting with . _ -
}

// A CA for SPICE TLS; its certificate is what clients and proxies trust.
func ExampleNewCA() {
	ca, err := qemu.NewCA("lab backend CA")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(ca.Cert.Subject, ca.Cert.IsCA, len(ca.Pool().Subjects()))
	// Output: CN=lab backend CA,O=spice-harness true 1
}

// A VM with SPICE TLS, and a TLS connection to it that checks its
// certificate against the CA. Compiled only: it boots a real qemu.
func ExampleTLS() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ca, err := qemu.NewCA("lab backend CA")
	if err != nil {
		fmt.Println(err)
		return
	}
	vm, err := qemu.Start(ctx, qemu.TLS(ca))
	defer vm.Close()
	if err != nil {
		fmt.Println(err)
		return
	}
	ep := vm.Endpoint()
	conn, err := tls.Dial("tcp", ep.TLSAddr(), &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	fmt.Println(ep.HostSubject)
}

// An Endpoint prints without its ticket, so it is safe in logs.
func ExampleEndpoint_String() {
	ep := qemu.Endpoint{UUID: "0f7d7a6c-6d9b-4a4e-9c1e-2a5b8c7d9e10", Name: "vm1", HostIP: "127.0.0.1", Port: 5900, TLSPort: 5901, Ticket: "s3cret"}
	fmt.Println(ep)
	fmt.Println(ep.Addr(), ep.TLSAddr())
	fmt.Printf("%#v\n", ep)
	// Output:
	// vm1 (0f7d7a6c-6d9b-4a4e-9c1e-2a5b8c7d9e10) spice 127.0.0.1:5900 tls 5901
	// 127.0.0.1:5900 127.0.0.1:5901
	// qemu.Endpoint{UUID:"0f7d7a6c-6d9b-4a4e-9c1e-2a5b8c7d9e10", Name:"vm1", Host:"", HostIP:"127.0.0.1", Port:5900, TLSPort:5901, HostSubject:"", Ticket:"[ticket]"}
}

func ExampleParseAccelerator() {
	for _, s := range []string{"", "KVM", "hvf"} {
		a, err := qemu.ParseAccelerator(s)
		fmt.Printf("%q %q %v\n", s, a, err)
	}
	// Output:
	// "" "auto" <nil>
	// "KVM" "kvm" <nil>
	// "hvf" "" qemu: invalid accelerator hvf: want auto, kvm or tcg
}
