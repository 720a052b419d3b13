package spice

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"golang.org/x/net/webdav"
)

// The webdav channel carries spice-webdavd's multiplexing (checked in
// phodav's spice-webdavd.c and spice-gtk's channel-webdav.c): the guest
// daemon accepts local WebDAV clients and forwards each one's bytes in
// frames of i64 client id, u16 size (both little-endian) and size bytes;
// the client (spice-gtk) runs a WebDAV server (phodav) for each new id
// and answers in frames with the same id. A frame of size 0 means that
// side closed the connection, in both directions. Frames are a byte
// stream over SPICEVMC_DATA: message boundaries mean nothing. spice-gtk
// starts reading only once the guest has the port open (PORT_EVENT
// OPENED or PORT_INIT's opened).
const (
	WebDAVFrameHeaderSize = 10
	WebDAVMaxFrameData    = 0xffff
)

// AppendWebDAVFrame appends one mux frame.
func AppendWebDAVFrame(b []byte, id int64, data []byte) []byte {
	b = le.AppendUint16(le.AppendUint64(b, uint64(id)), uint16(len(data)))
	return append(b, data...)
}

// ReadWebDAVFrame reads one mux frame.
func ReadWebDAVFrame(r io.Reader) (id int64, data []byte, err error) {
	var h [WebDAVFrameHeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	data = make([]byte, le.Uint16(h[8:]))
	if _, err := io.ReadFull(r, data); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return int64(le.Uint64(h[:])), data, nil
}

// WebDAVFolder is a read-write WebDAV server of a host directory, what
// spice-gtk's --spice-shared-dir serves with phodav.
func WebDAVFolder(dir string) http.Handler {
	return &webdav.Handler{FileSystem: webdav.Dir(dir), LockSystem: webdav.NewMemLS()}
}

// FolderShare is a shared folder served to the guest over webdav:0.
type FolderShare struct {
	Port *Port

	srv      *http.Server
	ln       *pipeListener
	wmu      sync.Mutex // whole frames at a time
	mu       sync.Mutex
	conns    map[int64]net.Conn // our end of each guest client's connection
	wg       sync.WaitGroup
	requests atomic.Uint64
	clients  atomic.Uint64
	closing  sync.Once
}

// ShareFolder opens webdav:0 and serves h (WebDAVFolder, or any
// handler) to every client the guest's WebDAV daemon forwards, as
// spice-gtk does. Close stops it; the session's Close does too.
func (s *Session) ShareFolder(ctx context.Context, h http.Handler) (*FolderShare, error) {
	p, err := s.OpenWebDAV(ctx)
	if err != nil {
		return nil, err
	}
	f := &FolderShare{Port: p, ln: newPipeListener(), conns: map[int64]net.Conn{}}
	f.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		h.ServeHTTP(w, r)
	})}
	f.wg.Add(2)
	go func() { defer f.wg.Done(); f.srv.Serve(f.ln) }()
	go func() { defer f.wg.Done(); f.demuxWebDAV() }()
	s.onClose(func() { f.Close() })
	return f, nil
}

// Stats reports the guest clients seen and the HTTP requests served.
func (f *FolderShare) Stats() (clients, requests uint64) { return f.clients.Load(), f.requests.Load() }

// Close stops serving and closes webdav:0.
func (f *FolderShare) Close() error {
	var err error
	f.closing.Do(func() { err = f.close() })
	return err
}

func (f *FolderShare) close() error {
	err := f.Port.Close()
	f.srv.Close()
	f.ln.Close()
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
	return err
}

// demuxWebDAV reads the guest's frames: a new id starts a connection to
// the server, data goes to its connection, size 0 closes it.
func (f *FolderShare) demuxWebDAV() {
	for {
		id, data, err := ReadWebDAVFrame(f.Port)
		if err != nil {
			return
		}
		f.mu.Lock()
		c, ok := f.conns[id]
		if !ok && len(data) > 0 {
			var srvEnd net.Conn
			c, srvEnd = net.Pipe()
			f.conns[id] = c
			f.clients.Add(1)
			if !f.ln.push(srvEnd) {
				f.mu.Unlock()
				return
			}
			f.wg.Add(1)
			go func() { defer f.wg.Done(); f.muxWebDAVReplies(id, c) }()
		}
		f.mu.Unlock()
		switch {
		case c == nil:
		case len(data) == 0:
			c.Close() // the guest's client went away
		default:
			if _, err := c.Write(data); err != nil {
				c.Close()
			}
		}
	}
}

// muxWebDAVReplies frames what the server answers one guest client, and
// a size-0 frame when the server closes the connection.
func (f *FolderShare) muxWebDAVReplies(id int64, c net.Conn) {
	buf := make([]byte, WebDAVMaxFrameData)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if f.write(id, buf[:n]) != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	c.Close()
	f.mu.Lock()
	if f.conns[id] == c {
		delete(f.conns, id)
	}
	f.mu.Unlock()
	f.write(id, nil)
}

func (f *FolderShare) write(id int64, data []byte) error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	_, err := f.Port.Write(AppendWebDAVFrame(make([]byte, 0, WebDAVFrameHeaderSize+len(data)), id, data))
	return err
}

// pipeListener hands net.Pipe ends to an http.Server.
type pipeListener struct {
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		c.Close()
		return false
	}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "webdav-channel" }
