package proxy

import (
	"sync/atomic"
	"time"

	"github.com/spiceharness/spiceharness/internal/mutant"
)

// sessionActivity is the last time any channel of one session carried a
// message: the proxy's IdleTimeout is measured per session, so a quiet
// channel (inputs while the user watches, cursor, an unused usbredir)
// lives as long as its session is in use. A SPICE client does not
// re-link one channel it lost: spice-gtk's keyboard would be gone for
// the rest of the session.
type sessionActivity struct {
	last atomic.Int64
	refs int // channels attached (guarded by Proxy.mu)
}

// attachActivity joins the channel to its session's activity.
func (ch *channel) attachActivity() {
	if ch.lease == nil {
		return
	}
	p := ch.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.idleSessions == nil {
		p.idleSessions = map[string]*sessionActivity{}
	}
	a := p.idleSessions[ch.lease.SessionID]
	if a == nil {
		a = &sessionActivity{}
		a.last.Store(time.Now().UnixNano())
		p.idleSessions[ch.lease.SessionID] = a
	}
	a.refs++
	ch.session = a
}

func (ch *channel) detachActivity() {
	a := ch.session
	if a == nil {
		return
	}
	p := ch.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if a.refs--; a.refs <= 0 && p.idleSessions[ch.lease.SessionID] == a {
		delete(p.idleSessions, ch.lease.SessionID)
	}
}

// touch records a message on the channel (and its session).
func (ch *channel) touch() {
	now := time.Now().UnixNano()
	ch.lastActive.Store(now)
	if a := ch.session; a != nil {
		a.last.Store(now)
	}
}

// quietFor is how long the channel's session (with the idle-per-channel
// mutant: the channel alone) has carried no message.
func (ch *channel) quietFor() time.Duration {
	last := ch.lastActive.Load()
	if a := ch.session; a != nil && !mutant.On(ch.p, mutant.IdlePerChannel) {
		last = max(last, a.last.Load())
	}
	return time.Since(time.Unix(0, last))
}
