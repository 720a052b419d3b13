// Package proxy is an in-process SPICE proxy in front of qemu.
//
// Typical use:
//
//	st := store.New(store.Options{})           // the console store
//	st.Load(sources...)                        // static sources (tickets included)
//	p := &proxy.Proxy{Store: st}               // zero values work
//	if err := p.Start("127.0.0.1:0", "127.0.0.1:0"); err != nil { … }
//	defer p.Shutdown(ctx)
//	m, _ := st.Mint(static.Key{Source: "lab", UUID: uuid})
//	// a client links to p.TLSAddr() with password m.Token, trusting
//	// p.CAPEM() and host-subject p.HostSubject()
//
// What it does, per channel connection: a TLS listener (ephemeral CA
// unless a certificate is given) and a plain one that answers
// NEED_SECURED unless AllowPlain; a link reply with a one-use RSA-1024
// key from a pool and the caps the registered consoles really offer for
// that channel type (probed once per console, intersected); the token
// decrypted from the ticket and checked against the store (one session
// per token; other channels must carry the token and that session's id);
// a backend link to qemu with the client's connection id, channel and
// caps verbatim and the console's ticket; the client's link result only
// after the backend's; then a framed relay with size caps and a
// message-type allowlist (Firewall), re-framing when the legs disagree
// on MINI_HEADER.
//
// It protects qemu: a display channel is never closed upstream before a
// DISPLAY_INIT went up (spice-server 0.15 crashes otherwise). It never
// logs a ticket or token. Each connection runs on its own goroutines
// under a handshake deadline, so a silent client or a failed TLS
// handshake delays nobody. Terminate (through the store) closes a
// session's channels before it returns; Shutdown drains to a deadline.
//
// StartConnect adds the other family of SPICE proxies: an HTTP CONNECT
// listener that opens a tunnel to a console's own SPICE port only for a
// host SignTunnel made (see package tunnel and docs/tunnels.md), and
// relays bytes unread, so TLS runs end to end between client and qemu.
//
// StartWebSocket adds the browser family: a WebSocket listener
// (spice-html5's transport, one WebSocket per channel, the SPICE stream in
// binary messages) whose upgrades are judged first (path, Origin, the
// URL's token) and whose connections then take the same link handshake
// and relay (see WebSocketConfig and docs/websocket.md).
//
// It is not a SPICE client or server library (see package spice), and it
// knows nothing of qemu processes or the `.vv` API.
package proxy
