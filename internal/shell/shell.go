// Package shell quotes words for a POSIX shell, so that a command line
// written to a log or an error message (qemu's argv, a test's repro
// line) can be pasted back into sh and runs as it ran.
package shell

import "strings"

// Quote returns s as one shell word: s itself when every character is
// one no shell treats specially ([A-Za-z0-9] and -_./=,:@+%), else s in
// single quotes, each quote inside written as quote, backslash, quote,
// quote. The empty string becomes a pair of quotes.
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	if strings.IndexFunc(s, unsafe) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Join quotes each word and joins them with single spaces.
func Join(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = Quote(w)
	}
	return strings.Join(q, " ")
}

func unsafe(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return false
	}
	return !strings.ContainsRune("-_./=,:@+%", r)
}
