package webdav

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/spiceharness/spiceharness/proxy/spice"
)

// Reporter receives the client's events: a type and key/value pairs.
type Reporter interface {
	Event(typ string, kv ...string)
}

// TypeWebDAV is one request's result. Keys: method, path, status, then
// len and sha256 of the response body (GET), entries (PROPFIND: the
// names, comma-separated), or err.
const TypeWebDAV = "webdav"

// ErrClosed: the port ended (or the Client was closed).
var ErrClosed = errors.New("webdav: port closed")

// Client multiplexes requests over the WebDAV port. Its methods are
// safe for concurrent use.
type Client struct {
	port io.ReadWriter
	rep  Reporter

	wmu     sync.Mutex // whole frames at a time
	mu      sync.Mutex
	streams map[int64]*stream
	nextID  int64
	done    chan struct{}
	err     error
}

// New starts reading port (until it fails or ctx ends; an io.Closer
// port is closed then) and returns the Client.
func New(ctx context.Context, port io.ReadWriter, r Reporter) *Client {
	c := &Client{port: port, rep: r, streams: map[int64]*stream{}, done: make(chan struct{})}
	stop := func() bool { return true }
	if cl, ok := port.(io.Closer); ok {
		stop = context.AfterFunc(ctx, func() { cl.Close() })
	}
	go func() {
		defer close(c.done)
		defer stop()
		err := c.demux()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		c.mu.Lock()
		c.err = err
		for id, s := range c.streams {
			s.finish(fmt.Errorf("%w: %v", ErrClosed, err))
			delete(c.streams, id)
		}
		c.mu.Unlock()
	}()
	return c
}

// Done is closed when the port ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// demux hands each frame's bytes to its stream; size 0 ends it.
func (c *Client) demux() error {
	for {
		id, data, err := spice.ReadWebDAVFrame(c.port)
		if err != nil {
			return err
		}
		c.mu.Lock()
		s := c.streams[id]
		if s != nil && len(data) == 0 {
			delete(c.streams, id)
		}
		c.mu.Unlock()
		if s == nil {
			continue // a client this side closed already
		}
		if len(data) == 0 {
			s.finish(io.EOF)
			continue
		}
		s.write(data)
	}
}

func (c *Client) writeFrame(id int64, data []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.port.Write(spice.AppendWebDAVFrame(make([]byte, 0, spice.WebDAVFrameHeaderSize+len(data)), id, data))
	return err
}

// open starts a new client id.
func (c *Client) open() (int64, *stream, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.done:
		return 0, nil, fmt.Errorf("%w: %v", ErrClosed, c.err)
	default:
	}
	c.nextID++
	s := newStream()
	c.streams[c.nextID] = s
	return c.nextID, s, nil
}

// closeStream ends a client id: a size-0 frame, as spice-webdavd sends
// when its local client disconnects.
func (c *Client) closeStream(id int64) {
	c.mu.Lock()
	_, live := c.streams[id]
	delete(c.streams, id)
	c.mu.Unlock()
	if live {
		c.writeFrame(id, nil)
	}
}

// frameWriter cuts what is written into frames of one id.
type frameWriter struct {
	c  *Client
	id int64
}

func (w frameWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), spice.WebDAVMaxFrameData)
		if err := w.c.writeFrame(w.id, p[:k]); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// Do sends req as a new client and returns the response with its body
