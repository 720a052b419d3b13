package static

import (
	"fmt"
	"slices"

	"gopkg.in/yaml.v3"
)

// This file walks the yaml.v3 node tree of a sources.yaml: the document,
// each source, each console. Every check reports and carries on, so one
// run lists every problem.

// sources reads the root node: a list of sources.
func (p *parser) sources(root *yaml.Node) {
	if root.Kind != yaml.SequenceNode {
		p.aliases = map[string]bool{}
		p.walk(root, 1, "sources")
		if root.Kind != yaml.AliasNode {
			p.errorf(root, "sources", ErrType, "must be a list of sources, got %s; a sources.yaml is a YAML list of mappings (- source: NAME)", describe(root, false))
		}
		return
	}
	names := map[string]pos{}
	for i, n := range root.Content {
		path := indexField("sources", i)
		p.aliases = map[string]bool{}
		if n.Kind != yaml.MappingNode {
			p.walk(n, 2, path)
			if n.Kind != yaml.AliasNode {
				p.errorf(n, path, ErrType, "must be a mapping with source and type keys, got %s", describe(n, false))
			}
			continue
		}
		src := &Source{Line: n.Line, Col: n.Column}
		p.cur = src
		p.walk(n, 2, path)
		uuids := p.source(src, n, path, names)
		p.cur = nil
		p.file.Sources = append(p.file.Sources, *src)
		p.uuidPos = append(p.uuidPos, uuids)
	}
	p.crossSource()
}

// walk reports every alias (once per anchor name and source) and
// collections nested deeper than MaxDepth, without following aliases.
func (p *parser) walk(n *yaml.Node, depth int, path string) {
	switch n.Kind {
	case yaml.AliasNode:
		if !p.aliases[n.Value] {
			p.aliases[n.Value] = true
			p.errorf(n, path, ErrAlias, "alias *%s: YAML aliases are not allowed in sources.yaml (nested aliases expand exponentially: "+
				"the \"billion laughs\" attack); write the value out", n.Value)
		}
	case yaml.MappingNode, yaml.SequenceNode:
		if depth > MaxDepth {
			p.errorf(n, path, ErrTooDeep, "lists and mappings are nested more than %d levels deep here; a static source needs 4", MaxDepth)
			return
		}
		if n.Kind == yaml.SequenceNode {
			for i, c := range n.Content {
				p.walk(c, depth+1, indexField(path, i))
			}
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p.walk(k, depth+1, path)
			p.walk(v, depth+1, childField(path, keyName(k)))
		}
	}
}

func keyName(k *yaml.Node) string {
	if k.Kind == yaml.ScalarNode {
		return k.Value
	}
	return "?"
}

// kv is one entry of a mapping with a string key.
type kv struct {
	key  string
	k, v *yaml.Node
}

// mapping returns the entries of n whose keys are strings, reporting keys
// that are not, merge keys and duplicate keys (of which the first is kept).
func (p *parser) mapping(n *yaml.Node, path string) []kv {
	var out []kv
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case k.Kind == yaml.AliasNode:
			continue // reported by walk
		case k.Kind != yaml.ScalarNode:
			p.errorf(k, path, ErrType, "has a key that is %s; keys must be strings", describe(k, false))
			continue
		case k.ShortTag() == "!!merge":
			p.errorf(k, childField(path, k.Value), ErrAlias, "merge keys (<<) are not allowed in sources.yaml; write the keys out")
			continue
		case k.ShortTag() != "!!str":
			p.errorf(k, path, ErrType, "has a key that is %s; keys must be strings", describe(k, false))
			continue
		}
		field := childField(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			p.errorf(k, field, ErrDuplicateKey, "is defined twice in one mapping (first at line %d); YAML readers disagree on which one counts", first.Line)
			continue
		}
		seen[k.Value] = k
		out = append(out, kv{key: k.Value, k: k, v: v})
	}
	return out
}

func lookup(kvs []kv, key string) *kv {
	for i := range kvs {
		if kvs[i].key == key {
			return &kvs[i]
		}
	}
	return nil
}

