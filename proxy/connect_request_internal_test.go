package proxy

import (
	"testing"
)

// FuzzJudgeLine: refusing a request line as it arrives never refuses a
// head that parseConnect accepts, at any point of its arrival.
func FuzzJudgeLine(f *testing.F) {
	for _, s := range []string{
		"CONNECT a.b:5900 HTTP/1.1\r\nHost: a.b:5900\r\n\r\n",
		"CONNECT x:1 HTTP/1.0\n\n",
		"CONNECT [::1]:5900 HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\n\n",
		"REDQ\x02\x00\x00\x00\x02\x00\x00\x00",
		"CONNECT x:1 HTTP/2.0\r\n\r\n",
		"\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		end := headEnd(b, 0)
		if end < 0 {
			return // not a whole head: no verdict to hold judgeLine to
		}
		if _, ref := parseConnect(b[:end]); ref != nil {
			return
		}
		for i := 1; i <= len(b); i++ { // bytes after the head too: tunnel data sent early
			if ref := judgeLine(b[:i]); ref != nil {
				t.Fatalf("judgeLine refused %q (%s) after %d bytes; parseConnect accepts its head", b, ref.msg, i)
			}
		}
	})
}
