package vv

import (
	"errors"
	"fmt"
	"strings"
)

// ListSeparator separates the items of a list value (GKeyFile's default).
const ListSeparator = ';'

// Escape returns s as GLib's g_key_file_set_string writes it: a line
// feed, carriage return and backslash become \n, \r and \\ anywhere; a
// space or tab becomes \s or \t while only spaces, tabs, line feeds and
// carriage returns precede it (GKeyFile strips leading white space when
// it reads a value back); everything else is written as is.
//
// Escape does not check s: Render refuses values that GKeyFile cannot
// carry (NUL and other control characters, invalid UTF-8).
func Escape(s string) string { return escape(s, false) }

// EscapeList returns items as g_key_file_set_string_list writes them:
// each item escaped as by Escape, with the separator escaped as \; and
// followed by one separator (GLib writes a trailing ';').
func EscapeList(items []string) string {
	var b strings.Builder
	for _, it := range items {
		b.WriteString(escape(it, true))
		b.WriteByte(ListSeparator)
	}
	return b.String()
}

// escape mirrors g_key_file_parse_string_as_value (GLib 2.74).
func escape(s string, list bool) string {
	var b strings.Builder
	b.Grow(len(s) + 8)
	leading := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case ' ':
			if leading {
				b.WriteString(`\s`)
			} else {
				b.WriteByte(c)
			}
		case '\t':
			if leading {
				b.WriteString(`\t`)
			} else {
				b.WriteByte(c)
			}
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\\':
			b.WriteString(`\\`)
			leading = false
		default:
			if list && c == ListSeparator {
				b.WriteString(`\;`)
				leading = true
			} else {
				b.WriteByte(c)
				leading = false
			}
		}
	}
	return b.String()
}

// errEscape is the cause of an escape error; the message never repeats
// the value (it may be a password).
var errEscape = errors.New("invalid escape")

// Unescape reads a raw value as a string, with GKeyFile's escapes \s, \n,
// \t, \r and \\. It is stricter than GLib's g_key_file_get_string, which
// keeps an unknown escape such as \q as is and drops a trailing
// backslash: both are errors here, since no writer produces them.
func Unescape(raw string) (string, error) {
	items, err := unescape(raw, false)
	if err != nil {
		return "", err
	}
	return items[0], nil
}

// UnescapeList reads a raw value as a list, as g_key_file_get_string_list
// does: items are separated by ';', "\;" is a ';' inside an item, a
// trailing separator ends the list ("a;b;" and "a;b" are both [a b]),
// and an empty value is an empty list. Unknown escapes are errors, as in
// GLib.
func UnescapeList(raw string) ([]string, error) { return unescape(raw, true) }

func unescape(raw string, list bool) ([]string, error) {
	var items []string
	var b strings.Builder
	b.Grow(len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' {
			if list && c == ListSeparator {
				items = append(items, b.String())
				b.Reset()
				continue
			}
			b.WriteByte(c)
			continue
		}
		i++
		if i == len(raw) {
			return nil, fmt.Errorf("%w: a backslash ends the value (byte %d of the value)", errEscape, i)
		}
		switch raw[i] {
		case 's':
			b.WriteByte(' ')
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case '\\':
			b.WriteByte('\\')
		case ListSeparator:
			if !list {
				return nil, fmt.Errorf(`%w at byte %d of the value: \; is only allowed in a list; GKeyFile knows \s \n \t \r \\`, errEscape, i)
			}
			b.WriteByte(ListSeparator)
		default:
			return nil, fmt.Errorf(`%w at byte %d of the value: GKeyFile knows \s \n \t \r \\`, errEscape, i)
		}
	}
	if !list {
		return []string{b.String()}, nil
	}
	if b.Len() > 0 {
		items = append(items, b.String())
	}
	return items, nil
}
