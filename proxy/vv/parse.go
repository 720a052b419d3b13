package vv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxSize is the largest .vv Parse reads (a .vv with a CA chain is a few
// KiB).
const MaxSize = 256 << 10

// Errors that a *ParseError wraps; test them with errors.Is.
var (
	ErrTooLarge  = errors.New("vv: file too large")
	ErrSyntax    = errors.New("vv: syntax error")
	ErrDuplicate = errors.New("vv: defined twice")
	ErrValue     = errors.New("vv: invalid value")
	ErrMissing   = errors.New("vv: missing [virt-viewer] group or type")
)

// ParseError says what is wrong with a .vv and on which line. Its message
// never repeats the value of a secret key.
type ParseError struct {
	// Line is 1-based; 0 for the whole file.
	Line int
	// Key is the key whose value is wrong, if any.
	Key string
	// Msg says what is wrong.
	Msg string
	// Err is ErrTooLarge, ErrSyntax, ErrDuplicate, ErrValue or ErrMissing.
	Err error
}

func (e *ParseError) Error() string {
	var b strings.Builder
	b.WriteString("vv: ")
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func (e *ParseError) Unwrap() error { return e.Err }

// ParseReader reads at most MaxSize+1 bytes from r and parses them.
func ParseReader(r io.Reader) (*File, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("vv: read: %w", err)
	}
	return Parse(data)
}

// Parse reads a .vv file with GKeyFile's rules: lines end with LF or
// CRLF; blank lines and lines starting with '#' (after white space) are
// comments; "[name]" starts a group; "key = value" sets a key, with
// white space around '=' and before the key ignored and trailing white
// space kept; a key before any group is an error. The [virt-viewer]
// group and its type key are mandatory, as in virt-viewer.
//
// Known keys are decoded into File's fields: strings with Unescape,
// secure-channels with UnescapeList, port and tls-port as decimal 1-65535,
// delete-this-file as 0 or 1. Other keys and groups keep their raw values.
//
// Parse is stricter than GLib where GLib is silently lossy or no writer
// would produce the input: a key or group defined twice (GLib keeps the
// last), an unknown escape in a known string key, control characters
// other than tab, invalid UTF-8, and files over MaxSize are errors. It
// returns the first problem as a *ParseError.
func Parse(data []byte) (*File, error) {
	if len(data) > MaxSize {
		return nil, &ParseError{Msg: fmt.Sprintf("more than %d bytes", MaxSize), Err: ErrTooLarge}
	}
	p := parser{groups: map[string]int{}}
	for n := 1; len(data) > 0; n++ {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if err := p.line(n, string(line)); err != nil {
			return nil, err
		}
	}
	return p.finish()
}

type parser struct {
	groups  map[string]int // group name → line
	current *rawGroup
	all     []*rawGroup
}

type rawGroup struct {
	name    string
	line    int
	entries []rawEntry
	keys    map[string]int // key → line
}

type rawEntry struct {
	Entry
	line int
}

func (p *parser) line(n int, s string) error {
	if !utf8.ValidString(s) {
		return &ParseError{Line: n, Msg: "is not valid UTF-8", Err: ErrSyntax}
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' {
			return &ParseError{Line: n, Msg: fmt.Sprintf("contains control character %s at column %d", describeByte(c), utf8.RuneCountInString(s[:i])+1), Err: ErrSyntax}
		}
	}
	t := strings.TrimLeft(s, " \t")
	switch {
	case t == "" || t[0] == '#':
		return nil
	case t[0] == '[':
		return p.group(n, t)
	}
	key, raw, ok := strings.Cut(t, "=")
	if !ok {
		return &ParseError{Line: n, Msg: "is neither a group header ([name]), a key=value pair nor a comment (#)", Err: ErrSyntax}
	}
	key = strings.TrimRight(key, " \t")
	raw = strings.TrimLeft(raw, " \t")
	if msg := checkKey(key); msg != "" {
		return &ParseError{Line: n, Msg: fmt.Sprintf("key %q %s", key, msg), Err: ErrSyntax}
	}
	if p.current == nil {
		return &ParseError{Line: n, Msg: fmt.Sprintf("key %q comes before any group; a .vv starts with [%s]", key, MainGroup), Err: ErrSyntax}
	}
	g := p.current
	if first, dup := g.keys[key]; dup {
		return &ParseError{Line: n, Key: key, Msg: fmt.Sprintf("is defined twice in [%s] (first at line %d); GLib would keep this one silently", g.name, first), Err: ErrDuplicate}
	}
	g.keys[key] = n
	g.entries = append(g.entries, rawEntry{Entry{Key: key, Value: raw}, n})
	return nil
}

