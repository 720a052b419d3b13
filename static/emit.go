package static

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"

	"gopkg.in/yaml.v3"
)

// Emit writes sources as a sources.yaml: a header comment (purpose, every
// field, how to start a matching qemu) and a YAML list in exactly the shape
// Kerbside's static driver reads. Each static source has source, type,
// ca_cert (null or a PEM block) and consoles; each console has its six
// required keys and its two optional ones (null when absent), preceded by
// a comment with a qemu command line and the QMP commands that set its
// ticket. Strings are double-quoted, so no YAML reader mistakes a ticket
// "yes" for a boolean. An unsupported source is written with its source
// and type and, when it came from Parse, its other keys as parsed.
//
// Parse(Emit(sources)) gives back sources (names, types, CA certificates
// and consoles; positions and problems aside). Emit checks every source
// with Validate first, and also refuses duplicate source names: then it
// writes nothing and returns an error that matches ErrInvalid and lists
// the problems.
func Emit(w io.Writer, sources []Source) error {
	var problems []Problem
	names := map[string]int{}
	for i := range sources {
		prefix := "sources[" + strconv.Itoa(i) + "]."
		problems = append(problems, sources[i].validate(prefix)...)
		if j, dup := names[sources[i].Name]; dup {
			problems = append(problems, Problem{Field: prefix + "source", Err: ErrDuplicate,
				Message: fmt.Sprintf("source name %s is also used by sources[%d]", quote(sources[i].Name), j)})
		}
		names[sources[i].Name] = i
	}
	if len(problems) > 0 {
		return fmt.Errorf("static: emit: %w: %w", ErrInvalid, errors.Join(problemErrors(problems)...))
	}

	list := &yaml.Node{Kind: yaml.SequenceNode}
	for i := range sources {
		list.Content = append(list.Content, sourceNode(&sources[i]))
	}
	var body bytes.Buffer
	enc := yaml.NewEncoder(&body)
	enc.SetIndent(2)
	if err := enc.Encode(list); err != nil {
		return fmt.Errorf("static: emit: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("static: emit: %w", err)
	}
	var out bytes.Buffer
	out.WriteString(header)
	out.WriteString("\n")
	out.Write(body.Bytes())
	_, err := w.Write(out.Bytes())
	return err
}

func sourceNode(s *Source) *yaml.Node {
	m := &yaml.Node{Kind: yaml.MappingNode}
	add := func(key string, v *yaml.Node) { m.Content = append(m.Content, plainNode(key), v) }
	add("source", strNode(s.Name))
	add("type", plainNode(s.Type))
	if !s.Supported() {
		if s.raw != nil {
			for i := 0; i+1 < len(s.raw.Content); i += 2 {
				if k := s.raw.Content[i].Value; k != "source" && k != "type" {
					m.Content = append(m.Content, s.raw.Content[i], s.raw.Content[i+1])
				}
			}
		}
		return m
	}
	if s.CACert == "" {
		add("ca_cert", nullNode())
	} else {
		style := yaml.DoubleQuotedStyle
		if literalSafe.MatchString(s.CACert) {
			style = yaml.LiteralStyle
		}
		add("ca_cert", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Style: style, Value: s.CACert})
	}
	list := &yaml.Node{Kind: yaml.SequenceNode}
	for i, c := range s.Consoles {
		n := consoleNode(c)
		n.HeadComment = consoleComment(i, c)
		list.Content = append(list.Content, n)
	}
	add("consoles", list)
	return m
}

func consoleNode(c Console) *yaml.Node {
	m := &yaml.Node{Kind: yaml.MappingNode}
	add := func(key string, v *yaml.Node) { m.Content = append(m.Content, plainNode(key), v) }
	add("uuid", strNode(c.UUID))
	add("name", strNode(c.Name))
	add("hypervisor", strNode(c.Hypervisor))
	add("hypervisor_ip", strNode(c.HypervisorIP))
	add("insecure_port", intNode(c.InsecurePort))
	add("ticket", strNode(c.Ticket))
	if c.SecurePort == 0 {
		add("secure_port", nullNode())
	} else {
		add("secure_port", intNode(c.SecurePort))
	}
	if c.HostSubject == "" {
		add("host_subject", nullNode())
	} else {
		add("host_subject", strNode(c.HostSubject))
	}
	return m
}

// literalSafe matches PEM text that a literal block (|) holds exactly:
// yaml.v3 mis-writes a literal block that opens with a blank or indented
// line, and any other shape is rare enough to go double-quoted.
var literalSafe = regexp.MustCompile(`^-----BEGIN [^\r]*[^\s]\n?$`)

func plainNode(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

func strNode(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Style: yaml.DoubleQuotedStyle, Value: s}
}

func intNode(n int) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(n)}
}

func nullNode() *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"} }
