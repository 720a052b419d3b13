package harness

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/Shopify/toxiproxy/v2/stream"
	"github.com/Shopify/toxiproxy/v2/toxics"
	"github.com/rs/zerolog"
	zlog "github.com/rs/zerolog/log"

	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/vv"
	"github.com/spiceharness/spiceharness/static"
)

// Network conditions. This kernel has no netem (no sch_netem module), so a
// lane shapes its links in user space: every connection of a shaped leg
// goes through a small listener of the harness that pipes it, each way,
// through a chain of toxiproxy's toxics (latency and jitter, bandwidth,
// slow close, reset, a dropped direction). Toxiproxy is the well-kept
// user-space network-fault tool; only its toxics and stream packages are
// used, never its HTTP API server.
//
// Two legs can be shaped: ClientLeg (the client's connections to the
// proxy under test: the `.vv` files the lane hands out name a shaping
// listener instead of the proxy) and BackendLeg (the proxy's connections
// to qemu: the sources the target loads name a shaping listener instead
// of qemu's ports). A direct `.vv` (Kind Direct, Env.DirectDialer) goes
// through both legs' toxics, one hop each, so a comparison of the proxy
// with the direct path crosses the same conditions.
//
// The shaping listeners terminate TCP: the proxy's peer is the harness's
// socket on loopback, so latency delays the bytes, not the TCP
// acknowledgements. Each shaping socket sets TCP_NODELAY.

func init() {
	// The bandwidth toxic logs through zerolog's global logger; nothing
	// else here uses zerolog, and a test's output is no place for it.
	zlog.Logger = zerolog.Nop()
}

type legKind uint8

const (
	clientLeg legKind = iota + 1
	backendLeg
)

// Leg names one side of the proxy under test: ClientLeg (client → proxy)
// or BackendLeg (proxy → qemu), for every VM of the lane or, with VM,
// for one.
type Leg struct {
	kind legKind
	vm   int // 0: every VM; else the VM's index + 1
}

var (
	// ClientLeg is the clients' connections to the proxy under test.
	ClientLeg = Leg{kind: clientLeg}
	// BackendLeg is the proxy's connections to qemu.
	BackendLeg = Leg{kind: backendLeg}
)

// VM narrows l to the connections for the VM of index i (0-based).
func (l Leg) VM(i int) Leg { l.vm = i + 1; return l }

func (l Leg) String() string {
	s := "client leg"
	if l.kind == backendLeg {
		s = "backend leg"
	}
	if l.vm > 0 {
		s += " of vm " + strconv.Itoa(l.vm)
	}
	return s
}

// Way is a direction on a leg.
type Way uint8

const (
	// Upstream is toward qemu (what the client sends).
	Upstream Way = 1 << iota
	// Downstream is toward the client (what qemu sends).
	Downstream
)

// Link is the condition of a leg, the same each way unless it says.
type Link struct {
	// Latency delays every chunk by this much each way, plus or minus
	// up to Jitter (uniform; chunks keep their order).
	Latency, Jitter time.Duration
	// Bandwidth caps each way at this many bytes per second (0: none;
	// toxiproxy's granularity is 1000 bytes/s).
	Bandwidth int64
	// SlowClose delays passing on an end of stream (FIN) by this much.
	SlowClose time.Duration
	// ResetAfter resets a connection (RST both sides) this long after
	// the first bytes cross it (0: never; Net.Reset resets at once).
	ResetAfter time.Duration
	// Drop discards what crosses the leg that way (Upstream, Downstream
	// or both), the connection staying open: a link gone silent.
	Drop Way
}

func (l Link) String() string {
	var parts []string
	if l.Latency > 0 {
		parts = append(parts, fmt.Sprintf("latency %v±%v", l.Latency, l.Jitter))
	}
	if l.Bandwidth > 0 {
		parts = append(parts, fmt.Sprintf("%d B/s", l.Bandwidth))
	}
	if l.SlowClose > 0 {
		parts = append(parts, fmt.Sprintf("slow close %v", l.SlowClose))
	}
	if l.ResetAfter > 0 {
		parts = append(parts, fmt.Sprintf("reset after %v", l.ResetAfter))
	}
	if l.Drop&Upstream != 0 {
		parts = append(parts, "upstream dropped")
	}
	if l.Drop&Downstream != 0 {
		parts = append(parts, "downstream dropped")
	}
	if len(parts) == 0 {
		return "no conditions"
	}
	return strings.Join(parts, ", ")
}

