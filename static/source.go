package static

import (
	"errors"
	"fmt"
	"strconv"

	"gopkg.in/yaml.v3"
)

// Source is one entry of sources.yaml.
//
// A static source (Type "static") lists its consoles. Sources of the other
// Kerbside types (shakenfist, ovirt, openstack) are kept with their name
// and type and reported as unsupported: spice-harness does not serve them.
type Source struct {
	// Name is the source's `source` key, unique in a file; consoles are
	// keyed by (Name, UUID).
	Name string
	// Type is the source's `type` key.
	Type string
	// CACert is the PEM of the CA that signed the hypervisors' TLS
	// certificates (static sources only); "" when absent (null).
	CACert string
	// Consoles are the valid consoles of a static source in file order. A
	// duplicate uuid keeps the position of its first definition and the
	// values of its last, as Kerbside does. Consoles with errors are left
	// out (and make the source errored).
	Consoles []Console

	// Line and Col locate the source's entry in the file (0 when the
	// Source was built in Go).
	Line, Col int
	// Errors and Warnings are the problems of this source, in file order.
	// A source with errors is errored: Load refuses it.
	Errors   []Problem
	Warnings []Problem

	// raw is the entry of an unsupported source as parsed, so Emit writes
	// back its other keys (url, username, …) unchanged.
	raw *yaml.Node
}

// Supported reports whether spice-harness serves this source: its type is
// static.
func (s *Source) Supported() bool { return s.Type == TypeStatic }

// Unsupported reports whether the source has one of Kerbside's other
// types (shakenfist, ovirt, openstack): kept, reported, not served.
func (s *Source) Unsupported() bool { return s.Type != TypeStatic && knownType(s.Type) }

// Errored reports whether the source has errors.
func (s *Source) Errored() bool { return len(s.Errors) > 0 }

// Err returns nil for a source that can be served, or a *SourceError whose
// Err is ErrInvalid (the source has errors) or ErrUnsupportedType.
func (s *Source) Err() error {
	switch {
	case s.Errored():
		return &SourceError{Source: s.Name, Type: s.Type, Err: ErrInvalid, Problems: s.Errors}
	case !s.Supported():
		return &SourceError{Source: s.Name, Type: s.Type, Err: ErrUnsupportedType}
	}
	return nil
}

// Load is the static source driver: it returns a copy of the source's
// consoles, tickets included, in file order, for the console store. For
// an errored or unsupported source it returns nil and the error from Err:
// an errored source serves nothing, and other sources are not affected.
func (s *Source) Load() ([]Console, error) {
	if err := s.Err(); err != nil {
		return nil, err
	}
	out := make([]Console, len(s.Consoles))
	copy(out, s.Consoles)
	return out, nil
}

// Key returns the store key of this source's console uuid.
func (s *Source) Key(uuid string) Key { return Key{Source: s.Name, UUID: uuid} }

// Validate checks a Source built in Go against the rules Parse applies,
// without positions: the error joins one Problem per error, with fields
// relative to the source ("consoles[1].ticket"). Warnings are not errors.
// Errors and Warnings of a parsed Source are not looked at.
func (s *Source) Validate() error {
	return errors.Join(problemErrors(s.validate(""))...)
}

func (s *Source) validate(prefix string) []Problem {
	var ps []Problem
	add := func(field, msg string, sentinel error) {
		ps = append(ps, Problem{Field: prefix + field, Message: msg, Err: sentinel})
	}
	if m := checkSegment(s.Name); m != "" {
		add("source", m, ErrValue)
	}
	if !knownType(s.Type) {
		add("type", unknownTypeMessage(s.Type), ErrValue)
		return ps
	}
	if !s.Supported() {
		if s.CACert != "" {
			add("ca_cert", fmt.Sprintf("is only kept for type static, this source has type %q", s.Type), ErrValue)
		}
		if len(s.Consoles) > 0 {
			add("consoles", fmt.Sprintf("only a static source has consoles, this one has type %q", s.Type), ErrValue)
		}
		return ps
	}
	if s.CACert != "" {
		if m := checkCACert(s.CACert); m != "" {
			add("ca_cert", m, ErrValue)
		}
	}
	seen := make(map[string]int, len(s.Consoles))
	for i, c := range s.Consoles {
		field := "consoles[" + strconv.Itoa(i) + "]."
		for _, p := range c.validate() {
			add(field+p.Field, p.Message, p.Err)
		}
		if j, dup := seen[c.UUID]; dup {
			add(field+"uuid", fmt.Sprintf("duplicate uuid %q (also consoles[%d]); a parser keeps only the last", c.UUID, j), ErrDuplicate)
		}
		seen[c.UUID] = i
	}
	return ps
}

// Validate checks a Console built in Go against the rules Parse applies:
// the error joins one Problem per error, Field naming the key ("ticket").
func (c Console) Validate() error {
	return errors.Join(problemErrors(c.validate())...)
}

func (c Console) validate() []Problem {
	var ps []Problem
	add := func(field, msg string) {
		if msg != "" {
			ps = append(ps, Problem{Field: field, Message: msg, Err: ErrValue})
		}
	}
	add("uuid", checkSegment(c.UUID))
	add("name", checkNonEmpty(c.Name))
	add("hypervisor", checkHost(c.Hypervisor))
	add("hypervisor_ip", checkHost(c.HypervisorIP))
	add("insecure_port", checkPort(c.InsecurePort))
	add("ticket", checkTicket(c.Ticket))
	if c.SecurePort != 0 {
		add("secure_port", checkPort(c.SecurePort))
		if c.SecurePort == c.InsecurePort {
			add("secure_port", samePortMessage(c.SecurePort))
		}
	}
	if c.HostSubject != "" {
		add("host_subject", checkOptionalText(c.HostSubject))
	}
	return ps
}

func samePortMessage(port int) string {
	return fmt.Sprintf("is %d, the same as insecure_port; qemu cannot serve plain and TLS SPICE on one port", port)
}

func unknownTypeMessage(t string) string {
	msg := fmt.Sprintf("unknown source type %q; Kerbside knows static, shakenfist, ovirt and openstack (and marks any other type errored)", t)
	if s := suggest(t, kerbsideTypes); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	return msg
}
