package static

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of the values in a static source. The checks below are shared by
// the parser (which adds positions) and by Validate and Emit (which check
// values built in Go), so a file Emit writes always parses back.
const (
	// MaxTicketLen is the longest ticket in bytes. spice-server copies a
	// password into a 60-byte buffer with its terminating NUL, so it keeps
	// 59 bytes; a client sending all 60 never matches.
	MaxTicketLen = 59
	// MinPort and MaxPort bound insecure_port and secure_port.
	MinPort = 1
	MaxPort = 65535
)

// TypeStatic is the source type spice-harness serves.
const TypeStatic = "static"

// kerbsideTypes are the source types Kerbside knows. Only static is served;
// the others are kept and reported as unsupported. Kerbside marks a source
// of any other type errored, and so does Parse.
var kerbsideTypes = []string{TypeStatic, "shakenfist", "ovirt", "openstack"}

func knownType(t string) bool {
	for _, k := range kerbsideTypes {
		if t == k {
			return true
		}
	}
	return false
}

// checkText accepts printable, single-line text: what YAML allows
// unescaped in any scalar and in a comment, minus every line break (YAML
// 1.1 readers, PyYAML and yaml.v3 also break lines at U+0085, U+2028 and
// U+2029) and U+FEFF. Values end up in .vv files, QMP JSON, URL paths and
// the comments Emit writes, where such characters would break out.
func checkText(s string) string {
	if !utf8.ValidString(s) {
		i := invalidUTF8At(s)
		return fmt.Sprintf("is not valid UTF-8 (byte %d is 0x%02X)", i, s[i])
	}
	for i, r := range s {
		if !textRune(r) {
			return fmt.Sprintf("contains %s at byte %d; values must be printable text on one line", describeRune(r), i)
		}
	}
	return ""
}

func invalidUTF8At(s string) int {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(s)
}

// textRune reports whether r may appear in a value.
func textRune(r rune) bool {
	switch {
	case r >= 0x20 && r <= 0x7E:
		return true
	case r == 0x2028 || r == 0x2029 || r == 0xFEFF:
		return false
	case r >= 0xA0 && r <= 0xD7FF, r >= 0xE000 && r <= 0xFFFD, r >= 0x10000 && r <= unicode.MaxRune:
		return true
	}
	return false
}

// yamlRune reports whether r may appear unescaped in a YAML stream
// (YAML 1.2 §5.1, the same set PyYAML and yaml.v3 accept).
func yamlRune(r rune) bool {
	switch {
	case r == '\t' || r == '\n' || r == '\r' || r == 0x85:
		return true
	case r >= 0x20 && r <= 0x7E:
		return true
	case r >= 0xA0 && r <= 0xD7FF, r >= 0xE000 && r <= 0xFFFD, r >= 0x10000 && r <= unicode.MaxRune:
		return true
	}
	return false
}

func describeRune(r rune) string {
	name := ""
	switch {
	case r == '\t':
		name = " (tab)"
	case r == '\n':
		name = " (line feed)"
	case r == '\r':
		name = " (carriage return)"
	case r == 0:
		name = " (NUL)"
	case r == 0x85 || r == 0x2028 || r == 0x2029:
		name = " (a line break)"
	case r == 0xFEFF:
		name = " (byte order mark)"
	case unicode.IsControl(r):
		name = " (a control character)"
	}
	return fmt.Sprintf("U+%04X%s", r, name)
}

// checkNonEmpty composes checkText with a non-empty check.
func checkNonEmpty(s string) string {
	if s == "" {
		return "must not be empty"
	}
	return checkText(s)
}

// checkSegment checks a source name or console uuid: both are path
// segments of /console/proxy/{source}/{uuid}/console.vv.
func checkSegment(s string) string {
	if m := checkNonEmpty(s); m != "" {
		return m
	}
	if strings.Contains(s, "/") {
		return `must not contain "/": it is one path segment of /console/proxy/{source}/{uuid}/console.vv`
	}
	if strings.TrimSpace(s) != s {
		return "has leading or trailing white space"
	}
	return ""
}