// Network puts the lane's leg under link: harness.Network(harness.ClientLeg,
// harness.Link{Latency: 20 * time.Millisecond}). A narrower leg
// (BackendLeg.VM(1)) beats a wider one. Env.Net changes links mid-test.
func Network(leg Leg, link Link) Option {
	return func(c *config) error {
		if leg.kind == 0 {
			return errors.New("harness: Network: name a leg, harness.ClientLeg or harness.BackendLeg")
		}
		if link.Latency < 0 || link.Jitter < 0 || link.Jitter > link.Latency || link.Bandwidth < 0 || link.SlowClose < 0 || link.ResetAfter < 0 {
			return fmt.Errorf("harness: Network(%s, %s): want non-negative figures and a jitter no larger than the latency", leg, link)
		}
		if c.network == nil {
			c.network = map[Leg]Link{}
		}
		c.network[leg] = link
		return nil
	}
}

// Net is a lane's network conditions (Env.Net): the shaping listeners
// and their live connections.
type Net struct {
	mu     sync.Mutex
	links  map[Leg]Link
	fwds   map[fwdKey]*forwarder
	closed bool
	wg     sync.WaitGroup
}

type fwdKey struct {
	kind legKind
	vm   int // index + 1
	to   string
	peer side // which of its sockets faces the proxy under test
}

// side is one socket of a shaped connection.
type side uint8

const (
	sideNone     side = iota // neither (a direct path's client leg)
	sideAccepted             // the connection the listener accepted
	sideDialed               // the connection it dialed
)

func newNet(links map[Leg]Link) *Net {
	n := &Net{links: map[Leg]Link{}, fwds: map[fwdKey]*forwarder{}}
	for l, k := range links {
		n.links[l] = k
	}
	return n
}

// Net returns the lane's network conditions: a lane with no Network
// option has none, but Net still works (every leg unshaped until Set,
// which shapes the connections opened after it).
func (e *Env) Net() *Net { return e.net }

// shaped reports whether connections on kind may be shaped now or later:
// a leg with a Link at start, or any leg once Set was called.
func (n *Net) shaped(kind legKind) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for l := range n.links {
		if l.kind == kind {
			return true
		}
	}
	return false
}

// linkFor is the link of (kind, vm): the VM's own, else the leg's.
func (n *Net) linkFor(kind legKind, vm int) Link {
	n.mu.Lock()
	defer n.mu.Unlock()
	if l, ok := n.links[Leg{kind, vm}]; ok {
		return l
	}
	return n.links[Leg{kind: kind}]
}

// Set changes leg's link, for the connections open now and those to
// come. On a leg the lane had no Network option for, only the clients'
// `.vv` files and direct dialers made after Set cross it (the backend
// leg's listeners exist only when the lane started with one).
func (n *Net) Set(leg Leg, link Link) {
	n.mu.Lock()
	n.links[leg] = link
	var fs []*forwarder
	for k, f := range n.fwds {
		if k.kind == leg.kind && (leg.vm == 0 || leg.vm == k.vm) {
			fs = append(fs, f)
		}
	}
	n.mu.Unlock()
	for _, f := range fs {
		f.update()
	}
}

// Reset resets (RST, both sides) every live connection on leg now and
// returns how many it reset.
func (n *Net) Reset(leg Leg) int {
	count := 0
	for _, f := range n.matching(leg) {
		for _, c := range f.live() {
			c.reset()
			count++
		}
	}
	return count
}

// Conns counts the live connections on leg.
func (n *Net) Conns(leg Leg) int {
	count := 0
	for _, f := range n.matching(leg) {
		count += len(f.live())
	}
	return count
}

func (n *Net) matching(leg Leg) []*forwarder {
	n.mu.Lock()
	defer n.mu.Unlock()
	var fs []*forwarder
	for k, f := range n.fwds {
		if k.kind == leg.kind && (leg.vm == 0 || leg.vm == k.vm) {
			fs = append(fs, f)
		}
	}
	return fs
}

// through returns the address of the shaping listener of (kind, vm) in
// front of to, starting it if needed. It listens on to's own IP, so a
// TLS name check on an IP address still holds.
func (n *Net) through(kind legKind, vm int, to string, peer side) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return "", errors.New("harness: the lane's network is closed")
	}
	k := fwdKey{kind, vm, to, peer}
	if f, ok := n.fwds[k]; ok {
		return f.ln.Addr().String(), nil
	}
	host, _, err := net.SplitHostPort(to)
	if err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("harness: a shaping listener for %s: %w", to, err)
	}
	f := &forwarder{n: n, key: k, ln: ln, conns: map[*toxConn]struct{}{}}
	n.fwds[k] = f
	n.wg.Add(1)
	go func() { defer n.wg.Done(); f.serve() }()
	return ln.Addr().String(), nil
}

