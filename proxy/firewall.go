package proxy

import (
	"github.com/spiceharness/spiceharness/proxy/spice"
)

// FirewallMode says what the relay does with a message type that is not
// allowed on its channel, or a message over its channel's size cap.
type FirewallMode int

const (
	// FirewallEnforce (the zero value) closes the channel.
	FirewallEnforce FirewallMode = iota
	// FirewallWarn logs and counts the verdict and forwards the message
	// (sizes above HardMaxMessage still close the channel).
	FirewallWarn
	// FirewallOff forwards everything under HardMaxMessage unchecked.
	FirewallOff
)

func (m FirewallMode) String() string {
	return [...]string{"enforce", "warn", "off"}[m]
}

// HardMaxMessage bounds any data message in any mode: a header claiming
// more closes the channel before anything is allocated or read.
const HardMaxMessage = 64 << 20

// Direction of a relayed message.
type Direction int

const (
	ToServer Direction = iota // client → qemu
	ToClient                  // qemu → client
)

func (d Direction) String() string {
	if d == ToServer {
		return "to_server"
	}
	return "to_client"
}

// Rule is the firewall rule for one channel type and direction.
type Rule struct {
	// MaxSize caps one message body.
	MaxSize uint32
	// Types are the allowed channel-specific message types, as closed
	// ranges [lo, hi]. The common types (1–8 to the client, 1–6 to the
	// server) are always allowed.
	Types [][2]uint16
}

// Allows reports whether typ may cross in this direction.
func (r Rule) Allows(dir Direction, typ uint16) bool {
	if typ == 0 {
		return false
	}
	if (dir == ToClient && typ <= spice.MsgList) || (dir == ToServer && typ <= spice.MsgcDisconnecting) {
		return true
	}
	for _, rg := range r.Types {
		if typ >= rg[0] && typ <= rg[1] {
			return true
		}
	}
	return false
}

// Rules are the per-channel firewall rules, from spice-protocol's message
// tables and the message sizes seen on the wire from qemu 7.2
// (spice-server 0.15.1) and spice-gtk 0.42 (main's largest is the
// 256 000-byte PING of its start-up). Index: [channel type][direction].
type Rules map[spice.ChannelType][2]Rule

const (
	kib = 1 << 10
	mib = 1 << 20
)

// DefaultRules returns the built-in rules.
func DefaultRules() Rules {
	return Rules{
		spice.ChannelMain: {
			ToServer: {MaxSize: 1 * mib, Types: [][2]uint16{{101, 111}}},
			// PING with a 256 000-byte payload; agent data; migration.
			ToClient: {MaxSize: 4 * mib, Types: [][2]uint16{{101, 118}}},
		},
		spice.ChannelDisplay: {
			ToServer: {MaxSize: 64 * kib, Types: [][2]uint16{{101, 105}}},
			// Uncompressed draws of large surfaces.
			ToClient: {MaxSize: 48 * mib, Types: [][2]uint16{{101, 108}, {122, 126}, {302, 322}}},
		},
		spice.ChannelInputs: {
			ToServer: {MaxSize: 4 * kib, Types: [][2]uint16{{101, 104}, {111, 114}}},
			ToClient: {MaxSize: 4 * kib, Types: [][2]uint16{{101, 102}, {111, 111}}},
		},
		spice.ChannelCursor: {
			ToServer: {MaxSize: 4 * kib},
			ToClient: {MaxSize: 4 * mib, Types: [][2]uint16{{101, 108}}},
		},
		spice.ChannelPlayback: {
			ToServer: {MaxSize: 4 * kib},
			ToClient: {MaxSize: 4 * mib, Types: [][2]uint16{{101, 107}}},
		},
		spice.ChannelRecord: {
			ToServer: {MaxSize: 4 * mib, Types: [][2]uint16{{101, 103}}},
			ToClient: {MaxSize: 4 * kib, Types: [][2]uint16{{101, 104}}},
		},
		spice.ChannelSmartcard: {
			ToServer: {MaxSize: 1 * mib, Types: [][2]uint16{{101, 104}}},
			ToClient: {MaxSize: 1 * mib, Types: [][2]uint16{{101, 101}}},
		},
		spice.ChannelUsbredir: spicevmcRule(),
		spice.ChannelPort:     spicevmcRule(),
		spice.ChannelWebdav:   spicevmcRule(),
	}
}

func spicevmcRule() [2]Rule {
	return [2]Rule{
		ToServer: {MaxSize: 16 * mib, Types: [][2]uint16{{101, 102}, {201, 201}}},
		ToClient: {MaxSize: 16 * mib, Types: [][2]uint16{{101, 102}, {201, 202}}},
	}
}
