package guestproto

// Event types the agent prints. Each one's keys are listed in
// docs/linux-guest.md; the packages that serve the SPICE agent and WebDAV
// ports add their own types through the same reporter.
const (
	// TypeReady: the agent finished loading drivers. Keys: ports (virtio
	// port names), heads (DRM heads found), displays (card:driver:WxH per
	// head), sound (ALSA card ids), usb (host controller drivers), inputs
	// (input device names), modules (modules loaded).
	TypeReady = "ready"
	// TypeAck answers a command. Keys: cmd, id, ok (true or false), err
	// when ok=false, then what the command reports.
	TypeAck = "ack"
	// TypeKey is an EV_KEY event. Keys: dev, code, value (1 press,
	// 0 release, 2 repeat).
	TypeKey = "key"
	// TypeMouse is one evdev report of a pointer. Keys: dev, then x and
	// y (absolute devices) or dx, dy and wheel (relative ones).
	TypeMouse = "mouse"
	// TypePortRx: bytes arrived on a port the agent echoes. Keys: port,
	// len, sha256 (of this chunk), total, total_sha256 (of everything
	// since the port opened), echoed (true once written back).
	TypePortRx = "port-rx"
	// TypeUSB: a USB device came or went. Keys: action (add or remove),
	// bus, dev, vid, pid, class, manufacturer, product, serial.
	TypeUSB = "usb"
	// TypeStorage: a block device on USB was read whole. Keys: dev,
	// usb (vid:pid), vendor, model, bytes, sha256.
	TypeStorage = "storage"
	// TypeMonitor: what the display driver reports for one head. Keys:
	// head, card, driver, connector, status, w, h (the preferred mode).
	TypeMonitor = "monitor"
	// TypeAudio: a capture ended. Keys: card, rate, channels, format,
	// frames, sha256 (of the raw PCM), freq_hz and rms_dbfs (of the
	// left channel after the leading silence), peak.
	TypeAudio = "audio"
	// TypeSmartcard: a card's ATR read through the USB CCID reader.
	// Keys: usb (vid:pid), slot, atr (hex), or err.
	TypeSmartcard = "smartcard"
	// TypeError: something the agent could not do on its own. Keys:
	// what, err.
	TypeError = "error"
)

// Commands the agent accepts on its control port.
const (
	// CmdDraw draws Picture(head, w, h) on a head. Args: head (0 or 1).
	// The ack reports w and h.
	CmdDraw = "draw"
	// CmdAnimate repaints a region of a head frame after frame, so
	// spice-server (streaming-video=all) turns the updates into a video
	// stream. Args: head, frames (default 75), fps (default 25), w and h
	// (default 512x384, at the head's top-left quarter point). Each frame
	// is a window into AnimationNoise at another offset; the last frame
	// stays on screen, the same for the same args. The ack reports
	// frames, ms (how long the frames took) and the region (x, y, w, h).
	CmdAnimate = "animate"
	// CmdPortWrite writes bytes to a named virtio port. Args: port, then
	// hex (the bytes) or len and seed (PatternBytes(seed, len)).
	CmdPortWrite = "port-write"
	// CmdPlay plays PCM on the first sound card (S16_LE, 2 channels).
	// Args: rate (default 48000), then freq and ms (a sine at half
	// scale) or frames and seed (PatternBytes samples). The ack reports
	// frames and the sha256 of what was written.
	CmdPlay = "play"
	// CmdCaptureStart starts recording from the first sound card. Args:
	// rate (default 48000).
	CmdCaptureStart = "capture-start"
	// CmdCaptureStop stops recording; a TypeAudio event follows the ack.
	CmdCaptureStop = "capture-stop"
	// CmdStorageRead reads a block device again. Args: dev (sr0, sda, …).
	CmdStorageRead = "storage-read"
	// CmdMonitors reports a TypeMonitor event per head now.
	CmdMonitors = "monitors"
	// CmdSmartcard powers the CCID reader's card on and reports its ATR.
	CmdSmartcard = "smartcard"
	// CmdClipboardSet hands the agent-port service a clipboard. Args:
	// text, or len and seed.
	CmdClipboardSet = "clipboard-set"
	// CmdWebDAVRead asks the WebDAV port service to read a path. Args:
	// path.
	CmdWebDAVRead = "webdav-read"
)

// Names of the virtio-serial ports the agent looks for.
const (
	// PortControl carries commands from the harness.
	PortControl = "org.spice-harness.control"
	// PortAgent is the SPICE agent port.
	PortAgent = "com.redhat.spice.0"
	// PortWebDAV is the SPICE WebDAV port.
	PortWebDAV = "org.spice-space.webdav.0"
	// PortEcho is a spiceport the agent echoes.
	PortEcho = "org.spice-space.harness.echo"
)