// close stops the listeners and resets every connection.
func (n *Net) close() {
	if n == nil {
		return
	}
	n.mu.Lock()
	n.closed = true
	fs := make([]*forwarder, 0, len(n.fwds))
	for _, f := range n.fwds {
		fs = append(fs, f)
	}
	n.mu.Unlock()
	for _, f := range fs {
		f.ln.Close()
		for _, c := range f.live() {
			c.reset()
		}
	}
	n.wg.Wait()
}

// throughPort rewrites host:port through the shaping listener of (kind,
// vm) (port 0 stays 0).
func (n *Net) throughPort(kind legKind, vm int, host string, port int, peer side) (string, int, error) {
	if port == 0 {
		return host, 0, nil
	}
	addr, err := n.through(kind, vm, net.JoinHostPort(host, strconv.Itoa(port)), peer)
	if err != nil {
		return "", 0, err
	}
	h, p, _ := net.SplitHostPort(addr)
	pn, _ := strconv.Atoi(p)
	return h, pn, nil
}

// backendConsole is c as the target must reach it: through the backend
// leg's shaping listeners when that leg is shaped.
func (n *Net) backendConsole(vm int, c static.Console) (static.Console, error) {
	if n == nil || !n.shaped(backendLeg) {
		return c, nil
	}
	var err error
	if _, c.InsecurePort, err = n.throughPort(backendLeg, vm+1, c.HypervisorIP, c.InsecurePort, sideAccepted); err != nil {
		return c, err
	}
	_, c.SecurePort, err = n.throughPort(backendLeg, vm+1, c.HypervisorIP, c.SecurePort, sideAccepted)
	return c, err
}

// clientVV rewrites a fetched `.vv` so the client's connections go
// through the client leg's shaping listeners: its SPICE ports, or the
// HTTP proxy of its proxy= key, or its WebSocket URL's host. peer says
// whether the listener's dialed side reaches the proxy under test
// (sideDialed) or qemu (sideNone: a direct `.vv`).
func (n *Net) clientVV(vm int, f *VVResponse, peer side) (*VVResponse, error) {
	if n == nil || f == nil || f.File == nil || !n.shaped(clientLeg) {
		return f, nil
	}
	g := *f
	file := *f.File
	g.File = &file
	var err error
	switch {
	case f.WebSocketURL != "":
		if g.WebSocketURL, err = n.throughURL(vm, f.WebSocketURL, peer); err != nil {
			return nil, err
		}
		return &g, nil
	case f.Proxy != "":
		if file.Proxy, err = n.throughURL(vm, f.Proxy, peer); err != nil {
			return nil, err
		}
	default:
		if _, file.Port, err = n.throughPort(clientLeg, vm+1, f.Host, f.Port, peer); err != nil {
			return nil, err
		}
		if _, file.TLSPort, err = n.throughPort(clientLeg, vm+1, f.Host, f.TLSPort, peer); err != nil {
			return nil, err
		}
	}
	if f.Raw != nil {
		if g.Raw, err = vv.Render(&file); err != nil {
			return nil, fmt.Errorf("harness: re-rendering a .vv through the client leg: %w", err)
		}
	}
	return &g, nil
}

// throughURL rewrites the host:port of a URL (http://, ws://, wss://)
// through the client leg's shaping listener, keeping the host name (a
// TLS name check still holds: the listener is on the same address).
func (n *Net) throughURL(vm int, raw string, peer side) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("harness: shaping the client leg: %w", err)
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "ws": "80", "https": "443", "wss": "443"}[u.Scheme]
	}
	addr, err := n.through(clientLeg, vm+1, net.JoinHostPort(u.Hostname(), port), peer)
	if err != nil {
		return "", err
	}
	_, p, _ := net.SplitHostPort(addr)
	u.Host = net.JoinHostPort(u.Hostname(), p)
	return u.String(), nil
}

