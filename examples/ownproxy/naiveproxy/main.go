// Command naiveproxy is a deliberately naive SPICE proxy: the kind of
// first attempt a team writes in an afternoon. It exists to show how a
// proxy author drives their own proxy with spice-harness (see
// ../proxy_test.go) and what the harness finds in it.
//
// It speaks Kerbside's `.vv` API dialect over HTTP (GET routes, JSON for
// Accept: application/json, a "via proxy session ID <id>" title) and
// re-reads its sources.yaml when the file changed (checked on each API
// request and link) or on SIGHUP. Its SPICE side is plain TCP only, and it
// has the classic weaknesses on purpose: tokens are reusable until they
// expire; a channel naming a live session's id is sent to that session's
// qemu whatever its token (routing by session id, as multiplexing proxies
// do: a fresh token of another VM joins a foreign session); every channel
// gets the same fixed (empty) channel caps; a client dropping its display
// channel early is passed straight on to qemu; its direct .vv leaves out
// qemu's TLS port; and it waits 30 s for a hung qemu, longer than a client
// waits for its link. It does answer the client only after qemu did, and
// terminate closes the session's channels.
//
// Two flags make it refuse differently from this repository's proxy, and
// safely: --check-connection-id refuses a channel whose connection id is
// not its own token's live session with PERMISSION_DENIED (not
// BAD_CONNECTION_ID), and --close-on-bad-magic closes a connection with
// a bad magic without any reply (not an INVALID_MAGIC reply).
//
//	naiveproxy --sources sources.yaml --listen 127.0.0.1:5930 --api 127.0.0.1:8080
package main

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/vv"
	"github.com/spiceharness/spiceharness/static"
)

const tokenTTL = 60 * time.Second

type token struct {
	key     static.Key
	session string
	expires time.Time
	spiceID uint32 // qemu's session id, once the token's main channel linked
}

type proxy struct {
	sourcesPath string
	spiceAddr   *net.TCPAddr
	keys        *spice.KeyPool
	checkConnID bool
	closeOnBad  bool

	mu       sync.Mutex
	loaded   time.Time // the sources file's modification time when read
	consoles map[static.Key]static.Console
	tokens   map[string]*token
	bySpice  map[uint32]*token     // live sessions by qemu's session id
	conns    map[string][]net.Conn // session → its client and backend connections
}

func main() {
	sources := flag.String("sources", "", "the sources.yaml to serve")
	listen := flag.String("listen", "127.0.0.1:0", "the SPICE listener")
	apiAddr := flag.String("api", "127.0.0.1:0", "the .vv API listener")
	crashOnTerminate := flag.Bool("crash-on-terminate", false, "exit 3 on a session terminate request (to show how the harness reports a proxy that dies)")
	checkConnID := flag.Bool("check-connection-id", false, "refuse a channel whose connection id is not its token's live session, with PERMISSION_DENIED")
	closeOnBad := flag.Bool("close-on-bad-magic", false, "close a connection with a bad magic without a reply")
	flag.Parse()
	p := &proxy{sourcesPath: *sources, keys: spice.NewKeyPool(8), checkConnID: *checkConnID, closeOnBad: *closeOnBad,
		tokens: map[string]*token{}, bySpice: map[uint32]*token{}, conns: map[string][]net.Conn{}}
	if err := p.load(); err != nil {
		log.Fatal(err)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			if err := p.load(); err != nil {
				log.Printf("reload: %v", err)
			}
		}
	}()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	p.spiceAddr = ln.Addr().(*net.TCPAddr)
	go p.serveSPICE(ln)
	api, err := net.Listen("tcp", *apiAddr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("SPICE on %s, API on http://%s", ln.Addr(), api.Addr())
	routes := p.reloading(p.routes())
	if *crashOnTerminate {
		routes = crashOn("/terminate", routes)
	}
	log.Fatal(http.Serve(api, routes))
}

func (p *proxy) load() error {
	st, err := os.Stat(p.sourcesPath)
	if err != nil {
		return err
	}
	f, err := static.ParseFile(p.sourcesPath)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.consoles, p.loaded = f.Consoles(), st.ModTime()
	p.mu.Unlock()
	log.Printf("loaded %d consoles", len(f.Consoles()))
	return nil
}

