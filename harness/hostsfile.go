package harness

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/spiceharness/spiceharness/qemu"
)

// This file reads a hosts file (`harness run --hosts hosts.yaml`,
// LoadHosts): the hypervisor hosts lanes are placed on. The reader is
// strict, like the sources.yaml one: every problem is listed with its
// file:line:col, unknown and duplicate keys are errors, nothing is
// guessed.
//
//	hosts:
//	  - name: hv1                                # 1-63 of [A-Za-z0-9._-], unique
//	    uri: qemu+ssh://root@hv1.example/system  # its libvirtd
//	    address: 192.0.2.10                      # where its consoles are reached (SPICE listens there)
//	    labels: [kvm, spice-tls]                 # what it offers; lanes require labels
//	    slots: 4                                 # VMs it runs at once for this harness
//	    pool_dir: /var/lib/libvirt/spice-harness # optional: the image pool's directory on it
//	    tls:                                     # with the spice-tls label: its SPICE certificate
//	      ca_cert: hv1-ca.pem                    # the CA that signed it (relative to this file)
//	      host_subject: "O=Example,CN=hv1"       # its subject, spice-gtk's host-subject form

// MaxHostsFileSize is the largest hosts file LoadHosts reads.
const MaxHostsFileSize = 256 << 10

// LabelSpiceTLS is the label of a host whose libvirtd serves SPICE over
// TLS with its own certificate (its tls: block); TLSBackends lanes need
// it.
const LabelSpiceTLS = "spice-tls"

// ErrHostsFile is matched by every error about a hosts file.
var ErrHostsFile = errors.New("invalid hosts file")

// HostsProblem is one thing wrong with a hosts file, at a position.
type HostsProblem struct {
	File      string
	Line, Col int
	// Field is the value's path: "hosts[1].slots".
	Field   string
	Message string
}

// String is "file:line:col: field: message".
func (p HostsProblem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "%s:%d:%d: ", p.File, p.Line, p.Col)
	} else if p.File != "" {
		b.WriteString(p.File + ": ")
	}
	if p.Field != "" {
		b.WriteString(p.Field + ": ")
	}
	return b.String() + p.Message
}

// HostsError lists every problem of a hosts file. It matches
// ErrHostsFile.
type HostsError struct {
	File     string
	Problems []HostsProblem
}

func (e *HostsError) Error() string {
	n := "1 error"
	if len(e.Problems) != 1 {
		n = strconv.Itoa(len(e.Problems)) + " errors"
	}
	return fmt.Sprintf("%s: %s: %s, the first: %s", e.File, ErrHostsFile, n, e.Problems[0])
}

// Is makes every HostsError match ErrHostsFile.
func (e *HostsError) Is(target error) bool { return target == ErrHostsFile }

// Host is one hypervisor host of a hosts file.
type Host struct {
	// Name identifies the host in logs, reports and repro lines; it is
	// the sources.yaml hypervisor of its consoles.
	Name string
	// URI is its libvirtd (qemu+ssh://, qemu+tls://, qemu+tcp://,
	// qemu:///system).
	URI string
	// Address is where its consoles are reached: the SPICE ports listen
	// there, and it is the sources.yaml hypervisor_ip.
	Address string
	// Labels are what it offers (kvm, spice-tls, linux-guest, …).
	Labels []string
	// Slots is how many VMs of this harness it runs at once.
	Slots int
	// PoolDir is the image pool's directory on it ("": the default,
	// qemu.DefaultPoolDir).
	PoolDir string
	// CAPEM and HostSubject describe its SPICE certificate (spice-tls):
	// the CA that signed it, and its subject in host-subject form.
	CAPEM       []byte
	HostSubject string
	// Local is true for a libvirtd on this machine (qemu:///system,
	// qemu+unix://); its Address defaults to 127.0.0.1. Its domains are
	// set up as on any host (image pool, console stream).
	Local bool
}