// DirectDialer is a Go client for vm's own SPICE ports with its current
// ticket, through both legs' conditions (the client leg's, then the
// backend leg's): the direct path a comparison with the proxy takes.
// With a TLSBackends lane it also knows qemu's TLS port and CA.
func (e *Env) DirectDialer(vm *VM) (*spice.Dialer, error) {
	c, err := e.net.backendConsole(vm.Index, vm.Console())
	if err != nil {
		return nil, err
	}
	d := &spice.Dialer{Host: c.HypervisorIP, Password: c.Ticket, HostSubject: c.HostSubject}
	if d.Port, d.TLSPort = c.InsecurePort, c.SecurePort; e.net.shaped(clientLeg) {
		if _, d.Port, err = e.net.throughPort(clientLeg, vm.Index+1, c.HypervisorIP, c.InsecurePort, sideNone); err != nil {
			return nil, err
		}
		if _, d.TLSPort, err = e.net.throughPort(clientLeg, vm.Index+1, c.HypervisorIP, c.SecurePort, sideNone); err != nil {
			return nil, err
		}
	}
	if e.BackendCA != nil && d.TLSPort != 0 {
		d.CA = e.BackendCA.Pool()
	}
	return d, nil
}

// vmIndex finds the lane's VM of key k (-1: none).
func (e *Env) vmIndex(k static.Key) int {
	for i, vm := range e.VMs {
		if vm != nil && vm.Key == k {
			return i
		}
	}
	return -1
}

// forwarder is one shaping listener and its connections.
type forwarder struct {
	n     *Net
	key   fwdKey
	ln    net.Listener
	mu    sync.Mutex
	conns map[*toxConn]struct{}
}

func (f *forwarder) link() Link { return f.n.linkFor(f.key.kind, f.key.vm) }

func (f *forwarder) live() []*toxConn {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*toxConn, 0, len(f.conns))
	for c := range f.conns {
		out = append(out, c)
	}
	return out
}

func (f *forwarder) update() {
	l := f.link()
	for _, c := range f.live() {
		c.apply(l)
	}
}

func (f *forwarder) serve() {
	for {
		a, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.n.wg.Add(1)
		go func() { defer f.n.wg.Done(); f.handle(a.(*net.TCPConn)) }()
	}
}

func (f *forwarder) handle(a *net.TCPConn) {
	d := net.Dialer{Timeout: 10 * time.Second}
	bc, err := d.Dial("tcp", f.key.to)
	if err != nil {
		a.SetLinger(0)
		a.Close()
		return
	}
	b := bc.(*net.TCPConn)
	a.SetNoDelay(true)
	b.SetNoDelay(true)
	c := &toxConn{a: a, b: b, peer: f.key.peer}
	f.mu.Lock()
	f.conns[c] = struct{}{}
	f.mu.Unlock()
	c.run(f.link())
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}

// The toxic slots of each way, in chain order.
const (
	slotLatency = iota
	slotBandwidth
	slotSlowClose
	slotReset
	slotDrop
	nSlots
)

// slotBuffer is each slot's input buffer in chunks (toxiproxy's
// latency toxic asks 1024, so a delayed chunk never holds up reading).
const slotBuffer = 1024

// toxConn is one shaped connection: a (accepted) ↔ b (dialed).
type toxConn struct {
	a, b      *net.TCPConn
	peer      side       // which of a, b faces the proxy under test
	mu        sync.Mutex // guards the stubs' toxics while they change
	ways      [2]*toxWay
	resetOnce sync.Once
	wasReset  atomic.Bool
}

type toxWay struct {
	up      bool
	stubs   [nSlots]*toxics.ToxicStub
	current [nSlots]toxics.Toxic // guarded by toxConn.mu
	in      *stream.ChanWriter
	out     *stream.ChanReader
}

func (c *toxConn) run(l Link) {
	var wg sync.WaitGroup
	c.mu.Lock() // apply (Net.Set) may look at the ways already
	for i, up := range []bool{true, false} {
		w := &toxWay{up: up}
		first := make(chan *stream.StreamChunk, slotBuffer)
		w.in = stream.NewChanWriter(first)
		last := first
		for s := range nSlots {
			next := make(chan *stream.StreamChunk, slotBuffer)
			w.stubs[s] = toxics.NewToxicStub(last, next)
			last = next
		}
		w.out = stream.NewChanReader(last)
		c.ways[i] = w
	}
	for _, w := range c.ways {
		for s, st := range w.stubs {
			t := toxicFor(s, w.up, l)
			w.current[s] = t.Toxic
			go st.Run(t)
		}
	}
	c.mu.Unlock()
	if l.ResetAfter > 0 {
		c.a.SetLinger(0)
		c.b.SetLinger(0)
	}
	for _, w := range c.ways {
		src, dst := c.a, c.b
		if !w.up {
			src, dst = c.b, c.a
		}
		wg.Add(2)
		delayAcks := (c.peer == sideAccepted && src == c.a) || (c.peer == sideDialed && src == c.b)
		go func() { defer wg.Done(); c.read(w, src, delayAcks && l.Latency > 0) }()
		go func() { defer wg.Done(); c.write(w, dst) }()
	}
	wg.Wait()
	c.a.Close()
	c.b.Close()
}