// reloadIfChanged re-reads the sources file when it changed since it was
// read (the harness replaces it atomically, so a new modification time).
func (p *proxy) reloadIfChanged() {
	st, err := os.Stat(p.sourcesPath)
	if err != nil {
		return
	}
	p.mu.Lock()
	same := st.ModTime().Equal(p.loaded)
	p.mu.Unlock()
	if !same {
		if err := p.load(); err != nil {
			log.Printf("reload: %v", err)
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// The API, in Kerbside's dialect.

func (p *proxy) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /console", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		var out []map[string]string
		for k, c := range p.consoles {
			out = append(out, map[string]string{"source": k.Source, "uuid": k.UUID, "name": c.Name})
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /console/{source}/{uuid}", func(w http.ResponseWriter, r *http.Request) {
		if c, ok := p.console(r); ok {
			writeJSON(w, http.StatusOK, map[string]string{"source": r.PathValue("source"), "uuid": c.UUID, "name": c.Name})
		} else {
			writeJSON(w, http.StatusNotFound, map[string]any{"error": "console not found", "status": 404})
		}
	})
	mux.HandleFunc("GET /console/direct/{source}/{uuid}/console.vv", func(w http.ResponseWriter, r *http.Request) {
		c, ok := p.console(r)
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]any{"error": "console not found", "status": 404})
			return
		}
		writeVV(w, &vv.File{Type: "spice", Host: c.HypervisorIP, Port: c.InsecurePort, Password: c.Ticket, Title: c.Name + " direct connection"})
	})
	mux.HandleFunc("GET /console/proxy/{source}/{uuid}/console.vv", func(w http.ResponseWriter, r *http.Request) {
		c, ok := p.console(r)
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]any{"error": "console not found", "status": 404})
			return
		}
		tok := &token{key: static.Key{Source: r.PathValue("source"), UUID: c.UUID}, session: randomHex(8), expires: time.Now().Add(tokenTTL)}
		secret := randomHex(16)
		p.mu.Lock()
		p.tokens[secret] = tok
		p.mu.Unlock()
		writeVV(w, &vv.File{Type: "spice", Host: "127.0.0.1", Port: p.spiceAddr.Port, Password: secret,
			Title: c.Name + " via proxy session ID " + tok.session, DeleteThisFile: true})
	})
	mux.HandleFunc("GET /session/{id}/terminate", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		p.mu.Lock()
		conns, ok := p.conns[id]
		delete(p.conns, id)
		for s, t := range p.tokens {
			if t.session == id {
				delete(p.tokens, s)
				ok = true
			}
		}
		p.mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]any{"error": "session not found", "status": 404})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"result": "ok"})
	})
	mux.HandleFunc("GET /console/{source}/{uuid}/terminate", func(w http.ResponseWriter, r *http.Request) {
		key := static.Key{Source: r.PathValue("source"), UUID: r.PathValue("uuid")}
		var conns []net.Conn
		p.mu.Lock()
		for s, t := range p.tokens {
			if t.key == key {
				conns = append(conns, p.conns[t.session]...)
				delete(p.conns, t.session)
				delete(p.tokens, s)
			}
		}
		p.mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
		writeJSON(w, http.StatusOK, map[string]string{"result": "ok"})
	})
	return mux
}

// reloading re-reads a changed sources file before each request.
func (p *proxy) reloading(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.reloadIfChanged()
		next.ServeHTTP(w, r)
	})
}

