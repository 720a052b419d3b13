package proxy

import (
	"context"

	"github.com/spiceharness/spiceharness/proxy/spice"
)

// warmTypes are the channel types WarmCaps probes: the ones every client
// opens.
var warmTypes = []spice.ChannelType{spice.ChannelMain, spice.ChannelDisplay, spice.ChannelInputs, spice.ChannelCursor}

// WarmCapsWait probes, like WarmCaps, the caps of every console for the
// usual channel types, and waits until those probes have finished or
// ctx ends. After it returns nil the proxy opens no connection to a
// console on its own until a probe goes stale (10 min) or a failed one is
// retried (5 s): tests that count qemu's connections start from there.
func (p *Proxy) WarmCapsWait(ctx context.Context) error {
	if p.init(); p.initErr != nil {
		return p.initErr
	}
	var pending []*probeResult
	for _, t := range p.Store.Targets(maxProbedBackends) {
		for _, typ := range warmTypes {
			pending = append(pending, p.caps.probe(t, backendKey(t, typ)))
		}
	}
	for _, r := range pending {
		select {
		case <-r.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
