package spice

import (
	"bytes"
	"fmt"
	"strings"
)

// The file transfer start message carries a GLib key file. These two
// helpers write and read the one group it has, with GLib's value
// escapes (\s for a leading space, \n \t \r \\).

func escapeKeyFile(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ { // bytes, so that a name that is not UTF-8 survives
		switch c := v[i]; {
		case c == ' ' && i == 0:
			b.WriteString(`\s`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\\':
			b.WriteString(`\\`)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func unescapeKeyFile(v string) string {
	if !strings.Contains(v, `\`) {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '\\' || i+1 == len(v) {
			b.WriteByte(v[i])
			continue
		}
		i++
		switch v[i] {
		case 's':
			b.WriteByte(' ')
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		default:
			b.WriteByte(v[i])
		}
	}
	return b.String()
}

// parseKeyFileGroup returns the keys of [group] in a key file that ends
// at its first NUL (or at the end of b).
func parseKeyFileGroup(b []byte, group string) (map[string]string, error) {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	kv := map[string]string{}
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case line == "" || line[0] == '#':
		case line[0] == '[':
			in = line == "["+group+"]"
		case in:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				return nil, fmt.Errorf("%w: key file line %q", ErrMalformed, line)
			}
			kv[strings.TrimSpace(k)] = unescapeKeyFile(strings.TrimLeft(v, " "))
		}
	}
	return kv, nil
}
