package static

// ExampleSources returns the sources `harness emit-example` writes (and the
// repository ships as fixtures/example-static-sources.yaml): one static
// source with two plain-SPICE consoles on localhost. The tickets are fixed
// so the file is reproducible; `harness up` sets fresh ones.
func ExampleSources() []Source {
	return []Source{{
		Name: "example-static",
		Type: TypeStatic,
		Consoles: []Console{
			{
				UUID:         "6f4e2c1a-0000-4000-8000-000000000001",
				Name:         "example-vm-1",
				Hypervisor:   "localhost",
				HypervisorIP: "127.0.0.1",
				InsecurePort: 5930,
				Ticket:       "example-ticket-vm-1",
			},
			{
				UUID:         "6f4e2c1a-0000-4000-8000-000000000002",
				Name:         "example-vm-2",
				Hypervisor:   "localhost",
				HypervisorIP: "127.0.0.1",
				InsecurePort: 5931,
				Ticket:       "example-ticket-vm-2",
			},
		},
	}}
}