// Has reports whether h carries every label in labels.
func (h *Host) Has(labels ...string) bool {
	for _, l := range labels {
		found := false
		for _, x := range h.Labels {
			if x == l {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// ParseHosts reads a hosts file's content; name is the file's name in
// problems, and the directory that ca_cert paths are relative to.
func ParseHosts(name string, data []byte) ([]*Host, error) {
	p := &hostsParser{file: name, dir: filepath.Dir(name)}
	hosts := p.parse(data)
	slices.SortStableFunc(p.problems, func(a, b HostsProblem) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Col - b.Col
	})
	if len(p.problems) > 0 {
		return nil, &HostsError{File: name, Problems: p.problems}
	}
	return hosts, nil
}

// ReadHostsFile reads and parses the hosts file at path.
func ReadHostsFile(path string) ([]*Host, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("harness: hosts file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxHostsFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("harness: hosts file: %w", err)
	}
	if len(data) > MaxHostsFileSize {
		return nil, &HostsError{File: path, Problems: []HostsProblem{{File: path, Line: 1, Col: 1, Field: "file",
			Message: fmt.Sprintf("is larger than %d KiB; a hosts file lists hosts, not data", MaxHostsFileSize>>10)}}}
	}
	return ParseHosts(path, data)
}

type hostsParser struct {
	file, dir string
	problems  []HostsProblem
}

func (p *hostsParser) errorf(n *yaml.Node, field, format string, args ...any) {
	line, col := 1, 1
	if n != nil {
		line, col = n.Line, n.Column
	}
	p.problems = append(p.problems, HostsProblem{File: p.file, Line: line, Col: col, Field: field, Message: fmt.Sprintf(format, args...)})
}

func (p *hostsParser) parse(data []byte) []*Host {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			p.errorf(nil, "hosts", "the file is empty; a hosts file is a mapping with a hosts: list")
			return nil
		}
		line := 1
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if m := regexp.MustCompile(`^line (\d+): (.*)$`).FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		p.problems = append(p.problems, HostsProblem{File: p.file, Line: line, Col: 1, Field: "yaml", Message: msg})
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		p.errorf(&extra, "hosts", "a second YAML document; a hosts file is one document")
	}
	root := doc.Content[0]
	p.noAliases(root)
	if root.Kind != yaml.MappingNode {
		p.errorf(root, "hosts", "must be a mapping with a hosts: list, got %s", kind(root))
		return nil
	}
	var list *yaml.Node
	for _, e := range p.mapping(root, "") {
		switch e.key {
		case "hosts":
			list = e.v
		default:
			p.errorf(e.k, e.key, "unknown key (a hosts file has only hosts:)")
		}
	}
	if list == nil {
		p.errorf(root, "hosts", "missing: a hosts file is a mapping with a hosts: list")
		return nil
	}
	if list.Kind != yaml.SequenceNode || len(list.Content) == 0 {
		p.errorf(list, "hosts", "must be a non-empty list of hosts, got %s", kind(list))
		return nil
	}
	var hosts []*Host
	names := map[string]int{}
	for i, n := range list.Content {
		field := fmt.Sprintf("hosts[%d]", i)
		h := p.host(n, field)
		if h == nil {
			continue
		}
		if first, dup := names[h.Name]; dup {
			p.errorf(n, field+".name", "%q is also the name of the host at line %d; names must be unique", h.Name, first)
			continue
		}
		names[h.Name] = n.Line
		hosts = append(hosts, h)
	}
	return hosts
}

var (
	hostNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	labelRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
)

// host reads one entry; nil when it is not a mapping.
func (p *hostsParser) host(n *yaml.Node, field string) *Host {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, field, "must be a mapping (name, uri, address, labels, slots), got %s", kind(n))
		return nil
	}
	h := &Host{}
	var tls *yaml.Node
	seen := map[string]*yaml.Node{}
	for _, e := range p.mapping(n, field) {
		f := field + "." + e.key
		seen[e.key] = e.k
		switch e.key {
		case "name":
			if s, ok := p.str(e.v, f); ok {
				if !hostNameRE.MatchString(s) {
					p.errorf(e.v, f, "%q: want 1-63 characters of [A-Za-z0-9._-], starting with a letter or digit", s)
				}
				h.Name = s
			}
		case "uri":
			if s, ok := p.str(e.v, f); ok {
				p.uri(h, e.v, f, s)
			}
		case "address":
			if s, ok := p.str(e.v, f); ok {
				if ip := net.ParseIP(s); ip == nil {
					p.errorf(e.v, f, "%q: want the IP address its consoles are reached at (SPICE listens there)", s)
				}
				h.Address = s
			}
		case "labels":
			h.Labels = p.labels(e.v, f)
		case "slots":
			h.Slots = p.slots(e.v, f)
		case "pool_dir":
			if s, ok := p.str(e.v, f); ok {
				if !path.IsAbs(s) || path.Clean(s) != s {
					p.errorf(e.v, f, "%q: want a clean absolute directory on the host", s)
				}
				h.PoolDir = s
			}
		case "tls":
			tls = e.v
		default:
			p.errorf(e.k, f, "unknown key; a host has name, uri, address, labels, slots, pool_dir and tls")
		}
	}
	for _, req := range []string{"name", "uri", "slots"} {
		if seen[req] == nil {
			p.errorf(n, field+"."+req, "missing")
		}
	}
	if seen["address"] == nil {
		if h.Local {
			h.Address = qemu.DefaultSPICEAddr
		} else if h.URI != "" {
			p.errorf(n, field+".address", "missing: a host reached at %s needs the IP address its consoles are reached at", h.URI)
		}
	}
	if tls != nil {
		p.tls(h, tls, field+".tls")
	}
	switch hasTLS := h.Has(LabelSpiceTLS); {
	case hasTLS && tls == nil:
		p.errorf(seen["labels"], field+".labels", "has %s but the host has no tls: block (ca_cert, host_subject)", LabelSpiceTLS)
	case !hasTLS && tls != nil:
		at := n
		if seen["labels"] != nil {
			at = seen["labels"]
		}
		p.errorf(at, field+".labels", "the host has a tls: block but not the %s label; add it to labels", LabelSpiceTLS)
	}
	return h
}

