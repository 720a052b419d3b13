package static_test

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/spiceharness/spiceharness/static"
)

// Parse reports every problem of a file with its line and column, and
// keeps the sources that have none usable.
func ExampleParse() {
	data := []byte(`- source: lab
  type: static
  consoles:
    - uuid: 6f4e2c1a-0000-4000-8000-000000000001
      name: vm-1
      hypervisor: localhost
      hypervisor_ip: 127.0.0.1
      insecure_port: 5930
      ticket: s3cret
- source: broken
  type: static
  consoles:
    - uuid: 6f4e2c1a-0000-4000-8000-000000000002
      name: vm-2
      hypervisor: localhost
      hypervisor_ip: 127.0.0.1
      insecure_port: 70000
      tikcet: s3cret
`)
	f, err := static.Parse("sources.yaml", data)
	var pe *static.ParseError
	fmt.Println(errors.As(err, &pe))
	for _, p := range f.Problems {
		fmt.Println(p)
	}
	for key, c := range f.Consoles() {
		fmt.Println(key, c.HypervisorIP, c.InsecurePort)
	}
	// Output:
	// true
	// sources.yaml:13:7: sources[1].consoles[0].ticket: is missing (required)
	// sources.yaml:17:22: sources[1].consoles[0].insecure_port: is 70000; a port is 1-65535
	// sources.yaml:18:7: sources[1].consoles[0].tikcet: unknown key "tikcet" (did you mean "ticket"?); a console has uuid, name, hypervisor, hypervisor_ip, insecure_port, ticket, secure_port and host_subject
	// lab/6f4e2c1a-0000-4000-8000-000000000001 127.0.0.1 5930
}

// Emit writes a commented sources.yaml (every key explained, and the
// qemu and QMP commands that match each console) that Parse reads back
// to the same sources.
func ExampleEmit() {
	var b bytes.Buffer
	if err := static.Emit(&b, static.ExampleSources()); err != nil {
		fmt.Println(err)
		return
	}
	f, err := static.Parse("sources.yaml", b.Bytes())
	if err != nil {
		fmt.Println(err)
		return
	}
	src := f.Sources[0]
	fmt.Println(src.Name, src.Type, len(src.Consoles), src.Consoles[1].Name, src.Consoles[1].InsecurePort)
	// Output: example-static static 2 example-vm-2 5931
}
