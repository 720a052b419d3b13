package qemu

import (
	"net"
	"strconv"
)

// Endpoint is what the launcher knows about a VM's SPICE server: who the
// VM is, where its ports listen and the ticket that opens them. It is
// plain data; package harness turns it into a sources.yaml console.
type Endpoint struct {
	// UUID is the VM's UUID (qemu -uuid), lower-case 8-4-4-4-12 hex.
	UUID string
	// Name is the VM's name (qemu -name, the libvirt domain name).
	Name string
	// Host is the host name of the machine running qemu.
	Host string
	// HostIP is the address the SPICE ports listen on (SPICEAddr).
	HostIP string
	// Port is the plain SPICE port; 0 until it is known.
	Port int
	// TLSPort is the TLS SPICE port; 0 without TLS.
	TLSPort int
	// HostSubject is the subject of the VM's TLS certificate in
	// spice-gtk's host-subject form ("O=spice-harness,CN=localhost");
	// "" without TLS.
	HostSubject string
	// Ticket is the current SPICE password: "" until SetTicket, still
	// the last ticket after ExpireTicket. A secret: String leaves it out.
	Ticket string
}

// Addr is the plain SPICE address, HOST:PORT.
func (e Endpoint) Addr() string { return net.JoinHostPort(e.HostIP, strconv.Itoa(e.Port)) }

// TLSAddr is the TLS SPICE address, HOST:PORT; "" without TLS.
func (e Endpoint) TLSAddr() string {
	if e.TLSPort == 0 {
		return ""
	}
	return net.JoinHostPort(e.HostIP, strconv.Itoa(e.TLSPort))
}

// String names the endpoint for messages and logs, never with the
// ticket: "NAME (UUID) spice 127.0.0.1:5900 tls 5901".
func (e Endpoint) String() string {
	s := e.Name + " (" + e.UUID + ") spice " + spiceAddrString(e.HostIP, e.Port)
	if e.TLSPort != 0 {
		s += " tls " + strconv.Itoa(e.TLSPort)
	}
	return s
}

// GoString keeps %#v from printing the ticket too.
func (e Endpoint) GoString() string {
	t := `""`
	if e.Ticket != "" {
		t = `"[ticket]"`
	}
	return "qemu.Endpoint{UUID:" + strconv.Quote(e.UUID) + ", Name:" + strconv.Quote(e.Name) +
		", Host:" + strconv.Quote(e.Host) + ", HostIP:" + strconv.Quote(e.HostIP) +
		", Port:" + strconv.Itoa(e.Port) + ", TLSPort:" + strconv.Itoa(e.TLSPort) +
		", HostSubject:" + strconv.Quote(e.HostSubject) + ", Ticket:" + t + "}"
}
