package vv

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
)

// MainGroup is the mandatory group of a .vv file.
const MainGroup = "virt-viewer"

// Keys of the [virt-viewer] group that File has a field for, in the order
// Render writes them.
const (
	KeyType           = "type"
	KeyHost           = "host"
	KeyPort           = "port"
	KeyTLSPort        = "tls-port"
	KeyPassword       = "password"
	KeyCA             = "ca"
	KeyHostSubject    = "host-subject"
	KeyTitle          = "title"
	KeyDeleteThisFile = "delete-this-file"
	KeySecureChannels = "secure-channels"
	KeyProxy          = "proxy"
)

var fieldKeys = []string{KeyType, KeyHost, KeyPort, KeyTLSPort, KeyPassword, KeyCA, KeyHostSubject, KeyTitle,
	KeyDeleteThisFile, KeySecureChannels, KeyProxy}

func isFieldKey(k string) bool {
	for _, f := range fieldKeys {
		if k == f {
			return true
		}
	}
	return false
}

// File is a virt-viewer (.vv) file: the keys of its [virt-viewer] group
// that a SPICE connection needs as fields, every other key in Extra and
// every other group in Groups, in file order.
//
// The zero value of a field means the key is absent: "" for strings, 0
// for ports, false for DeleteThisFile, and a nil or empty SecureChannels.
//
// A File holds a secret (Password: a SPICE ticket or a proxy token).
// Its String, GoString, Format and LogValue methods redact it, and any
// Extra or Groups value whose key looks secret (see Redacted); the secret
// appears only in what Render returns. Reflection-based printers that
// bypass those methods (a File inside an unexported struct field printed
// with %v, encoding/json) do not redact: do not hand them a File.
type File struct {
	// Type is "spice", "vnc" or "ovirt"; mandatory.
	Type string
	// Host, Port and TLSPort are the endpoint. A port is 1-65535, 0 when
	// absent.
	Host    string
	Port    int
	TLSPort int
	// Password is the SPICE ticket or the proxy's one-time token.
	Password string
	// CA is the PEM of the CA that signed the server's certificate
	// (written on one line with \n escapes).
	CA string
	// HostSubject is the expected certificate subject in spice-gtk's
	// exact, ordered form ("C=XX,O=Test,CN=localhost").
	HostSubject string
	// Title is the window title.
	Title string
	// DeleteThisFile makes remote-viewer delete the file after reading
	// it (written as delete-this-file=1).
	DeleteThisFile bool
	// SecureChannels lists the channels that go straight to TLSPort
	// ("main", "display", … or "all"); written as a GKeyFile list.
	SecureChannels []string
	// Proxy is the HTTP proxy the client reaches the endpoint through
	// ("http://HOST:PORT"): spice-gtk sends it `CONNECT host:port` for
	// every channel, then speaks SPICE (TLS first on the TLS port) over
	// the tunnel. "" for none. Treated as a secret in String and
	// LogValue: a proxy URL may carry user:password.
	Proxy string

	// Extra holds every other key of [virt-viewer] in file order, with
	// its raw value (escapes kept; see Entry).
	Extra []Entry
	// Groups holds the groups other than [virt-viewer] (such as
	// [ovirt]) in file order.
	Groups []Group
}

// Entry is one key and its raw value: the text after '=' as it stands in
// the file, GKeyFile escapes (\s \n \t \r \\, and \; in lists) kept,
// because GKeyFile itself does not know whether an unknown key is a
// string, a list or a number. Read it with Unescape or UnescapeList,
// make one with Escape or EscapeList.
type Entry struct {
	Key   string
	Value string
}

// Group is a group other than [virt-viewer], with raw values.
type Group struct {
	Name    string
	Entries []Entry
}

// Get returns the raw value of an Extra key of [virt-viewer].
func (f *File) Get(key string) (raw string, ok bool) {
	for _, e := range f.Extra {
		if e.Key == key {
			return e.Value, true
		}
	}
	return "", false
}

// Set sets the raw value of an Extra key of [virt-viewer], replacing it
// in place or appending it. Use Escape to turn a string into a raw value.
// Keys that have a field (type, host, …) must be set through the field:
// Render refuses them in Extra.
func (f *File) Set(key, raw string) {
	for i := range f.Extra {
		if f.Extra[i].Key == key {
			f.Extra[i].Value = raw
			return
		}
	}
	f.Extra = append(f.Extra, Entry{Key: key, Value: raw})
}

// redactedText replaces secret values in String, GoString, Format and
// LogValue.
const redactedText = "[redacted]"

