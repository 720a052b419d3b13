package static

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// header opens every file Emit writes.
const header = `# sources.yaml: console sources for a Kerbside-compatible SPICE proxy
# (Kerbside, or spice-harness: harness serve --sources FILE).
#
# The file is a YAML list of sources. A source of type static lists its
# SPICE consoles directly, each with the ticket (SPICE password) that opens
# it, so a proxy can front hand-launched qemu without any control plane.
# Sources of Kerbside's other types (shakenfist, ovirt, openstack) may sit
# in the same list; spice-harness keeps them and does not serve them.
#
# Source keys:
#   source         unique name of the source; consoles are reached at
#                  /console/proxy/{source}/{uuid}/console.vv
#   type           static
#   ca_cert        PEM of the CA that signed the hypervisors' TLS
#                  certificates (used with secure_port), or null
#   consoles       the list of consoles; [] for none
#
# Console keys, required:
#   uuid           identifies the console within its source (qemu -uuid)
#   name           a human readable name (qemu -name)
#   hypervisor     host name of the machine that runs qemu
#   hypervisor_ip  address the SPICE ports listen on (qemu -spice addr=)
#   insecure_port  plain SPICE port, 1-65535 (qemu -spice port=)
#   ticket         the SPICE password, 1-59 bytes: spice-server stores only
#                  59 bytes of a password, so a 60-byte ticket never matches
# Console keys, optional (null when absent):
#   secure_port    TLS SPICE port, 1-65535 (qemu -spice tls-port=)
#   host_subject   subject the hypervisor's TLS certificate must have, in
#                  spice-gtk's form: "C=XX,O=Example,CN=hv1.example.com"
#
# Start qemu with no password on its command line: spice-server then has
# ticketing on and refuses every client until the ticket is set over QMP
# (set_password), so the ticket never shows in ps or in a log. The comment
# above each console below gives matching commands.
`

var (
	canonicalUUID = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	shellSafe     = regexp.MustCompile(`^[A-Za-z0-9@%_+=:,./-]+$`)
	unsafeFile    = regexp.MustCompile(`[^A-Za-z0-9._-]+`)
)

// consoleComment returns the comment written above console i of s: a qemu
// command line that serves it and the QMP commands that set its ticket.
func consoleComment(i int, c Console) string {
	sock := "/tmp/" + socketName(c.Name, i) + ".qmp"
	spice := "port=" + strconv.Itoa(c.InsecurePort)
	if c.SecurePort != 0 {
		spice += ",tls-port=" + strconv.Itoa(c.SecurePort)
	}
	spice += ",addr=" + qemuOpt(c.HypervisorIP)
	if c.SecurePort != 0 {
		spice += ",x509-dir=/etc/pki/qemu"
	}
	identity := "-name " + shellQuote("guest="+qemuOpt(c.Name))
	uuidNote := ""
	if canonicalUUID.MatchString(c.UUID) {
		identity += " -uuid " + c.UUID
	} else {
		uuidNote = "# (no -uuid: qemu takes only an RFC 4122 UUID, and this uuid is not one)\n"
	}

	var b strings.Builder
	fmt.Fprintf(&b, "# %s: on %s, start qemu with SPICE on %s and no\n", c.Name, c.Hypervisor, hostPort(c.HypervisorIP, c.InsecurePort))
	b.WriteString("# password, then set the ticket over QMP:\n")
	b.WriteString("#   qemu-system-x86_64 -m 1024 -drive file=disk.qcow2,if=virtio \\\n")
	fmt.Fprintf(&b, "#     -spice %s \\\n", shellQuote(spice))
	fmt.Fprintf(&b, "#     -qmp %s \\\n", shellQuote("unix:"+sock+",server=on,wait=off"))
	fmt.Fprintf(&b, "#     %s\n", identity)
	b.WriteString(uuidNote)
	if c.SecurePort != 0 {
		b.WriteString("#   (/etc/pki/qemu holds ca-cert.pem, server-cert.pem and server-key.pem)\n")
	}
	fmt.Fprintf(&b, "#   socat - UNIX-CONNECT:%s <<'EOF'\n", sock)
	b.WriteString(`#   {"execute": "qmp_capabilities"}` + "\n")
	fmt.Fprintf(&b, `#   {"execute": "set_password", "arguments": {"protocol": "spice", "password": %s}}`+"\n", jsonString(c.Ticket))
	b.WriteString("#   EOF")
	return b.String()
}

func hostPort(host string, port int) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

// socketName turns a console name into a file name for its QMP socket.
func socketName(name string, i int) string {
	s := strings.Trim(unsafeFile.ReplaceAllString(name, "-"), "-.")
	if len(s) > 40 {
		s = s[:40]
	}
	if s == "" {
		s = "console-" + strconv.Itoa(i+1)
	}
	return s
}

// qemuOpt escapes a value inside a qemu option string, where a comma
// separates options unless doubled.
func qemuOpt(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func jsonString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return strings.TrimSuffix(b.String(), "\n")
}