// checkHost checks hypervisor and hypervisor_ip: a host name or address.
func checkHost(s string) string {
	if m := checkNonEmpty(s); m != "" {
		return m
	}
	if i := strings.IndexFunc(s, unicode.IsSpace); i >= 0 {
		return fmt.Sprintf("must not contain white space (byte %d); it is a host name or address", i)
	}
	return ""
}

func checkTicket(s string) string {
	if s == "" {
		return "is empty; a ticket is 1-59 bytes (spice-server refuses every client while its password is empty)"
	}
	if m := checkText(s); m != "" {
		return m
	}
	if len(s) > MaxTicketLen {
		return fmt.Sprintf("is %d bytes; a ticket is at most %d bytes: spice-server stores only the first 59 bytes of a password "+
			"(a 60-byte buffer with its NUL), so a longer ticket silently never matches", len(s), MaxTicketLen)
	}
	return ""
}

// checkOptionalText checks host_subject and ca_cert when present: the
// model uses "" for absent, so a present value must not be empty.
func checkOptionalText(s string) string {
	if s == "" {
		return "is empty; write null (or leave the key out) for none"
	}
	return checkText(s)
}

func checkPort(n int) string {
	if n < MinPort || n > MaxPort {
		return fmt.Sprintf("is %d; a port is %d-%d", n, MinPort, MaxPort)
	}
	return ""
}

// checkCACert accepts one or more PEM CERTIFICATE blocks that parse as
// X.509, separated and surrounded by white space only.
func checkCACert(s string) string {
	if s == "" {
		return "is empty; write null (or leave the key out) for none"
	}
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	for i, r := range s {
		if r != '\n' && r != '\r' && r != '\t' && !textRune(r) {
			return fmt.Sprintf("contains %s at byte %d", describeRune(r), i)
		}
	}
	rest := []byte(s)
	n := 0
	for {
		rest = bytes.TrimLeft(rest, " \t\r\n")
		if len(rest) == 0 {
			break
		}
		if !bytes.HasPrefix(rest, []byte("-----BEGIN ")) {
			if n == 0 {
				return "is not PEM: expected -----BEGIN CERTIFICATE-----"
			}
			return fmt.Sprintf("has text after certificate %d that is not a PEM block", n)
		}
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return fmt.Sprintf("PEM block %d is malformed (check its BEGIN/END lines and base64)", n+1)
		}
		n++
		if block.Type != "CERTIFICATE" {
			return fmt.Sprintf("PEM block %d is a %q, not a CERTIFICATE", n, block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Sprintf("certificate %d does not parse: %v", n, err)
		}
	}
	if n == 0 {
		return "holds no certificate"
	}
	return ""
}

// The YAML 1.1 implicit types of PyYAML's resolver (yaml/resolver.py),
// which Kerbside uses through yaml.safe_load. yaml.v3 follows YAML 1.2 and
// reads some of these plain scalars as strings; Kerbside would not.
func yaml11Type(plain string) string {
	switch plain {
	case "yes", "Yes", "YES", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF":
		return "a boolean"
	case "", "~", "null", "Null", "NULL":
		return "null"
	case "<<":
		return "a merge key"
	case "=":
		return "a value key (which safe_load refuses)"
	}
	switch {
	case yaml11Int.MatchString(plain):
		return "an integer"
	case yaml11Float.MatchString(plain):
		return "a float"
	case yaml11Timestamp.MatchString(plain):
		return "a timestamp"
	}
	return ""
}

// isDecimal reports whether s is a plain decimal integer without sign or
// leading zero. Other integer spellings (0x, 0o, 0b, leading zeros,
// underscores, a sign, 1:30) are read differently by YAML 1.1 and YAML 1.2
// readers, so ports must be written in decimal.
func isDecimal(s string) bool {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

var (
	yaml11Int       = regexp.MustCompile(`^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$`)
	yaml11Float     = regexp.MustCompile(`^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$`)
	yaml11Timestamp = regexp.MustCompile(`^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$`)
)
