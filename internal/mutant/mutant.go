// Package mutant switches off, for tests only, the guarantees of this
// repository's proxy one at a time, so a test can show that the scenario
// guarding each guarantee fails without it (a scenario that passes
// against a broken proxy is no test).
//
// A mutation is enabled for one value (a *proxy.Proxy, a *store.Store)
// and the code under test asks On(itself, m) at the one place the
// guarantee lives. The package is internal: nothing outside this module
// can enable a mutation, and with none enabled On is a single atomic
// load.
package mutant

import (
	"sync"
	"sync/atomic"
)

// Mutation names a guarantee switched off.
type Mutation string

// The mutations, each the opposite of a guarantee.
const (
	// ReusableTokens: a used token opens another session (store).
	ReusableTokens Mutation = "reusable-tokens"
	// NoConnIDBinding: a channel may name any session id; the link goes
	// upstream anyway (store).
	NoConnIDBinding Mutation = "no-connection-id-binding"
	// BindClaimedSession: a token that has opened no session of its own
	// (fresh, or expired) presented with a live session's SPICE id binds
	// its channel to that session, without checking the token belongs to
	// it (store). A multiplexing proxy that routes channels by connection
	// id alone has this hole.
	BindClaimedSession Mutation = "bind-claimed-session"
	// FixedCaps: every channel's link reply carries the same fixed caps,
	// not the ones qemu offers for that channel type (proxy).
	FixedCaps Mutation = "fixed-caps"
	// NoDisplayGuard: a display channel whose client left before
	// DISPLAY_INIT is closed upstream at once (proxy).
	NoDisplayGuard Mutation = "no-display-guard"
	// EarlyLinkOK: the client's link result is OK before qemu answered
	// the backend link; a backend failure then just closes (proxy).
	EarlyLinkOK Mutation = "early-link-ok"
	// TerminateKeepsChannels: terminate ends the tokens and the session
	// record but leaves its live channels open (store).
	TerminateKeepsChannels Mutation = "terminate-keeps-channels"
	// TerminateKeepsTunnels: terminating a console leaves its open
	// CONNECT tunnels relaying (proxy).
	TerminateKeepsTunnels Mutation = "terminate-keeps-tunnels"
	// TerminateKeepsHosts: terminating a console leaves the tunnel hosts
	// signed for it valid until they expire (proxy).
	TerminateKeepsHosts Mutation = "terminate-keeps-hosts"
	// ShutdownKeepsChannels: past Shutdown's drain deadline the live
	// channels are left open, so Shutdown waits for the clients (proxy).
	ShutdownKeepsChannels Mutation = "shutdown-keeps-channels"
	// NoHandshakeDeadline: a client may take as long as it likes to send
	// its link (proxy).
	NoHandshakeDeadline Mutation = "no-handshake-deadline"
	// WSIdlePerSocket: the WebSocket listener's idle limit is measured
	// per socket, not per session, so a quiet inputs socket is cut while
	// the display paints (proxy).
	WSIdlePerSocket Mutation = "ws-idle-per-socket"
	// WSNoOriginCheck: the WebSocket listener upgrades any Origin (proxy).
	WSNoOriginCheck Mutation = "ws-no-origin-check"
	// WSTextFramesAsData: the WebSocket listener takes text messages as
	// SPICE bytes (proxy).
	WSTextFramesAsData Mutation = "ws-text-frames-as-data"
	// WSNoUpgradeDeadline: a client may take as long as it likes to send
	// the HTTP head of its WebSocket upgrade (proxy).
	WSNoUpgradeDeadline Mutation = "ws-no-upgrade-deadline"
	// WSNoSubprotocol: the WebSocket listener upgrades without choosing
	// the subprotocol the client asked for ("binary"): RFC 6455 lets a
	// client go on, a browser fails the socket (proxy).
	WSNoSubprotocol Mutation = "ws-no-subprotocol"
	// WSInputsFullHeaders: on WebSocket links, the inputs channel's link
	// reply leaves MINI_HEADER out, so that channel runs with full data
	// headers: valid SPICE for a client that reads the reply's caps, lost
	// keys for spice-html5, which assumes mini headers (proxy).
	WSInputsFullHeaders Mutation = "ws-inputs-full-headers"

	// The channels tier's mutations (every SPICE channel type).

	// AllowlistMissingUsbredir: the proxy's channel allowlist leaves
	// usbredir out, so its links are refused with CHANNEL_NOT_AVAILABLE
	// (proxy).
	AllowlistMissingUsbredir Mutation = "allowlist-missing-usbredir"
	// MsgCap64K: every channel but main closes on a message over 64 KiB,
	// a firewall size cap sized for small draws (proxy).
	MsgCap64K Mutation = "msg-cap-64k"
	// SpicevmcOneWay: the client→guest DATA of the spicevmc channels
	// (usbredir, port, webdav) is dropped; the guest→client direction and
	// the ACKs still pass (proxy).
	SpicevmcOneWay Mutation = "spicevmc-one-way"
	// AgentOwnCaps: the client's VD_AGENT_ANNOUNCE_CAPABILITIES on main is
	// replaced by the proxy's own fixed agent caps (mouse state, monitors
	// config, reply), as a proxy that speaks to the agent itself might
	// (proxy).
	AgentOwnCaps Mutation = "agent-own-caps"
	// DisplayAckWindow: the ACKs the client sends on a display channel
	// are dropped, so spice-server's window (2 × the SET_ACK window
	// un-ACKed, 40 messages) closes: harmless for the few messages of a
	// link and a draw, a stall under a video stream (proxy).
	DisplayAckWindow Mutation = "display-ack-window"
	// IdlePerChannel: the proxy's IdleTimeout is measured per channel, not
	// per session, so a quiet inputs or cursor channel is cut while the
	// display streams (proxy).
	IdlePerChannel Mutation = "idle-per-channel"

	// The network family (conditions on the client and backend legs).

	// NagleOn: the relay leaves Nagle's algorithm on for its client and
	// backend sockets, so a small message waits for the peer's ACK of
	// the one before (proxy).
	NagleOn Mutation = "nagle-on"
	// StoreAndForward: the relay reads each SPICE message whole before
	// writing any of it, so over slow links a message crosses each leg
	// in turn instead of both at once (proxy).
	StoreAndForward Mutation = "store-and-forward"
	// SharedRelayLock: one lock across every session's relay, held while
	// a message crosses, so a message trickling in from a slow backend
	// holds up every other session (proxy).
	SharedRelayLock Mutation = "shared-relay-lock"
	// ResetKeepsBackend: when the client's side of a channel fails (a
	// reset), the relay closes that side only and leaves the backend
	// link open until qemu next writes, so the session stays live in
	// the proxy and in qemu (proxy).
	ResetKeepsBackend Mutation = "reset-keeps-backend"
)

