package qemu

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Well-known virtio-serial port names. spice-server picks the channel
// type from the chardev: a spicevmc chardev named "vdagent" is the agent
// (on main, no channel of its own), a spiceport chardev named
// org.spice-space.webdav.* is a webdav channel (type 11) and any other
// spiceport is a port channel (type 10).
const (
	// AgentPortName is the virtio port the guest's spice-vdagent opens.
	AgentPortName = "com.redhat.spice.0"
	// WebDAVPortName is the virtio port spice-webdavd opens.
	WebDAVPortName = "org.spice-space.webdav.0"
	// EchoPortName is the port channel AllChannels offers; the Linux test
	// guest echoes what arrives on it.
	EchoPortName = "org.spice-space.harness.echo"
)

// Streaming modes of -spice streaming-video.
const (
	StreamingOff    = "off"
	StreamingAll    = "all"
	StreamingFilter = "filter"
)

// Limits of the channel options.
const (
	// MaxUSBRedir bounds USBRedirChannels: the xHCI controller gets 8
	// ports of each speed, shared with the tablet and the smartcard
	// reader.
	MaxUSBRedir = 6
	// MaxDisplayHeads bounds DisplayHeads.
	MaxDisplayHeads = 4
)

// Channel is one SPICE channel (or what a channel needs) a VM offers
// beyond the four every VM has (main, display:0, inputs, cursor). Make
// one with AgentChannel, PortChannel, WebDAVChannel, USBRedirChannels,
// SmartcardChannel, AudioChannels, DisplayHeads, StreamingVideo or
// Tablet, and pass it to Channels.
type Channel struct {
	kind channelKind
	name string // PortChannel; StreamingVideo's mode
	n    int    // USBRedirChannels, DisplayHeads
}

type channelKind int

const (
	kindAgent channelKind = iota + 1
	kindPort
	kindWebDAV
	kindUSBRedir
	kindSmartcard
	kindAudio
	kindHeads
	kindStreaming
	kindTablet
)

// String names the channel as its constructor call would.
func (ch Channel) String() string {
	switch ch.kind {
	case kindAgent:
		return "AgentChannel()"
	case kindPort:
		return "PortChannel(" + strconv.Quote(ch.name) + ")"
	case kindWebDAV:
		return "WebDAVChannel()"
	case kindUSBRedir:
		return "USBRedirChannels(" + strconv.Itoa(ch.n) + ")"
	case kindSmartcard:
		return "SmartcardChannel()"
	case kindAudio:
		return "AudioChannels()"
	case kindHeads:
		return "DisplayHeads(" + strconv.Itoa(ch.n) + ")"
	case kindStreaming:
		return "StreamingVideo(" + strconv.Quote(ch.name) + ")"
	case kindTablet:
		return "Tablet()"
	}
	return "Channel{}"
}

// AgentChannel offers the agent (clipboard, file transfer, monitors
// config; carried on main): a virtio-serial port com.redhat.spice.0 on
// a spicevmc chardev named vdagent.
func AgentChannel() Channel { return Channel{kind: kindAgent} }

// PortChannel offers a named port channel (type 10): a virtio-serial
// port of that name on a spiceport chardev of the same name. Names are
// reverse-DNS ("org.example.thing"); com.redhat.spice.0 and
// org.spice-space.webdav.* are taken by AgentChannel and WebDAVChannel.
func PortChannel(name string) Channel { return Channel{kind: kindPort, name: name} }

// WebDAVChannel offers the webdav channel (type 11, folder sharing):
// a spiceport chardev and virtio-serial port named
// org.spice-space.webdav.0, which the guest's spice-webdavd opens.
func WebDAVChannel() Channel { return Channel{kind: kindWebDAV} }

// USBRedirChannels offers n usbredir channels (type 9, ids 0..n-1): one
// usb-redir device on a spicevmc chardev named usbredir each, on a
// qemu-xhci controller.
func USBRedirChannels(n int) Channel { return Channel{kind: kindUSBRedir, n: n} }

// SmartcardChannel offers the smartcard channel (type 8): a usb-ccid
// reader with a ccid-card-passthru card on a spicevmc chardev named
// smartcard.
func SmartcardChannel() Channel { return Channel{kind: kindSmartcard} }

// AudioChannels offers playback and record (types 5 and 6): -audiodev
// spice, an intel-hda controller and an hda-duplex codec (output and
// input).
func AudioChannels() Channel { return Channel{kind: kindAudio} }

// DisplayHeads offers n display channels (display:0 .. display:n-1):
// the VGA device is the first head and every other head is a secondary
// qxl device. spice-server makes one display channel per graphics
// device, so a single qxl with max_outputs=2 would give one channel
// with two monitors, not display:1; and Linux's qxl DRM driver binds
// secondary qxl devices (PCI class "other display") as well as
// qxl-vga, so each head is a DRM card of its own in the guest.
func DisplayHeads(n int) Channel { return Channel{kind: kindHeads, n: n} }