func (p *parser) group(n int, t string) error {
	end := strings.IndexByte(t, ']')
	if end < 0 || strings.TrimRight(t[end+1:], " \t") != "" {
		return &ParseError{Line: n, Msg: "is not a group header: write [name] alone on the line", Err: ErrSyntax}
	}
	name := t[1:end]
	if msg := checkGroupName(name); msg != "" {
		return &ParseError{Line: n, Msg: fmt.Sprintf("group name %q %s", name, msg), Err: ErrSyntax}
	}
	if first, dup := p.groups[name]; dup {
		return &ParseError{Line: n, Msg: fmt.Sprintf("group [%s] is defined twice (first at line %d); GLib would merge them silently", name, first), Err: ErrDuplicate}
	}
	p.groups[name] = n
	p.current = &rawGroup{name: name, line: n, keys: map[string]int{}}
	p.all = append(p.all, p.current)
	return nil
}

func (p *parser) finish() (*File, error) {
	f := &File{}
	var main *rawGroup
	for _, g := range p.all {
		if g.name == MainGroup {
			main = g
			continue
		}
		grp := Group{Name: g.name}
		for _, e := range g.entries {
			grp.Entries = append(grp.Entries, e.Entry)
		}
		f.Groups = append(f.Groups, grp)
	}
	if main == nil {
		return nil, &ParseError{Msg: fmt.Sprintf("no [%s] group (it is mandatory)", MainGroup), Err: ErrMissing}
	}
	if _, ok := main.keys[KeyType]; !ok {
		return nil, &ParseError{Line: main.line, Msg: fmt.Sprintf("[%s] has no type key (it is mandatory)", MainGroup), Err: ErrMissing}
	}
	for _, e := range main.entries {
		if err := f.setField(e); err != nil {
			return nil, err
		}
	}
	if f.Type == "" {
		return nil, &ParseError{Line: main.keys[KeyType], Key: KeyType, Msg: "is empty; it is spice, vnc or ovirt", Err: ErrValue}
	}
	return f, nil
}

func (f *File) setField(e rawEntry) error {
	bad := func(msg string) error { return &ParseError{Line: e.line, Key: e.Key, Msg: msg, Err: ErrValue} }
	str := func(dst *string) error {
		s, err := Unescape(e.Value)
		if err != nil {
			return bad(err.Error())
		}
		if msg := checkString(s); msg != "" {
			return bad(msg)
		}
		*dst = s
		return nil
	}
	port := func(dst *int) error {
		v := strings.TrimRight(e.Value, " \t")
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 || v[0] == '+' || v[0] == '-' {
			return bad(fmt.Sprintf("%q is not a port (a decimal number 1-65535)", e.Value))
		}
		*dst = p
		return nil
	}
	switch e.Key {
	case KeyType:
		return str(&f.Type)
	case KeyHost:
		return str(&f.Host)
	case KeyPort:
		return port(&f.Port)
	case KeyTLSPort:
		return port(&f.TLSPort)
	case KeyPassword:
		return str(&f.Password)
	case KeyCA:
		return str(&f.CA)
	case KeyHostSubject:
		return str(&f.HostSubject)
	case KeyTitle:
		return str(&f.Title)
	case KeyDeleteThisFile:
		switch strings.TrimRight(e.Value, " \t") {
		case "0":
			f.DeleteThisFile = false
		case "1":
			f.DeleteThisFile = true
		default:
			return bad(fmt.Sprintf("%q is not 0 or 1", e.Value))
		}
		return nil
	case KeySecureChannels:
		items, err := UnescapeList(e.Value)
		if err != nil {
			return bad(err.Error())
		}
		for _, it := range items {
			if msg := checkString(it); msg != "" {
				return bad("an item " + msg)
			}
		}
		f.SecureChannels = items
		return nil
	case KeyProxy:
		return str(&f.Proxy)
	}
	f.Extra = append(f.Extra, e.Entry)
	return nil
}