// uri checks a libvirt URI with the same rules as qemu.Libvirt.
func (p *hostsParser) uri(h *Host, n *yaml.Node, field, s string) {
	h.URI = s
	u, err := url.Parse(s)
	if err != nil {
		p.errorf(n, field, "%v", err)
		return
	}
	if u.User != nil {
		if _, hasPassword := u.User.Password(); hasPassword {
			h.URI = u.Redacted()
			p.errorf(n, field, "has a password; it would show in logs, reports and ps: use ssh keys or TLS certificates")
			return
		}
	}
	if err := qemu.CheckLibvirtURI(s); err != nil {
		var ce *qemu.ConfigError
		if errors.As(err, &ce) {
			p.errorf(n, field, "%q: %s", s, ce.Reason)
			return
		}
		p.errorf(n, field, "%v", err)
		return
	}
	h.Local = (u.Scheme == "qemu" && u.Host == "") || u.Scheme == "qemu+unix" || u.Scheme == "unix"
}

func (p *hostsParser) labels(n *yaml.Node, field string) []string {
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, field, "must be a list of labels ([kvm, spice-tls]), got %s", kind(n))
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for i, c := range n.Content {
		f := fmt.Sprintf("%s[%d]", field, i)
		s, ok := p.str(c, f)
		if !ok {
			continue
		}
		switch {
		case !labelRE.MatchString(s):
			p.errorf(c, f, "%q: want lower-case letters, digits and . _ - (kvm, spice-tls, linux-guest)", s)
		case seen[s]:
			p.errorf(c, f, "%q is listed twice", s)
		default:
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// MaxSlots bounds a host's slot count.
const MaxSlots = 1024

func (p *hostsParser) slots(n *yaml.Node, field string) int {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		p.errorf(n, field, "must be an integer (how many VMs it runs at once), got %s", kind(n))
		return 0
	}
	v, err := strconv.Atoi(n.Value)
	if err != nil || v < 1 || v > MaxSlots {
		p.errorf(n, field, "is %s; want 1-%d", n.Value, MaxSlots)
		return 0
	}
	return v
}

func (p *hostsParser) tls(h *Host, n *yaml.Node, field string) {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, field, "must be a mapping with ca_cert and host_subject, got %s", kind(n))
		return
	}
	seen := map[string]bool{}
	for _, e := range p.mapping(n, field) {
		f := field + "." + e.key
		seen[e.key] = true
		switch e.key {
		case "ca_cert":
			s, ok := p.str(e.v, f)
			if !ok {
				continue
			}
			file := s
			if !filepath.IsAbs(file) {
				file = filepath.Join(p.dir, file)
			}
			pemData, err := os.ReadFile(file)
			if err != nil {
				p.errorf(e.v, f, "%v", err)
				continue
			}
			if !isCertPEM(pemData) {
				p.errorf(e.v, f, "%s holds no PEM certificate", file)
				continue
			}
			h.CAPEM = pemData
		case "host_subject":
			if s, ok := p.str(e.v, f); ok {
				if !strings.Contains(s, "=") {
					p.errorf(e.v, f, "%q: want the subject of the host's SPICE certificate, such as O=Example,CN=hv1", s)
				}
				h.HostSubject = s
			}
		default:
			p.errorf(e.k, f, "unknown key; tls has ca_cert and host_subject")
		}
	}
	for _, req := range []string{"ca_cert", "host_subject"} {
		if !seen[req] {
			p.errorf(n, field+"."+req, "missing")
		}
	}
}

