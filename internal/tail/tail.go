// Package tail returns the last lines of a text or of a file, for error
// messages that carry the end of a log (qemu's log, the guest's serial
// log, a client's output).
package tail

import (
	"io"
	"os"
	"strings"
)

// MaxFileRead is how much of a file's end File reads at most.
const MaxFileRead = 64 << 10

// Lines returns the last n lines of s, without trailing line breaks;
// "" when n <= 0.
func Lines(s string, n int) string {
	s = strings.TrimRight(s, "\r\n")
	if n <= 0 || s == "" {
		return ""
	}
	i := len(s)
	for range n {
		j := strings.LastIndexByte(s[:i], '\n')
		if j < 0 {
			return s
		}
		i = j
	}
	return s[i+1:]
}

// File returns the last n lines of the file at path, reading at most its
// last MaxFileRead bytes; "" when it cannot be read.
func File(path string, n int) string {
	if path == "" || n <= 0 {
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > MaxFileRead {
		if _, err := f.Seek(-MaxFileRead, io.SeekEnd); err != nil {
			return ""
		}
	}
	b, _ := io.ReadAll(f)
	return Lines(string(b), n)
}
