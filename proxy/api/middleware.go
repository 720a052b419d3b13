package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/gorilla/mux"
)

// reqInfo collects what a request's log line says; handlers fill it in.
type reqInfo struct {
	route   string // the route template, "" when none matched
	source  string
	uuid    string
	session string
	errMsg  string
}

type ctxKey struct{}

func info(r *http.Request) *reqInfo {
	if ri, ok := r.Context().Value(ctxKey{}).(*reqInfo); ok {
		return ri
	}
	return &reqInfo{}
}

// recorder remembers the status and size of a response.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logRequests writes one line per request. It logs the route template and
// the ids it carried, never the raw URL beyond a scrubbed path, a header,
// a ticket, a token or the API key.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ri := &reqInfo{}
		rec := &recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), ctxKey{}, ri)))
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		attrs := []slog.Attr{
			slog.String("method", r.Method),
			slog.Int("status", rec.status),
			slog.Int("bytes", rec.bytes),
			slog.Duration("duration", time.Since(start)),
			slog.String("remote", r.RemoteAddr),
		}
		if ri.route != "" {
			attrs = append(attrs, slog.String("route", ri.route))
		} else {
			attrs = append(attrs, slog.String("path", scrub(truncate(r.URL.EscapedPath(), 200))))
		}
		for _, a := range [][2]string{{"source", ri.source}, {"uuid", ri.uuid}, {"session", ri.session}, {"error", ri.errMsg}} {
			if a[1] != "" {
				attrs = append(attrs, slog.String(a[0], scrub(truncate(a[1], 300))))
			}
		}
		level := slog.LevelInfo
		switch {
		case rec.status >= 500:
			level = slog.LevelError
		case rec.status == http.StatusUnauthorized:
			level = slog.LevelWarn
		}
		s.log.LogAttrs(r.Context(), level, "api request", attrs...)
	})
}

// secretLike matches what could be a token (48 characters of
// [A-Za-z0-9]) or a pasted ticket or key in a path a client made up.
var secretLike = regexp.MustCompile(`[A-Za-z0-9]{32,}`)

// scrub hides token-like runs in client-chosen text before it is logged
// (session ids are 16 characters and stay).
func scrub(s string) string { return secretLike.ReplaceAllString(s, "[scrubbed]") }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// limitHeaders answers 431 in JSON when the request line and headers
// exceed MaxHeaderBytes. (net/http reads up to MaxHeaderBytes+4096 and
// answers a plain 431 beyond that.)
func (s *Server) limitHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4 + len("Host: \r\n") + len(r.Host)
		for k, vs := range r.Header {
			for _, v := range vs {
				n += len(k) + len(v) + 4
			}
		}
		if n > s.cfg.MaxHeaderBytes {
			writeError(w, r, http.StatusRequestHeaderFieldsTooLarge,
				fmt.Sprintf("request line and headers are %d bytes, more than %d", n, s.cfg.MaxHeaderBytes))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// recoverPanics turns a handler panic into a JSON 500.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("api: handler panic", "panic", fmt.Sprint(v))
				writeError(w, r, http.StatusInternalServerError, "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func sumKey(k string) [32]byte { return sha256.Sum256([]byte(k)) }

// authenticate requires "Authorization: Bearer <key>" on every route when
// an API key is configured. The comparison takes the same time whatever
// the presented key: both are hashed to 32 bytes, compared with
// subtle.ConstantTimeCompare, and their lengths with
// subtle.ConstantTimeEq, without an early exit.
func (s *Server) authenticate(next http.Handler) http.Handler {
	if s.cfg.APIKey == "" {
		return next
	}
	keyLen := int32(len(s.cfg.APIKey))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := bearer(r.Header.Get("Authorization"))
		sum := sumKey(got)
		match := subtle.ConstantTimeCompare(sum[:], s.keySum[:]) & subtle.ConstantTimeEq(int32(len(got)), keyLen)
		if !ok || match != 1 {
			msg := "missing API key: send Authorization: Bearer <key>"
			if ok {
				msg = "invalid API key"
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="spice-harness"`)
			writeError(w, r, http.StatusUnauthorized, msg)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bearer extracts the credentials of "Bearer <key>" (scheme
// case-insensitive, RFC 7235).
func bearer(h string) (string, bool) {
	scheme, cred, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	cred = strings.TrimLeft(cred, " ")
	return cred, cred != ""
}

// routeName records the matched route template for the log line.
func routeName(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rt := mux.CurrentRoute(r); rt != nil {
			if tpl, err := rt.GetPathTemplate(); err == nil {
				info(r).route = tpl
			}
		}
		next.ServeHTTP(w, r)
	})
}