func isCertPEM(data []byte) bool {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return false
		}
		if b.Type == "CERTIFICATE" {
			_, err := x509.ParseCertificate(b.Bytes)
			return err == nil
		}
	}
}

type hostsKV struct {
	key  string
	k, v *yaml.Node
}

// mapping returns n's entries with string keys, reporting other keys
// and duplicates (the first is kept).
func (p *hostsParser) mapping(n *yaml.Node, field string) []hostsKV {
	var out []hostsKV
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			p.errorf(k, field, "has a key that is %s; keys are strings", kind(k))
			continue
		}
		f := k.Value
		if field != "" {
			f = field + "." + k.Value
		}
		if first, dup := seen[k.Value]; dup {
			p.errorf(k, f, "is defined twice in one mapping (first at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		out = append(out, hostsKV{key: k.Value, k: k, v: v})
	}
	return out
}

func (p *hostsParser) str(n *yaml.Node, field string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		hint := ""
		if n.Kind == yaml.ScalarNode && n.ShortTag() != "!!null" {
			hint = " (quote it)"
		}
		p.errorf(n, field, "must be a string, got %s%s", kind(n), hint)
		return "", false
	}
	if strings.TrimSpace(n.Value) == "" {
		p.errorf(n, field, "is empty")
		return "", false
	}
	return n.Value, true
}

// noAliases refuses YAML aliases and anchors' expansion anywhere.
func (p *hostsParser) noAliases(n *yaml.Node) {
	if n.Kind == yaml.AliasNode {
		p.errorf(n, "yaml", "alias *%s: aliases are not allowed in a hosts file; write the value out", n.Value)
		return
	}
	for _, c := range n.Content {
		p.noAliases(c)
	}
}

// kind describes a node for messages: "a list", "the integer 3", …
func kind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.ShortTag() {
	case "!!null":
		return "nothing (null)"
	case "!!int":
		return "the integer " + n.Value
	case "!!bool":
		return "the boolean " + n.Value
	case "!!float":
		return "the number " + n.Value
	case "!!str":
		return strconv.Quote(n.Value)
	}
	return n.ShortTag() + " " + strconv.Quote(n.Value)
}
