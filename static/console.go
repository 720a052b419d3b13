package static

// Console is one SPICE console of a static source: where the hypervisor
// serves it and the ticket (SPICE password) that opens it.
//
// The six fields without "omitempty" semantics are required in
// sources.yaml. SecurePort and HostSubject are optional: their zero values
// (0 and "") mean "absent" and are written as null.
type Console struct {
	// UUID identifies the console inside its source (qemu -uuid).
	UUID string
	// Name is a human readable name (qemu -name).
	Name string
	// Hypervisor is the host name of the machine running qemu.
	Hypervisor string
	// HypervisorIP is the address the SPICE ports listen on.
	HypervisorIP string
	// InsecurePort is the plain SPICE port (qemu -spice port=).
	InsecurePort int
	// SecurePort is the TLS SPICE port (qemu -spice tls-port=); 0 when absent.
	SecurePort int
	// Ticket is the SPICE password, 1–59 bytes.
	Ticket string
	// HostSubject is the expected subject of the hypervisor's TLS
	// certificate, in spice-gtk's format ("C=XX,O=Test,CN=host"); "" when
	// absent.
	HostSubject string
}

// Key identifies a console across sources: consoles are keyed by
// (source, uuid) so the same uuid in two sources stays reachable.
type Key struct {
	Source string
	UUID   string
}

func (k Key) String() string { return k.Source + "/" + k.UUID }
