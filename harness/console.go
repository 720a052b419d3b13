package harness

import (
	"github.com/spiceharness/spiceharness/qemu"
	"github.com/spiceharness/spiceharness/static"
)

// Console is the VM's sources.yaml entry: its qemu.Endpoint in the
// Kerbside static-source form (uuid, name, hypervisor, hypervisor_ip,
// insecure_port, secure_port, host_subject, ticket).
func (vm *VM) Console() static.Console { return ConsoleOf(vm.Endpoint()) }

// ConsoleOf turns what the VM launcher knows into a sources.yaml
// console: the host name becomes hypervisor, the SPICE address
// hypervisor_ip, the plain and TLS ports insecure_port and secure_port.
func ConsoleOf(ep qemu.Endpoint) static.Console {
	return static.Console{
		UUID:         ep.UUID,
		Name:         ep.Name,
		Hypervisor:   ep.Host,
		HypervisorIP: ep.HostIP,
		InsecurePort: ep.Port,
		SecurePort:   ep.TLSPort,
		Ticket:       ep.Ticket,
		HostSubject:  ep.HostSubject,
	}
}
