package proxy

import (
	"github.com/spiceharness/spiceharness/internal/mutant"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

// mutatedRules is rules for channel type typ with the mutations enabled
// for p applied (tests only: with none enabled, rules unchanged).
func (p *Proxy) mutatedRules(typ spice.ChannelType, rules [2]Rule) [2]Rule {
	if mutant.On(p, mutant.SpicevmcNoCompressed) &&
		(typ == spice.ChannelUsbredir || typ == spice.ChannelPort || typ == spice.ChannelWebdav) {
		for d := range rules {
			var kept [][2]uint16
			for _, rg := range rules[d].Types {
				// Split any range holding COMPRESSED_DATA around it.
				c := spice.MsgSpicevmcCompressedData
				switch {
				case c < rg[0] || c > rg[1]:
					kept = append(kept, rg)
				default:
					if rg[0] < c {
						kept = append(kept, [2]uint16{rg[0], c - 1})
					}
					if c < rg[1] {
						kept = append(kept, [2]uint16{c + 1, rg[1]})
					}
				}
			}
			rules[d].Types = kept
		}
	}
	return rules
}
