package guestproto

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ErrSyntax is wrapped by every Parse and ParseCommand error.
var ErrSyntax = errors.New("guestproto: malformed line")

// KV is one key=value pair.
type KV struct{ Key, Value string }

// Event is one line the agent printed.
type Event struct {
	// T is the guest's time since boot (CLOCK_BOOTTIME), to the
	// millisecond.
	T time.Duration
	// Type says what happened (TypeReady, TypeKey, …).
	Type string
	// KV holds the pairs after type, in the order they were written.
	KV []KV
}

// Get returns the value of key and whether it is there.
func (e Event) Get(key string) (string, bool) { return get(e.KV, key) }

// Value returns the value of key, or "" when it is missing.
func (e Event) Value(key string) string { v, _ := e.Get(key); return v }

// Int returns key's value as an integer; a missing or non-numeric value
// is an error naming the key.
func (e Event) Int(key string) (int64, error) { return intOf(e.KV, key) }

// List splits a comma-separated value ("" gives no items).
func (e Event) List(key string) []string { return list(e.Value(key)) }

// String formats e as the agent prints it (no newline).
func (e Event) String() string {
	var b strings.Builder
	ms := e.T.Milliseconds()
	fmt.Fprintf(&b, "t=%d.%03d type=%s", ms/1000, ms%1000, e.Type)
	appendKV(&b, e.KV)
	return b.String()
}

// NewEvent builds an event from alternating keys and values. It panics
// on an odd count or an invalid key or type: those are programming
// errors in the caller.
func NewEvent(t time.Duration, typ string, kv ...string) Event {
	if !wordRE.MatchString(typ) {
		panic("guestproto: invalid event type " + strconv.Quote(typ))
	}
	return Event{T: t.Truncate(time.Millisecond), Type: typ, KV: pairs(kv)}
}

// Parse reads one event line (surrounding white space and a trailing
// carriage return are ignored).
func Parse(line string) (Event, error) {
	kvs, err := split(strings.TrimSpace(line))
	if err != nil {
		return Event{}, err
	}
	if len(kvs) < 2 || kvs[0].Key != "t" || kvs[1].Key != "type" {
		return Event{}, fmt.Errorf("%w: want \"t=… type=…\" first: %q", ErrSyntax, clip(line))
	}
	t, err := parseSeconds(kvs[0].Value)
	if err != nil {
		return Event{}, fmt.Errorf("%w: t=%q: %v", ErrSyntax, kvs[0].Value, err)
	}
	if !wordRE.MatchString(kvs[1].Value) {
		return Event{}, fmt.Errorf("%w: type=%q is not a word", ErrSyntax, kvs[1].Value)
	}
	return Event{T: t, Type: kvs[1].Value, KV: kvs[2:]}, nil
}

// Command is one line the harness writes to the agent's control port.
type Command struct {
	// Name is the command (CmdDraw, CmdPortWrite, …).
	Name string
	// ID is echoed in the ack so the sender can match it.
	ID int64
	// KV holds the arguments.
	KV []KV
}

// Get returns the value of key and whether it is there.
func (c Command) Get(key string) (string, bool) { return get(c.KV, key) }

// Value returns the value of key, or "" when it is missing.
func (c Command) Value(key string) string { v, _ := c.Get(key); return v }

// Int returns key's value as an integer; a missing or non-numeric value
// is an error naming the key.
func (c Command) Int(key string) (int64, error) { return intOf(c.KV, key) }

// String formats c as written to the control port (no newline).
func (c Command) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cmd=%s id=%d", c.Name, c.ID)
	appendKV(&b, c.KV)
	return b.String()
}

// NewCommand builds a command from alternating keys and values; it
// panics on an odd count or an invalid key or name.
func NewCommand(name string, id int64, kv ...string) Command {
	if !wordRE.MatchString(name) {
		panic("guestproto: invalid command name " + strconv.Quote(name))
	}
	return Command{Name: name, ID: id, KV: pairs(kv)}
}

