package proxy

import (
	"context"
	"github.com/spiceharness/spiceharness/internal/mutant"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/store"
)

// The link reply goes to the client before its token (and so its
// backend) is known. Each endpoint must still see the other's real caps,
// so the proxy probes each console's reply caps per channel type with a
// link message only (reading the reply and closing before any ticket is
// safe for spice-server) and answers clients with the intersection over
// the consoles it could reach. The client's own caps go upstream
// verbatim.

const (
	// maxProbedBackends bounds how many consoles one intersection probes.
	maxProbedBackends = 16
	probeTimeout      = 2 * time.Second
	// probeWait bounds how long a client's link reply waits for probes;
	// late probes still fill the cache. A healthy qemu answers in ~1 ms.
	probeWait = 300 * time.Millisecond
	probeTTL  = 10 * time.Minute
	// probeRetry is how soon a failed probe is tried again.
	probeRetry = 5 * time.Second
)

type probeKey struct {
	addr   string
	secure bool
	typ    spice.ChannelType
}

type probeResult struct {
	caps spice.Caps
	ok   bool // the console answered with a link reply
	at   time.Time
	done chan struct{} // closed when the probe finished
	// prev is what the previous probe of the console found, when this
	// one refreshes it: clients use prev while the refresh runs.
	prev *probeResult
}

type capsCache struct {
	mu      sync.Mutex
	results map[probeKey]*probeResult
	// stop cuts probes in flight (the proxy's stop context); wg waits
	// for them.
	stop context.Context
	wg   sync.WaitGroup
	// retry and timeout replace probeRetry and probeTimeout when set
	// (tests).
	retry, timeout time.Duration
}

func backendKey(t store.Target, typ spice.ChannelType) probeKey {
	c := t.Console
	port, secure := c.InsecurePort, false
	if c.SecurePort != 0 {
		port, secure = c.SecurePort, true
	}
	return probeKey{addr: net.JoinHostPort(c.HypervisorIP, strconv.Itoa(port)), secure: secure, typ: typ}
}

// get returns the caps to offer a client linking typ: the intersection
// of the probed consoles' reply caps, probing (in parallel, bounded by
// deadline) those not cached yet.
func (cc *capsCache) get(p *Proxy, typ spice.ChannelType, deadline time.Time) spice.Caps {
	targets := p.Store.Targets(maxProbedBackends)
	seen := map[probeKey]bool{}
	var results []*probeResult
	for _, t := range targets {
		k := backendKey(t, typ)
		if seen[k] {
			continue
		}
		seen[k] = true
		results = append(results, cc.probe(t, k))
	}
	wait := time.NewTimer(min(time.Until(deadline)/2, probeWait))
	defer wait.Stop()
	var out spice.Caps
	found, waited := false, false
	for _, r := range results {
		if r.prev != nil {
			// A refresh is under way: answer with what the console
			// answered last (nothing, if it was down) rather than wait.
			// A console that stopped answering would otherwise delay
			// every client's link by probeWait while it is re-probed.
			select {
			case <-r.done:
			default:
				r = r.prev
			}
		} else if !waited {
			// A console's first probe is worth waiting for, briefly.
			select {
			case <-r.done:
			case <-wait.C:
				waited = true // late probes still fill the cache
			}
		}
		select {
		case <-r.done:
		default:
			continue
		}
		if !r.ok {
			continue
		}
		if !found {
			out, found = r.caps, true
		} else {
			out = out.And(r.caps)
		}
	}
	return orFallback(out, found, typ)
}

// replyCaps are the channel caps of the link reply to a client linking
// typ: what the consoles offer (get), never one fixed set.
func (p *Proxy) replyCaps(typ spice.ChannelType, deadline time.Time) spice.Caps {
	if mutant.On(p, mutant.FixedCaps) {
		return spice.ServerChannelCaps(spice.ChannelMain) // one set for every channel
	}
	return p.caps.get(p, typ, deadline)
}

func orFallback(c spice.Caps, found bool, typ spice.ChannelType) spice.Caps {
	if !found {
		return spice.ServerChannelCaps(typ) // qemu 7.2's, when no console answered
	}
	return c
}

// probe returns the cached or in-flight result for k, starting a probe
// when there is none (or it is stale or failed).
func (cc *capsCache) probe(t store.Target, k probeKey) *probeResult {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.results == nil {
		cc.results = map[probeKey]*probeResult{}
	}
	var prev *probeResult
	if r, ok := cc.results[k]; ok {
		select {
		case <-r.done:
			if (r.ok && time.Since(r.at) < probeTTL) || (!r.ok && time.Since(r.at) < or(cc.retry, probeRetry)) {
				return r
			}
			prev = &probeResult{caps: r.caps, ok: r.ok, at: r.at, done: r.done}
		default:
			return r // in flight
		}
	}
	r := &probeResult{done: make(chan struct{}), prev: prev}
	cc.results[k] = r
	timeout := or(cc.timeout, probeTimeout)
	cc.wg.Add(1)
	go func() {
		defer cc.wg.Done()
		defer close(r.done)
		r.caps, r.ok = probeCaps(cc.stop, t, k, timeout)
		r.at = time.Now()
	}()
	return r
}

func or(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// probeCaps links typ on the console and closes after the reply, before
// any ticket: spice-server tolerates that on every channel type, so stop
// may cut it at any point.
func probeCaps(stop context.Context, t store.Target, k probeKey, timeout time.Duration) (spice.Caps, bool) {
	deadline := time.Now().Add(timeout)
	conn, err := dialBackend(stop, t, k.secure, deadline, nil)
	if err != nil {
		return nil, false
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	defer context.AfterFunc(stop, func() { conn.SetDeadline(past) })()
	m := &spice.LinkMess{ChannelType: k.typ, CommonCaps: spice.DefaultCommonCaps, ChannelCaps: spice.ClientChannelCaps(k.typ)}
	if _, err := conn.Write(m.Marshal()); err != nil {
		return nil, false
	}
	reply, err := spice.ReadLinkReply(conn, spice.DefaultMaxLinkSize)
	if err != nil || reply.Error != spice.LinkOK {
		return nil, false
	}
	return reply.ChannelCaps, true
}

// warm probes the usual channel types of the consoles get intersects
// over, in the background, so the first client does not wait for probes.
func (cc *capsCache) warm(p *Proxy) {
	for _, t := range p.Store.Targets(maxProbedBackends) {
		for _, typ := range warmTypes {
			cc.probe(t, backendKey(t, typ))
		}
	}
}