// uuidAt is where a kept console's uuid is written.
type uuidAt struct {
	pos
	field string
}

// source reads one source entry into src and returns where the uuids of
// src.Consoles are written.
func (p *parser) source(src *Source, n *yaml.Node, path string, names map[string]pos) []uuidAt {
	kvs := p.mapping(n, path)

	if e := lookup(kvs, "source"); e == nil {
		p.errorf(n, path+".source", ErrMissing, "is missing; every source has a name")
	} else if name, ok := p.str(e.v, path+".source", false); ok {
		src.Name = name
		if m := checkSegment(name); m != "" {
			p.errorf(e.v, path+".source", ErrValue, "%s", m)
		} else if first, dup := names[name]; dup {
			p.errorf(e.v, path+".source", ErrDuplicate, "source name %s is already used at line %d; Kerbside stores sources by name, so one would silently replace the other", quote(name), first.line)
		} else {
			names[name] = pos{e.v.Line, e.v.Column}
		}
	}

	e := lookup(kvs, "type")
	if e == nil {
		p.errorf(n, path+".type", ErrMissing, "is missing; Kerbside picks the source driver by it (static, shakenfist, ovirt or openstack)")
		return nil
	}
	t, ok := p.str(e.v, path+".type", false)
	if !ok {
		return nil
	}
	src.Type = t
	if !knownType(t) {
		p.errorf(e.v, path+".type", ErrValue, "%s", unknownTypeMessage(t))
		return nil
	}
	if t != TypeStatic {
		src.raw = copyRaw(n)
		return nil
	}

	for _, e := range kvs {
		if !slices.Contains(sourceKeys, e.key) {
			p.errorf(e.k, childField(path, e.key), ErrUnknownKey, "unknown key %s in a static source%s; a static source has source, type, ca_cert and consoles",
				quote(e.key), didYouMean(e.key, sourceKeys))
		}
	}
	if e := lookup(kvs, "ca_cert"); e != nil && !isNull(e.v) {
		if pem, ok := p.str(e.v, path+".ca_cert", false); ok {
			if m := checkCACert(pem); m != "" {
				p.errorf(e.v, path+".ca_cert", ErrValue, "%s", m)
			} else {
				src.CACert = pem
			}
		}
	}
	e = lookup(kvs, "consoles")
	switch {
	case e == nil:
		p.errorf(n, path+".consoles", ErrMissing, "is missing; a static source lists its consoles (write consoles: [] for none)")
		return nil
	case e.v.Kind == yaml.AliasNode:
		return nil
	case e.v.Kind != yaml.SequenceNode:
		p.errorf(e.v, path+".consoles", ErrType, "must be a list of consoles, got %s", describe(e.v, false))
		return nil
	}
	return p.consoles(src, e.v, path+".consoles")
}

// consoles reads the consoles of a static source. Only consoles without
// errors are kept; a duplicate uuid keeps the first position and the last
// values (a Python dict's update, as in Kerbside's static driver).
func (p *parser) consoles(src *Source, n *yaml.Node, path string) []uuidAt {
	var at []uuidAt
	index := map[string]int{}
	firstLine := map[string]int{}
	for i, cn := range n.Content {
		field := indexField(path, i)
		c, uuidNode, ok := p.console(cn, field)
		if !ok {
			continue
		}
		where := uuidAt{pos{uuidNode.Line, uuidNode.Column}, field + ".uuid"}
		if j, dup := index[c.UUID]; dup {
			p.warnf(uuidNode, field+".uuid", ErrDuplicate, "duplicate uuid %s in this source (first at line %d); the last definition wins, as in Kerbside",
				quote(c.UUID), firstLine[c.UUID])
			src.Consoles[j], at[j] = c, where
			continue
		}
		index[c.UUID], firstLine[c.UUID] = len(src.Consoles), uuidNode.Line
		src.Consoles = append(src.Consoles, c)
		at = append(at, where)
	}
	return at
}