// ParseCommand reads one command line.
func ParseCommand(line string) (Command, error) {
	kvs, err := split(strings.TrimSpace(line))
	if err != nil {
		return Command{}, err
	}
	if len(kvs) < 2 || kvs[0].Key != "cmd" || kvs[1].Key != "id" {
		return Command{}, fmt.Errorf("%w: want \"cmd=… id=…\" first: %q", ErrSyntax, clip(line))
	}
	if !wordRE.MatchString(kvs[0].Value) {
		return Command{}, fmt.Errorf("%w: cmd=%q is not a word", ErrSyntax, kvs[0].Value)
	}
	id, err := strconv.ParseInt(kvs[1].Value, 10, 64)
	if err != nil {
		return Command{}, fmt.Errorf("%w: id=%q is not an integer", ErrSyntax, kvs[1].Value)
	}
	return Command{Name: kvs[0].Value, ID: id, KV: kvs[2:]}, nil
}

var (
	keyRE  = regexp.MustCompile(`^[a-z][a-z0-9_.-]*$`)
	wordRE = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)
)

func pairs(kv []string) []KV {
	if len(kv)%2 != 0 {
		panic(fmt.Sprintf("guestproto: odd number of key/value strings (%d)", len(kv)))
	}
	out := make([]KV, 0, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		if !keyRE.MatchString(kv[i]) {
			panic("guestproto: invalid key " + strconv.Quote(kv[i]))
		}
		out = append(out, KV{kv[i], kv[i+1]})
	}
	return out
}

func appendKV(b *strings.Builder, kvs []KV) {
	for _, kv := range kvs {
		b.WriteByte(' ')
		b.WriteString(kv.Key)
		b.WriteByte('=')
		b.WriteString(quote(kv.Value))
	}
}

// quote returns v bare when it can be read back bare, else quoted.
func quote(v string) string {
	if v == "" {
		return `""`
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '=' || c == '\\' {
			return strconv.QuoteToASCII(v)
		}
	}
	return v
}

// split reads key=value pairs separated by single or repeated spaces.
func split(s string) ([]KV, error) {
	var out []KV
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("%w: %q is not key=value", ErrSyntax, clip(s))
		}
		key := s[:eq]
		if !keyRE.MatchString(key) {
			return nil, fmt.Errorf("%w: invalid key %q", ErrSyntax, clip(key))
		}
		s = s[eq+1:]
		var val string
		if strings.HasPrefix(s, `"`) {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return nil, fmt.Errorf("%w: unterminated quoted value of %s", ErrSyntax, key)
			}
			if val, err = strconv.Unquote(q); err != nil {
				return nil, fmt.Errorf("%w: value of %s: %v", ErrSyntax, key, err)
			}
			s = s[len(q):]
			if s != "" && s[0] != ' ' {
				return nil, fmt.Errorf("%w: junk after the quoted value of %s", ErrSyntax, key)
			}
		} else {
			end := strings.IndexByte(s, ' ')
			if end < 0 {
				end = len(s)
			}
			val, s = s[:end], s[end:]
			if strings.ContainsAny(val, "\"=\\") {
				return nil, fmt.Errorf("%w: bare value of %s holds a quote, = or backslash", ErrSyntax, key)
			}
		}
		out = append(out, KV{key, val})
		s = strings.TrimLeft(s, " ")
	}
	return out, nil
}

func parseSeconds(s string) (time.Duration, error) {
	sec, frac, _ := strings.Cut(s, ".")
	if sec == "" || len(frac) > 3 || strings.TrimLeft(sec+frac, "0123456789") != "" {
		return 0, errors.New("want seconds with up to 3 decimals")
	}
	frac = (frac + "000")[:3]
	n, err := strconv.ParseInt(sec+frac, 10, 64)
	if err != nil {
		return 0, err
	}
	return time.Duration(n) * time.Millisecond, nil
}

func get(kvs []KV, key string) (string, bool) {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return "", false
}

func intOf(kvs []KV, key string) (int64, error) {
	v, ok := get(kvs, key)
	if !ok {
		return 0, fmt.Errorf("guestproto: no %s", key)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("guestproto: %s=%q is not an integer", key, v)
	}
	return n, nil
}

func list(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
