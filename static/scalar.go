package static

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// str returns the string in n, or reports why n is not one. A ticket
// (secret) is never quoted in a message.
func (p *parser) str(n *yaml.Node, field string, secret bool) (string, bool) {
	if n.Kind == yaml.AliasNode {
		return "", false // reported by walk
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		hint := ""
		if n.Kind == yaml.ScalarNode && !isNull(n) {
			hint = " (quote it to make it a string)"
		}
		p.errorf(n, field, ErrType, "must be a string, got %s%s", describe(n, secret), hint)
		return "", false
	}
	if n.Style == 0 { // plain, no explicit tag
		if t := yaml11Type(n.Value); t != "" {
			what := "the plain scalar " + n.Value
			if secret {
				what = "a plain scalar"
			}
			p.errorf(n, field, ErrAmbiguous, "is %s: a string to yaml.v3 but %s to YAML 1.1 readers such as Kerbside's PyYAML; quote it", what, t)
			return "", false
		}
	}
	return n.Value, true
}

// port returns the port in n, or reports why n is not one.
func (p *parser) port(n *yaml.Node, field string) (int, bool) {
	if n.Kind == yaml.AliasNode {
		return 0, false
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
		v := n.Value
		switch {
		case strings.HasPrefix(v, "-") && isDecimal(v[1:]):
			p.errorf(n, field, ErrValue, "is %s; a port is %d-%d", v, MinPort, MaxPort)
			return 0, false
		case !isDecimal(v):
			p.errorf(n, field, ErrValue, "is %s; write a port as a plain decimal number (YAML 1.1 and 1.2 readers disagree on 0x, 0o, 0b, "+
				"leading zeros, underscores and signs)", v)
			return 0, false
		}
		port, err := strconv.Atoi(v)
		if err != nil {
			port = MaxPort + 1
		}
		if m := checkPort(port); m != "" {
			p.errorf(n, field, ErrValue, "is %s; a port is %d-%d", v, MinPort, MaxPort)
			return 0, false
		}
		return port, true
	}
	if n.Kind == yaml.ScalarNode && n.Style == 0 && (yaml11Int.MatchString(n.Value) || leadingZero.MatchString(n.Value)) {
		p.errorf(n, field, ErrValue, "is %s; write a port as a plain decimal number (YAML 1.1 and 1.2 readers disagree on 0x, 0o, 0b, "+
			"leading zeros, underscores and signs)", n.Value)
		return 0, false
	}
	hint := ""
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" && isDecimal(n.Value) {
		hint = " (remove the quotes)"
	}
	p.errorf(n, field, ErrType, "must be an integer port (%d-%d), got %s%s", MinPort, MaxPort, describe(n, false), hint)
	return 0, false
}

// leadingZero matches integers with leading zeros that are not octal,
// which yaml.v3 reads as floats and PyYAML as strings.
var leadingZero = regexp.MustCompile(`^[-+]?0[0-9_]+$`)

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

func didYouMean(word string, candidates []string) string {
	if s := suggest(word, candidates); s != "" {
		return fmt.Sprintf(" (did you mean %q?)", s)
	}
	return ""
}

// describe names the YAML type of n for a message, with its value unless
// secret.
func describe(n *yaml.Node, secret bool) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	tag := n.ShortTag()
	name, article := "", "a"
	switch tag {
	case "!!null":
		return "null"
	case "!!str":
		name = "string"
	case "!!int":
		name, article = "integer", "an"
	case "!!float":
		name = "float"
	case "!!bool":
		name = "boolean"
	case "!!timestamp":
		name = "timestamp"
	case "!!binary":
		return "binary data"
	case "!!merge":
		return "a merge key"
	default:
		return "a value tagged " + quote(tag)
	}
	if secret {
		return article + " " + name
	}
	if tag == "!!str" || strings.ContainsFunc(n.Value, func(r rune) bool { return !textRune(r) || r == ' ' }) {
		return name + " " + quote(n.Value)
	}
	return name + " " + n.Value
}