// console reads one console; ok is false when it has an error.
func (p *parser) console(n *yaml.Node, path string) (c Console, uuidNode *yaml.Node, ok bool) {
	if n.Kind == yaml.AliasNode {
		return c, nil, false
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, path, ErrType, "must be a mapping (uuid: …, name: …), got %s", describe(n, false))
		return c, nil, false
	}
	errs := p.errs
	kvs := p.mapping(n, path)
	for _, e := range kvs {
		if !slices.Contains(consoleKeys, e.key) {
			p.errorf(e.k, childField(path, e.key), ErrUnknownKey, "unknown key %s%s; a console has uuid, name, hypervisor, hypervisor_ip, insecure_port, "+
				"ticket, secure_port and host_subject", quote(e.key), didYouMean(e.key, consoleKeys))
		}
	}
	for _, key := range consoleRequiredKeys {
		if lookup(kvs, key) == nil {
			p.errorf(n, path+"."+key, ErrMissing, "is missing (required)")
		}
	}
	str := func(key string, check func(string) string, dst *string) *yaml.Node {
		e := lookup(kvs, key)
		if e == nil {
			return nil
		}
		if key == "host_subject" && isNull(e.v) {
			return nil
		}
		s, ok := p.str(e.v, path+"."+key, key == "ticket")
		if !ok {
			return nil
		}
		if m := check(s); m != "" {
			p.errorf(e.v, path+"."+key, ErrValue, "%s", m)
			return nil
		}
		*dst = s
		return e.v
	}
	port := func(key string, dst *int) *yaml.Node {
		e := lookup(kvs, key)
		if e == nil || (key == "secure_port" && isNull(e.v)) {
			return nil
		}
		if v, ok := p.port(e.v, path+"."+key); ok {
			*dst = v
			return e.v
		}
		return nil
	}
	uuidNode = str("uuid", checkSegment, &c.UUID)
	str("name", checkNonEmpty, &c.Name)
	str("hypervisor", checkHost, &c.Hypervisor)
	str("hypervisor_ip", checkHost, &c.HypervisorIP)
	port("insecure_port", &c.InsecurePort)
	str("ticket", checkTicket, &c.Ticket)
	secure := port("secure_port", &c.SecurePort)
	subject := str("host_subject", checkOptionalText, &c.HostSubject)
	if secure != nil && c.InsecurePort != 0 && c.SecurePort == c.InsecurePort {
		p.errorf(secure, path+".secure_port", ErrValue, "%s", samePortMessage(c.SecurePort))
	}
	if e := lookup(kvs, "secure_port"); subject != nil && (e == nil || isNull(e.v)) {
		p.warnf(subject, path+".host_subject", ErrValue, "has no effect without secure_port: the hypervisor's certificate is checked on TLS connections only")
	}
	return c, uuidNode, p.errs == errs
}

// crossSource warns about a uuid used by consoles of two static sources.
func (p *parser) crossSource() {
	type first struct {
		source string
		line   int
	}
	seen := map[string]first{}
	for i := range p.file.Sources {
		s := &p.file.Sources[i]
		if !s.Supported() {
			continue
		}
		for j, c := range s.Consoles {
			f, dup := seen[c.UUID]
			if !dup {
				seen[c.UUID] = first{s.Name, p.uuidPos[i][j].line}
				continue
			}
			if f.source == s.Name {
				continue
			}
			at := p.uuidPos[i][j]
			p.cur = s
			p.add(SeverityWarning, at.line, at.col, at.field, ErrDuplicate, fmt.Sprintf(
				"uuid %s is also used by source %s (line %d); consoles are keyed by (source, uuid), so both stay reachable, "+
					"but a client that looks consoles up by uuid alone sees only one", quote(c.UUID), quote(f.source), f.line))
			p.cur = nil
		}
	}
}

// copyRaw copies the entry of an unsupported source for Emit, without
// comments. It returns nil when the entry holds an alias, which could not
// be written back on its own.
func copyRaw(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode {
		return nil
	}
	c := &yaml.Node{Kind: n.Kind, Style: n.Style, Tag: n.Tag, Value: n.Value}
	for _, child := range n.Content {
		cc := copyRaw(child)
		if cc == nil {
			return nil
		}
		c.Content = append(c.Content, cc)
	}
	return c
}
