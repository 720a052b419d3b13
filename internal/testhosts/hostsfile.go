package testhosts

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// HostsYAML is a hosts file (the harness's --hosts format) naming every
// host of the rig.
func (r *Rig) HostsYAML() []byte {
	var b strings.Builder
	b.WriteString("# Test hosts made by internal/testhosts: network namespaces on this machine.\n")
	b.WriteString("hosts:\n")
	for _, h := range r.Hosts {
		fmt.Fprintf(&b, "  - name: %s\n", h.Name)
		fmt.Fprintf(&b, "    uri: %s\n", h.URI)
		fmt.Fprintf(&b, "    address: %s\n", strconv.Quote(h.Addr.String()))
		fmt.Fprintf(&b, "    labels: [%s]\n", strings.Join(h.Labels, ", "))
		fmt.Fprintf(&b, "    slots: %d\n", h.Slots)
		if h.HostSubject != "" {
			b.WriteString("    tls:\n")
			fmt.Fprintf(&b, "      ca_cert: %s\n", strconv.Quote(r.CAFile))
			fmt.Fprintf(&b, "      host_subject: %s\n", strconv.Quote(h.HostSubject))
		}
	}
	return []byte(b.String())
}

// WriteHostsFile writes HostsYAML to dir/hosts.yaml and returns the
// path.
func (r *Rig) WriteHostsFile(dir string) (string, error) {
	path := filepath.Join(dir, "hosts.yaml")
	return path, os.WriteFile(path, r.HostsYAML(), 0o644)
}