func (p *proxy) console(r *http.Request) (static.Console, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.consoles[static.Key{Source: r.PathValue("source"), UUID: r.PathValue("uuid")}]
	return c, ok
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeVV(w http.ResponseWriter, f *vv.File) {
	body, err := vv.Render(f)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-virt-viewer;charset=UTF-8")
	w.Write(body)
}

// The SPICE side.

func (p *proxy) serveSPICE(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *proxy) handle(c net.Conn) {
	p.reloadIfChanged()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	m, err := spice.ReadLinkMess(c, spice.DefaultMaxLinkSize)
	if err != nil {
		if code, ok := spice.CodeOf(err); ok && !(p.closeOnBad && code == spice.ErrInvalidMagic) {
			c.Write(spice.MarshalLinkError(code))
		}
		c.Close()
		return
	}
	key, err := p.keys.Get()
	if err != nil {
		c.Close()
		return
	}
	// Naive: the same fixed caps for every channel.
	reply := &spice.LinkReply{PubKey: key.Public, CommonCaps: spice.DefaultCommonCaps}
	c.Write(reply.Marshal())
	if m.CommonCaps.Has(spice.CapAuthSelection) {
		var mech [4]byte
		if _, err := io.ReadFull(c, mech[:]); err != nil {
			c.Close()
			return
		}
	}
	ticket := make([]byte, spice.TicketSize)
	if _, err := io.ReadFull(c, ticket); err != nil {
		c.Close()
		return
	}
	result := func(code spice.LinkErr) {
		c.Write(binary.LittleEndian.AppendUint32(nil, uint32(code)))
		c.Close()
	}
	secret, err := spice.DecryptTicket(key.Private, ticket)
	if err != nil {
		result(spice.ErrPermissionDenied)
		return
	}
	// Naive: any unexpired token, any number of times.
	p.mu.Lock()
	tok, ok := p.tokens[secret]
	console, known := p.consoles[tok.keyOr()]
	session := tok
	if ok && m.ConnectionID != 0 {
		if p.checkConnID {
			// Only the token's own live session.
			if tok.spiceID == 0 || tok.spiceID != m.ConnectionID {
				ok = false
			}
		} else if live := p.bySpice[m.ConnectionID]; live != nil {
			// Naive: the session of that id, whatever the token.
			session = live
			console, known = p.consoles[live.key]
		}
	} else if ok && p.checkConnID && m.ChannelType != spice.ChannelMain {
		ok = false // a channel of no session
	}
	p.mu.Unlock()
	if !ok || !known || time.Now().After(tok.expires) {
		result(spice.ErrPermissionDenied)
		return
	}
	addr := net.JoinHostPort(console.HypervisorIP, strconv.Itoa(console.InsecurePort))
	b, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		result(spice.ErrLinkGeneric)
		return
	}
	// Naive: a hung qemu is waited for longer than a client waits for
	// its link.
	backend, err := spice.Link(b, m, console.Ticket, spice.LinkOptions{Deadline: time.Now().Add(30 * time.Second)})
	if err != nil {
		b.Close()
		code, ok := spice.CodeOf(err)
		if !ok {
			code = spice.ErrLinkGeneric
		}
		result(code)
		return
	}
	c.Write(binary.LittleEndian.AppendUint32(nil, uint32(spice.LinkOK)))
	if m.ChannelType == spice.ChannelMain && m.ConnectionID == 0 {
		// qemu's first message on main is MAIN_INIT: note its session id.
		mini := spice.UseMiniHeader(m.CommonCaps, backend.CommonCaps)
		msg, err := spice.NewReader(b, mini, 0).ReadMessage()
		if err != nil || msg.Type != spice.MsgMainInit {
			c.Close()
			b.Close()
			return
		}
		if init, err := spice.ParseMainInit(msg.Body); err == nil {
			p.mu.Lock()
			session.spiceID = init.SessionID
			p.bySpice[init.SessionID] = session
			p.mu.Unlock()
			defer func() {
				p.mu.Lock()
				delete(p.bySpice, init.SessionID)
				p.mu.Unlock()
			}()
		}
		c.Write(append(spice.AppendHeader(nil, msg.Header, mini), msg.Body...))
	}
	c.SetDeadline(time.Time{})
	b.SetDeadline(time.Time{})
	p.mu.Lock()
	p.conns[session.session] = append(p.conns[session.session], c, b)
	p.mu.Unlock()
	// Naive: splice bytes both ways; whoever closes first closes both.
	done := make(chan struct{}, 2)
	go func() { io.Copy(b, c); done <- struct{}{} }()
	go func() { io.Copy(c, b); done <- struct{}{} }()
	<-done
	c.Close()
	b.Close()
	<-done
}

func (t *token) keyOr() static.Key {
	if t == nil {
		return static.Key{}
	}
	return t.key
}

// crashOn makes the process die, as a buggy proxy would, on a request
// whose path ends with suffix.
func crashOn(suffix string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, suffix) {
			log.Printf("crashing on %s (--crash-on-terminate)", r.URL.Path)
			os.Exit(3)
		}
		next.ServeHTTP(w, r)
	})
}
