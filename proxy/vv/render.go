package vv

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrRender is matched (errors.Is) by every error Render returns.
var ErrRender = errors.New("vv: cannot render")

// Render writes f as GLib's GKeyFile would: the [virt-viewer] group with
// type first, then host, port, tls-port, password, ca, host-subject,
// title, delete-this-file, secure-channels, proxy (each only when set), then the
// Extra keys in order, then the other groups, each after a blank line.
// Strings are escaped as g_key_file_set_string escapes them (see Escape),
// secure-channels as g_key_file_set_string_list does, numbers in decimal.
//
// Render refuses (with an error matching ErrRender) what GKeyFile cannot
// carry or would read back differently: an empty Type, a port outside
// 0-65535, a value with NUL or another control character than tab, line
// feed and carriage return, invalid UTF-8, an invalid or duplicate key or
// group name, an Extra key that has a field, a raw value that a reader
// would not read back as is (see Entry), and a rendering over MaxSize
// (also matching ErrTooLarge). Whatever Render accepts, Parse reads back
// to an equal File.
func Render(f *File) ([]byte, error) {
	if f.Type == "" {
		return nil, renderErr(KeyType, "is empty; a .vv must have a type (spice, vnc or ovirt)")
	}
	var b strings.Builder
	b.WriteString("[" + MainGroup + "]\n")
	put := func(k, raw string) { b.WriteString(k + "=" + raw + "\n") }
	str := func(k, v string) error {
		if v == "" {
			return nil
		}
		if msg := checkString(v); msg != "" {
			return renderErr(k, msg)
		}
		put(k, Escape(v))
		return nil
	}
	port := func(k string, p int) error {
		if p == 0 {
			return nil
		}
		if p < 0 || p > 65535 {
			return renderErr(k, fmt.Sprintf("%d is not a port (1-65535, 0 for none)", p))
		}
		put(k, strconv.Itoa(p))
		return nil
	}
	if err := errors.Join(
		str(KeyType, f.Type),
		str(KeyHost, f.Host),
		port(KeyPort, f.Port),
		port(KeyTLSPort, f.TLSPort),
		str(KeyPassword, f.Password),
		str(KeyCA, f.CA),
		str(KeyHostSubject, f.HostSubject),
		str(KeyTitle, f.Title),
	); err != nil {
		return nil, firstErr(err)
	}
	if f.DeleteThisFile {
		put(KeyDeleteThisFile, "1")
	}
	if len(f.SecureChannels) > 0 {
		for _, it := range f.SecureChannels {
			if msg := checkString(it); msg != "" {
				return nil, renderErr(KeySecureChannels, "an item "+msg)
			}
		}
		put(KeySecureChannels, EscapeList(f.SecureChannels))
	}
	if err := str(KeyProxy, f.Proxy); err != nil {
		return nil, err
	}
	if err := renderEntries(&b, MainGroup, f.Extra, true); err != nil {
		return nil, err
	}
	seen := map[string]bool{MainGroup: true}
	for _, g := range f.Groups {
		if msg := checkGroupName(g.Name); msg != "" {
			return nil, fmt.Errorf("%w: group %q: %s", ErrRender, g.Name, msg)
		}
		if seen[g.Name] {
			return nil, fmt.Errorf("%w: group [%s] appears twice", ErrRender, g.Name)
		}
		seen[g.Name] = true
		b.WriteString("\n[" + g.Name + "]\n")
		if err := renderEntries(&b, g.Name, g.Entries, false); err != nil {
			return nil, err
		}
	}
	if b.Len() > MaxSize {
		return nil, fmt.Errorf("%w: %w: the rendering is %d bytes, more than the %d that Parse reads", ErrRender, ErrTooLarge, b.Len(), MaxSize)
	}
	return []byte(b.String()), nil
}