// StreamingVideo sets -spice streaming-video: "off" (qemu's default),
// "all" (every frequently redrawn area becomes a video stream:
// STREAM_CREATE/DATA on display) or "filter".
func StreamingVideo(mode string) Channel { return Channel{kind: kindStreaming, name: mode} }

// Tablet adds a usb-tablet (absolute pointer), which lets spice-server
// offer client mouse mode.
func Tablet() Channel { return Channel{kind: kindTablet} }

// EveryChannel lists what AllChannels offers: the agent, the echo port
// channel, WebDAV, two usbredir channels, smartcard, playback and
// record, two display heads, streaming-video=all and a tablet.
func EveryChannel() []Channel {
	return []Channel{
		AgentChannel(), PortChannel(EchoPortName), WebDAVChannel(), USBRedirChannels(2),
		SmartcardChannel(), AudioChannels(), DisplayHeads(2), StreamingVideo(StreamingAll), Tablet(),
	}
}

// AllChannels is Channels(EveryChannel()...): a VM that offers every
// SPICE channel type qemu has.
func AllChannels() Option { return Channels(EveryChannel()...) }

// Channels adds SPICE channels to the VM. It may be given several times;
// the channels add up (a port name given twice, or two different
// counts of USB redirection, display heads or streaming modes, are an
// error).
func Channels(chs ...Channel) Option {
	return func(c *config) error {
		for _, ch := range chs {
			if err := c.channels.add(ch); err != nil {
				return err
			}
		}
		return nil
	}
}

// ValidateChannels reports what Channels(chs...) would reject, without
// starting anything.
func ValidateChannels(chs ...Channel) error {
	var s channelSet
	for _, ch := range chs {
		if err := s.add(ch); err != nil {
			return err
		}
	}
	return nil
}

// channelSet is what the Channels options asked for.
type channelSet struct {
	agent, webdav, smartcard, audio, tablet bool
	ports                                   []string
	usbredir, heads                         int
	streaming                               string
}

// guestExpect is the kernel parameter that tells the Linux guest's
// agent which devices to wait for before its ready line, beyond the PCI
// functions it finds itself: a USB device is enumerated after its root
// hub appears, and nothing in the guest says a hub's first port scan is
// over, so the host names what it plugged in (spiceharness.expect=tablet).
func (s channelSet) guestExpect() []string {
	if s.tablet {
		return []string{"spiceharness.expect=tablet"}
	}
	return nil
}

var portNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,126}$`)

func (s *channelSet) add(ch Channel) error {
	field := ch.String()
	switch ch.kind {
	case kindAgent:
		s.agent = true
	case kindWebDAV:
		s.webdav = true
	case kindSmartcard:
		s.smartcard = true
	case kindAudio:
		s.audio = true
	case kindTablet:
		s.tablet = true
	case kindPort:
		if reason := badPortName(ch.name); reason != "" {
			return configErr(field, ch.name, "%s", reason)
		}
		if slices.Contains(s.ports, ch.name) {
			return configErr(field, ch.name, "port channel named twice")
		}
		s.ports = append(s.ports, ch.name)
	case kindUSBRedir:
		if ch.n < 1 || ch.n > MaxUSBRedir {
			return configErr(field, ch.n, "want 1..%d", MaxUSBRedir)
		}
		if s.usbredir != 0 && s.usbredir != ch.n {
			return configErr(field, ch.n, "USBRedirChannels(%d) given already", s.usbredir)
		}
		s.usbredir = ch.n
	case kindHeads:
		if ch.n < 1 || ch.n > MaxDisplayHeads {
			return configErr(field, ch.n, "want 1..%d", MaxDisplayHeads)
		}
		if s.heads != 0 && s.heads != ch.n {
			return configErr(field, ch.n, "DisplayHeads(%d) given already", s.heads)
		}
		s.heads = ch.n
	case kindStreaming:
		switch ch.name {
		case StreamingOff, StreamingAll, StreamingFilter:
		default:
			return configErr(field, ch.name, "want off, all or filter")
		}
		if s.streaming != "" && s.streaming != ch.name {
			return configErr(field, ch.name, "StreamingVideo(%q) given already", s.streaming)
		}
		s.streaming = ch.name
	default:
		return configErr("Channels", field, "a zero Channel: make one with AgentChannel, PortChannel, …")
	}
	return nil
}

// badPortName says what is wrong with a port channel's name ("" if
// nothing).
func badPortName(name string) string {
	switch {
	case name == AgentPortName:
		return "the agent's port: use AgentChannel()"
	case strings.HasPrefix(name, "org.spice-space.webdav."):
		return "spice-server makes a webdav channel of this name: use WebDAVChannel()"
	case !portNameRE.MatchString(name):
		return "want 1-127 characters of [A-Za-z0-9._-], such as org.example.echo"
	}
	return ""
}

// usb reports whether any USB device is needed.
func (s *channelSet) usb() bool { return s.usbredir > 0 || s.smartcard || s.tablet }

// virtioSerial reports whether a virtio-serial bus is needed.
func (s *channelSet) virtioSerial() bool { return s.agent || s.webdav || len(s.ports) > 0 }