// All lists every mutation.
var All = []Mutation{ReusableTokens, NoConnIDBinding, BindClaimedSession, FixedCaps, NoDisplayGuard, EarlyLinkOK, TerminateKeepsChannels,
	TerminateKeepsTunnels, TerminateKeepsHosts, ShutdownKeepsChannels, NoHandshakeDeadline,
	WSIdlePerSocket, WSNoOriginCheck, WSTextFramesAsData, WSNoUpgradeDeadline, WSNoSubprotocol, WSInputsFullHeaders,
	AllowlistMissingUsbredir, MsgCap64K, SpicevmcOneWay, AgentOwnCaps, DisplayAckWindow, IdlePerChannel,
	NagleOn, StoreAndForward, SharedRelayLock, ResetKeepsBackend}

var (
	active atomic.Int64 // how many values have mutations
	mu     sync.Mutex
	set    = map[any]map[Mutation]bool{}
)

// Enable switches ms on for owner.
func Enable(owner any, ms ...Mutation) {
	mu.Lock()
	defer mu.Unlock()
	if set[owner] == nil {
		set[owner] = map[Mutation]bool{}
		active.Add(1)
	}
	for _, m := range ms {
		set[owner][m] = true
	}
}

// Disable switches every mutation of owner off.
func Disable(owner any) {
	mu.Lock()
	defer mu.Unlock()
	if _, ok := set[owner]; ok {
		delete(set, owner)
		active.Add(-1)
	}
}

// On reports whether m is switched on for owner.
func On(owner any, m Mutation) bool {
	if active.Load() == 0 {
		return false
	}
	mu.Lock()
	defer mu.Unlock()
	return set[owner][m]
}