// Redacted reports whether the value of key is hidden from String,
// GoString, Format and LogValue: password, and any key whose name
// contains "pass", "token", "secret", "ticket", "session", "cookie",
// "auth" or "cred" (oVirt's jsessionid and sso-token), and proxy (its
// URL may carry user:password).
func Redacted(key string) bool {
	k := strings.ToLower(key)
	if k == "proxy" {
		return true
	}
	for _, s := range []string{"pass", "token", "secret", "ticket", "session", "cookie", "auth", "cred"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

func redact(key, value string) string {
	if value != "" && Redacted(key) {
		return redactedText
	}
	return value
}

// String describes f with its secrets redacted and the CA shortened.
func (f File) String() string {
	var b strings.Builder
	b.WriteString("vv.File{")
	sep := ""
	add := func(k, v string) {
		b.WriteString(sep + k + "=" + v)
		sep = " "
	}
	str := func(k, v string) {
		if v != "" {
			add(k, strconv.Quote(redact(k, v)))
		}
	}
	str(KeyType, f.Type)
	str(KeyHost, f.Host)
	if f.Port != 0 {
		add(KeyPort, strconv.Itoa(f.Port))
	}
	if f.TLSPort != 0 {
		add(KeyTLSPort, strconv.Itoa(f.TLSPort))
	}
	if f.Password != "" {
		add(KeyPassword, redactedText)
	}
	if f.CA != "" {
		add(KeyCA, fmt.Sprintf("[%d bytes]", len(f.CA)))
	}
	str(KeyHostSubject, f.HostSubject)
	str(KeyTitle, f.Title)
	if f.DeleteThisFile {
		add(KeyDeleteThisFile, "1")
	}
	if len(f.SecureChannels) > 0 {
		add(KeySecureChannels, fmt.Sprintf("%q", f.SecureChannels))
	}
	str(KeyProxy, f.Proxy)
	for _, e := range f.Extra {
		add(e.Key, strconv.Quote(redact(e.Key, e.Value)))
	}
	for _, g := range f.Groups {
		b.WriteString(sep + "[" + g.Name + "]")
		sep = " "
		for _, e := range g.Entries {
			add(e.Key, strconv.Quote(redact(e.Key, e.Value)))
		}
	}
	b.WriteString("}")
	return b.String()
}

// GoString is like %#v with the secrets redacted.
func (f File) GoString() string {
	c := f.redacted()
	type plain File // no methods: %#v prints the fields
	return strings.Replace(fmt.Sprintf("%#v", plain(c)), "vv.plain{", "vv.File{", 1)
}

// Format makes every fmt verb go through String (or GoString for %#v),
// so that no verb prints the password.
func (f File) Format(s fmt.State, verb rune) {
	if verb == 'v' && s.Flag('#') {
		fmt.Fprint(s, f.GoString())
		return
	}
	if verb == 'q' {
		fmt.Fprint(s, strconv.Quote(f.String()))
		return
	}
	fmt.Fprint(s, f.String())
}

// LogValue makes log/slog print f as a group with the secrets redacted.
func (f File) LogValue() slog.Value {
	var attrs []slog.Attr
	str := func(k, v string) {
		if v != "" {
			attrs = append(attrs, slog.String(k, redact(k, v)))
		}
	}
	str(KeyType, f.Type)
	str(KeyHost, f.Host)
	if f.Port != 0 {
		attrs = append(attrs, slog.Int(KeyPort, f.Port))
	}
	if f.TLSPort != 0 {
		attrs = append(attrs, slog.Int(KeyTLSPort, f.TLSPort))
	}
	if f.Password != "" {
		attrs = append(attrs, slog.String(KeyPassword, redactedText))
	}
	if f.CA != "" {
		attrs = append(attrs, slog.Int("ca_bytes", len(f.CA)))
	}
	str(KeyHostSubject, f.HostSubject)
	str(KeyTitle, f.Title)
	if f.DeleteThisFile {
		attrs = append(attrs, slog.Bool(KeyDeleteThisFile, true))
	}
	if len(f.SecureChannels) > 0 {
		attrs = append(attrs, slog.String(KeySecureChannels, strings.Join(f.SecureChannels, ";")))
	}
	str(KeyProxy, f.Proxy)
	for _, e := range f.Extra {
		attrs = append(attrs, slog.String(e.Key, redact(e.Key, e.Value)))
	}
	for _, g := range f.Groups {
		ga := make([]any, 0, len(g.Entries))
		for _, e := range g.Entries {
			ga = append(ga, slog.String(e.Key, redact(e.Key, e.Value)))
		}
		attrs = append(attrs, slog.Group(g.Name, ga...))
	}
	return slog.GroupValue(attrs...)
}

// redacted returns a deep copy of f with the secret values replaced.
func (f File) redacted() File {
	c := f
	if c.Password != "" {
		c.Password = redactedText
	}
	c.Proxy = redact(KeyProxy, c.Proxy)
	c.SecureChannels = append([]string(nil), f.SecureChannels...)
	c.Extra = redactEntries(f.Extra)
	c.Groups = nil
	for _, g := range f.Groups {
		c.Groups = append(c.Groups, Group{Name: g.Name, Entries: redactEntries(g.Entries)})
	}
	return c
}

func redactEntries(es []Entry) []Entry {
	if es == nil {
		return nil
	}
	out := make([]Entry, len(es))
	for i, e := range es {
		out[i] = Entry{Key: e.Key, Value: redact(e.Key, e.Value)}
	}
	return out
}