// read copies src into the way's chain; its end closes the chain.
//
// With delayAcks (a link with latency, on the socket that faces the
// proxy under test; decided when the connection opens) it puts src back
// in delayed-ACK mode after each read. The proxy's TCP peer is
// this listener on loopback, which, in quick-ACK mode, would acknowledge
// at once; a peer across a real link acknowledges a round trip later at
// best, and a Linux peer in the middle of a stream delays its ACKs (up
// to 40 ms) unless it has data to send back. So a proxy that leaves
// Nagle's algorithm on meets here the stalls it meets on a real link.
func (c *toxConn) read(w *toxWay, src *net.TCPConn, delayAcks bool) {
	var rc syscall.RawConn
	if delayAcks {
		rc, _ = src.SyscallConn()
	}
	buf := make([]byte, 32<<10)
	for {
		if rc != nil {
			rc.Control(func(fd uintptr) {
				syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 0)
			})
		}
		n, err := src.Read(buf)
		if n > 0 {
			w.in.Write(buf[:n])
		}
		if err != nil {
			break
		}
	}
	w.in.Close()
}

// write copies the chain's output to dst, then passes the end on: a
// half-close after a clean end, a reset when the reset toxic ended it or
// dst failed. It drains the chain to its end either way, so no toxic is
// left blocked.
func (c *toxConn) write(w *toxWay, dst *net.TCPConn) {
	_, err := io.Copy(dst, w.out)
	switch {
	case err != nil:
		c.reset()
	case c.wasReset.Load() || (w.stubs[slotReset].Closed() && c.resetFired(w)):
		c.reset()
	default:
		dst.CloseWrite()
	}
	// Toxics after a closed one (the reset toxic's early close) read
	// nothing more: drain the inputs of closed stubs until their
	// writers end.
	for _, st := range w.stubs {
		if st.Closed() {
			go func() {
				for range st.Input {
				}
			}()
		}
	}
	io.Copy(io.Discard, w.out)
}

// resetFired reports whether the way's chain ended at its reset toxic
// (a ResetAfter link) rather than at the source's end.
func (c *toxConn) resetFired(w *toxWay) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := w.current[slotReset].(*toxics.ResetToxic)
	return ok
}

// reset ends the connection with an RST on both sides.
func (c *toxConn) reset() {
	c.resetOnce.Do(func() {
		c.wasReset.Store(true) // before the closes: no FIN after them
		c.a.SetLinger(0)
		c.b.SetLinger(0)
		c.a.Close()
		c.b.Close()
	})
}

// apply swaps the toxics of a live connection for l's.
func (c *toxConn) apply(l Link) {
	if l.ResetAfter > 0 {
		c.a.SetLinger(0)
		c.b.SetLinger(0)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.ways {
		if w == nil {
			continue
		}
		for s, st := range w.stubs {
			if st.InterruptToxic() {
				t := toxicFor(s, w.up, l)
				w.current[s] = t.Toxic
				go st.Run(t)
			}
		}
	}
}

// toxicFor is the toxic of slot s on one way under l (a no-op when l
// asks nothing of it).
func toxicFor(s int, up bool, l Link) *toxics.ToxicWrapper {
	w := &toxics.ToxicWrapper{Toxic: new(toxics.NoopToxic), Type: "noop", Toxicity: 1}
	set := func(t toxics.Toxic, typ string) { w.Toxic, w.Type = t, typ }
	switch s {
	case slotLatency:
		if l.Latency > 0 {
			set(&toxics.LatencyToxic{Latency: l.Latency.Milliseconds(), Jitter: l.Jitter.Milliseconds()}, "latency")
		}
	case slotBandwidth:
		if l.Bandwidth > 0 {
			set(&toxics.BandwidthToxic{Rate: max(1, l.Bandwidth/1000)}, "bandwidth")
		}
	case slotSlowClose:
		if l.SlowClose > 0 {
			set(&toxics.SlowCloseToxic{Delay: l.SlowClose.Milliseconds()}, "slow_close")
		}
	case slotReset:
		if l.ResetAfter > 0 {
			set(&toxics.ResetToxic{Timeout: l.ResetAfter.Milliseconds()}, "reset_peer")
		}
	case slotDrop:
		if (up && l.Drop&Upstream != 0) || (!up && l.Drop&Downstream != 0) {
			set(&toxics.TimeoutToxic{Timeout: 0}, "timeout")
		}
	}
	return w
}