func renderEntries(b *strings.Builder, group string, es []Entry, main bool) error {
	seen := make(map[string]bool, len(es))
	for _, e := range es {
		if msg := checkKey(e.Key); msg != "" {
			return fmt.Errorf("%w: [%s] key %q: %s", ErrRender, group, e.Key, msg)
		}
		if main && isFieldKey(e.Key) {
			return fmt.Errorf("%w: [%s] key %q is in Extra but File has a field for it", ErrRender, group, e.Key)
		}
		if seen[e.Key] {
			return fmt.Errorf("%w: [%s] key %q appears twice", ErrRender, group, e.Key)
		}
		seen[e.Key] = true
		if msg := checkRaw(e.Value); msg != "" {
			return fmt.Errorf("%w: [%s] %s: raw value %s", ErrRender, group, e.Key, msg)
		}
		b.WriteString(e.Key + "=" + e.Value + "\n")
	}
	return nil
}

func renderErr(key, msg string) error { return fmt.Errorf("%w: %s: %s", ErrRender, key, msg) }

// firstErr unwraps errors.Join to its first error.
func firstErr(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()[0]
	}
	return err
}

// checkString checks a value Escape will write: GKeyFile carries valid
// UTF-8 text without NUL; other control characters than tab, line feed
// and carriage return have no escape (GLib writes them raw and may strip
// them when reading back), so they are refused.
func checkString(s string) string {
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
			return fmt.Sprintf("contains control character %s at byte %d", describeByte(c), i+1)
		}
	}
	return ""
}

// checkRaw checks a raw value for a line: valid UTF-8, no control
// character but tab, and no leading space or tab (a reader strips them).
func checkRaw(s string) string {
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' {
			return fmt.Sprintf("contains control character %s at byte %d (escape it: \\n, \\r)", describeByte(c), i+1)
		}
	}
	if s != "" && (s[0] == ' ' || s[0] == '\t') {
		return `starts with white space, which a reader strips (escape it: \s, \t)`
	}
	return ""
}

// checkKey checks a key name as GLib's g_key_file_is_key_name does,
// and more: no control characters, no leading '#' (the line would be a
// comment), no white space at either end, UTF-8.
func checkKey(k string) string {
	if k == "" {
		return "is empty"
	}
	if !utf8.ValidString(k) {
		return "is not valid UTF-8"
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c < 0x20 || c == 0x7f {
			return fmt.Sprintf("contains control character %s", describeByte(c))
		}
	}
	if k[0] == '#' {
		return "starts with '#' (the line would be a comment)"
	}
	if k[0] == ' ' || k[len(k)-1] == ' ' {
		return "starts or ends with a space"
	}
	name, locale, hasLocale := strings.Cut(k, "[")
	if name == "" {
		return "is empty before '['"
	}
	if strings.ContainsAny(name, "=]") {
		return "contains '=' or ']'"
	}
	if hasLocale {
		loc, ok := strings.CutSuffix(locale, "]")
		if !ok || loc == "" || strings.Trim(loc, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.@") != "" {
			return "has an invalid locale suffix (key[locale] with letters, digits, - _ . @)"
		}
		if strings.HasSuffix(name, " ") {
			return "has a space before '['"
		}
	}
	return ""
}

// checkGroupName checks a group name as g_key_file_is_group_name does.
func checkGroupName(g string) string {
	if g == "" {
		return "is empty"
	}
	if !utf8.ValidString(g) {
		return "is not valid UTF-8"
	}
	for i := 0; i < len(g); i++ {
		if c := g[i]; c < 0x20 || c == 0x7f {
			return fmt.Sprintf("contains control character %s", describeByte(c))
		}
	}
	if strings.ContainsAny(g, "[]") {
		return "contains '[' or ']'"
	}
	return ""
}

func describeByte(c byte) string {
	switch c {
	case 0:
		return "U+0000 (NUL)"
	case '\t':
		return "U+0009 (tab)"
	case '\n':
		return "U+000A (line feed)"
	case '\r':
		return "U+000D (carriage return)"
	}
	return fmt.Sprintf("U+%04X", c)
}