// read whole (the connection is closed after it).
func (c *Client) Do(ctx context.Context, req *http.Request) (*http.Response, []byte, error) {
	id, s, err := c.open()
	if err != nil {
		return nil, nil, err
	}
	defer c.closeStream(id)
	stop := context.AfterFunc(ctx, func() { s.finish(ctx.Err()) })
	defer stop()
	if req.Host == "" {
		req.Host = "localhost"
	}
	var head bytes.Buffer
	if err := req.Write(&head); err != nil {
		return nil, nil, err
	}
	if _, err := (frameWriter{c, id}).Write(head.Bytes()); err != nil {
		return nil, nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(s), req)
	if err != nil {
		return nil, nil, fmt.Errorf("webdav: %s %s: reading the response: %w", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp, body, fmt.Errorf("webdav: %s %s: reading the body: %w", req.Method, req.URL.Path, err)
	}
	return resp, body, nil
}

func (c *Client) report(kv ...string) {
	if c.rep != nil {
		c.rep.Event(TypeWebDAV, kv...)
	}
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Read GETs path from the shared folder and reports method, path,
// status, len and sha256. A status other than 200 is an error.
func (c *Client) Read(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://localhost"+escapePath(path), nil)
	if err != nil {
		return nil, err
	}
	resp, body, err := c.Do(ctx, req)
	if err != nil {
		c.report("method", "GET", "path", path, "err", err.Error())
		return nil, err
	}
	c.report("method", "GET", "path", path, "status", strconv.Itoa(resp.StatusCode), "len", strconv.Itoa(len(body)), "sha256", sum(body))
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("webdav: GET %s: %s", path, resp.Status)
	}
	return body, nil
}

// List PROPFINDs path with Depth 1 and returns the hrefs of the
// entries (path itself first), reporting method, path, status and
// entries. A status other than 207 Multi-Status is an error.
func (c *Client) List(ctx context.Context, path string) ([]string, error) {
	const q = `<?xml version="1.0" encoding="utf-8"?><propfind xmlns="DAV:"><prop><resourcetype/><getcontentlength/></prop></propfind>`
	req, err := http.NewRequestWithContext(ctx, "PROPFIND", "http://localhost"+escapePath(path), strings.NewReader(q))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Depth", "1")
	req.Header.Set("Content-Type", "application/xml")
	resp, body, err := c.Do(ctx, req)
	if err != nil {
		c.report("method", "PROPFIND", "path", path, "err", err.Error())
		return nil, err
	}
	if resp.StatusCode != http.StatusMultiStatus {
		c.report("method", "PROPFIND", "path", path, "status", strconv.Itoa(resp.StatusCode))
		return nil, fmt.Errorf("webdav: PROPFIND %s: %s", path, resp.Status)
	}
	var ms struct {
		Responses []struct {
			Href string `xml:"DAV: href"`
		} `xml:"DAV: response"`
	}
	if err := xml.Unmarshal(body, &ms); err != nil {
		c.report("method", "PROPFIND", "path", path, "status", strconv.Itoa(resp.StatusCode), "err", err.Error())
		return nil, fmt.Errorf("webdav: PROPFIND %s: %w", path, err)
	}
	var hrefs []string
	for _, r := range ms.Responses {
		hrefs = append(hrefs, r.Href)
	}
	c.report("method", "PROPFIND", "path", path, "status", strconv.Itoa(resp.StatusCode), "entries", strings.Join(hrefs, ","))
	return hrefs, nil
}

// escapePath makes path an absolute, escaped URL path.
func escapePath(p string) string {
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	var b strings.Builder
	for _, seg := range strings.SplitAfter(p, "/") {
		name, slash := strings.CutSuffix(seg, "/")
		b.WriteString(escapeSegment(name))
		if slash {
			b.WriteByte('/')
		}
	}
	return b.String()
}

func escapeSegment(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// stream is one client id's incoming bytes.
type stream struct {
	mu      sync.Mutex
	buf     []byte
	end     error
	changed chan struct{}
}

func newStream() *stream { return &stream{changed: make(chan struct{})} }

func (s *stream) write(p []byte) {
	s.mu.Lock()
	s.buf = append(s.buf, p...)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

func (s *stream) finish(err error) {
	s.mu.Lock()
	if s.end == nil {
		s.end = err
	}
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

func (s *stream) Read(p []byte) (int, error) {
	for {
		s.mu.Lock()
		if len(s.buf) > 0 {
			n := copy(p, s.buf)
			s.buf = s.buf[n:]
			s.mu.Unlock()
			return n, nil
		}
		if s.end != nil {
			err := s.end
			s.mu.Unlock()
			return 0, err
		}
		ch := s.changed
		s.mu.Unlock()
		<-ch
	}
}
