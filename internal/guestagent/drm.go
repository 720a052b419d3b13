package guestagent

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

// DRM KMS ioctls (include/uapi/drm/drm.h, drm_mode.h): _IOWR('d', nr, size).
func drmIOWR(nr, size uintptr) uintptr { return 3<<30 | size<<16 | 'd'<<8 | nr }

type drmModeCardRes struct {
	FbIDPtr, CrtcIDPtr, ConnectorIDPtr, EncoderIDPtr uint64
	CountFbs, CountCrtcs, CountConnectors            uint32
	CountEncoders                                    uint32
	MinWidth, MaxWidth, MinHeight, MaxHeight         uint32
}

type drmModeInfo struct {
	Clock                                         uint32
	Hdisplay, HsyncStart, HsyncEnd, Htotal, Hskew uint16
	Vdisplay, VsyncStart, VsyncEnd, Vtotal, Vscan uint16
	Vrefresh, Flags, Type                         uint32
	Name                                          [32]byte
}

type drmModeGetConnector struct {
	EncodersPtr, ModesPtr, PropsPtr, PropValuesPtr uint64
	CountModes, CountProps, CountEncoders          uint32
	EncoderID, ConnectorID                         uint32
	ConnectorType, ConnectorTypeID                 uint32
	Connection, MmWidth, MmHeight, Subpixel, Pad   uint32
}

type drmModeGetEncoder struct {
	EncoderID, EncoderType, CrtcID, PossibleCrtcs, PossibleClones uint32
}

type drmModeCreateDumb struct {
	Height, Width, Bpp, Flags, Handle, Pitch uint32
	Size                                     uint64
}

type drmModeMapDumb struct {
	Handle, Pad uint32
	Offset      uint64
}

type drmModeFbCmd struct {
	FbID, Width, Height, Pitch, Bpp, Depth, Handle uint32
}

type drmModeCrtc struct {
	SetConnectorsPtr uint64
	CountConnectors  uint32
	CrtcID, FbID     uint32
	X, Y             uint32
	GammaSize        uint32
	ModeValid        uint32
	Mode             drmModeInfo
}

type drmModeFbDirtyCmd struct {
	FbID, Flags, Color, NumClips uint32
	ClipsPtr                     uint64
}

var (
	ioctlGetResources = drmIOWR(0xA0, unsafe.Sizeof(drmModeCardRes{}))
	ioctlSetCrtc      = drmIOWR(0xA2, unsafe.Sizeof(drmModeCrtc{}))
	ioctlGetEncoder   = drmIOWR(0xA6, unsafe.Sizeof(drmModeGetEncoder{}))
	ioctlGetConnector = drmIOWR(0xA7, unsafe.Sizeof(drmModeGetConnector{}))
	ioctlAddFB        = drmIOWR(0xAE, unsafe.Sizeof(drmModeFbCmd{}))
	ioctlDirtyFB      = drmIOWR(0xB1, unsafe.Sizeof(drmModeFbDirtyCmd{}))
	ioctlCreateDumb   = drmIOWR(0xB2, unsafe.Sizeof(drmModeCreateDumb{}))
	ioctlMapDumb      = drmIOWR(0xB3, unsafe.Sizeof(drmModeMapDumb{}))
)

const (
	drmModeTypePreferred = 1 << 3
	drmConnected         = 1
)

func drmIoctl(fd int, req uintptr, arg unsafe.Pointer) error {
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
		if e == unix.EINTR || e == unix.EAGAIN {
			continue
		}
		if e != 0 {
			return e
		}
		return nil
	}
}

// head is one display: a DRM card (each qxl device is one) whose first
// connector the agent drives. The fd stays open so the agent stays DRM
// master: the driver re-probes connectors for it and nothing else
// draws.
type head struct {
	Index   int
	Card    string // card0
	Driver  string // qxl, bochs-drm
	fd      int
	conn    uint32
	connStr string // Virtual-1
	crtc    uint32
	fb      []byte // mapped dumb buffer of the last draw
	fbID    uint32 // its framebuffer
	pitch   int    // its row length in bytes
	w, h    int    // its size
}

// openHeads opens every DRM card in card order: head 0 is card0 (the
// VGA device, lowest PCI slot), head 1 card1, …
func (a *agent) openHeads() {
	cards := sortedGlob("/dev/dri/card*")
	sortCards(cards)
	for i, c := range cards {
		h, err := openHead(i, c)
		if err != nil {
			errorf(a.rep, "head "+strconv.Itoa(i), err)
			continue
		}
		a.heads = append(a.heads, h)
	}
}

func sortCards(cs []string) {
	idx := func(s string) int { return cardIndex(filepath.Base(s)) }
	for i := 1; i < len(cs); i++ {
		for j := i; j > 0 && idx(cs[j]) < idx(cs[j-1]); j-- {
			cs[j], cs[j-1] = cs[j-1], cs[j]
		}
	}
}

// cardIndex is N of "cardN" or "dri/cardN" (-1 otherwise).
func cardIndex(name string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(name), "card"))
	if err != nil {
		return -1
	}
	return n
}

func openHead(i int, dev string) (*head, error) {
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	card := filepath.Base(dev)
	drv, _ := filepath.EvalSymlinks("/sys/class/drm/" + card + "/device/driver")
	h := &head{Index: i, Card: card, Driver: filepath.Base(drv), fd: fd}
	res, conns, crtcs, err := resources(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: GETRESOURCES: %w", card, err)
	}
	_ = res
	if len(conns) == 0 || len(crtcs) == 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: %d connectors, %d CRTCs", card, len(conns), len(crtcs))
	}
	h.conn, h.crtc = conns[0], crtcs[0]
	c, _, err := connector(fd, h.conn)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	h.connStr = connectorName(card, c)
	if c.EncoderID != 0 {
		var enc drmModeGetEncoder
		enc.EncoderID = c.EncoderID
		if drmIoctl(fd, ioctlGetEncoder, unsafe.Pointer(&enc)) == nil && enc.CrtcID != 0 {
			h.crtc = enc.CrtcID
		}
	}
	return h, nil
}

func resources(fd int) (drmModeCardRes, []uint32, []uint32, error) {
	var r drmModeCardRes
	if err := drmIoctl(fd, ioctlGetResources, unsafe.Pointer(&r)); err != nil {
		return r, nil, nil, err
	}
	fbs := make([]uint32, r.CountFbs+1)
	crtcs := make([]uint32, r.CountCrtcs+1)
	conns := make([]uint32, r.CountConnectors+1)
	encs := make([]uint32, r.CountEncoders+1)
	r.FbIDPtr = uint64(uintptr(unsafe.Pointer(&fbs[0])))
	r.CrtcIDPtr = uint64(uintptr(unsafe.Pointer(&crtcs[0])))
	r.ConnectorIDPtr = uint64(uintptr(unsafe.Pointer(&conns[0])))
	r.EncoderIDPtr = uint64(uintptr(unsafe.Pointer(&encs[0])))
	if err := drmIoctl(fd, ioctlGetResources, unsafe.Pointer(&r)); err != nil {
		return r, nil, nil, err
	}
	return r, conns[:r.CountConnectors], crtcs[:r.CountCrtcs], nil
}

// connector asks for a connector and its modes; with count_modes 0 the
// kernel re-probes it first (we are DRM master).
func connector(fd int, id uint32) (drmModeGetConnector, []drmModeInfo, error) {
	var c drmModeGetConnector
	c.ConnectorID = id
	if err := drmIoctl(fd, ioctlGetConnector, unsafe.Pointer(&c)); err != nil {
		return c, nil, fmt.Errorf("GETCONNECTOR %d: %w", id, err)
	}
	for range 3 { // the mode list can grow between the two calls
		modes := make([]drmModeInfo, c.CountModes+1)
		encs := make([]uint32, c.CountEncoders+1)
		props := make([]uint32, c.CountProps+1)
		vals := make([]uint64, c.CountProps+1)
		n := c.CountModes
		c.ModesPtr = uint64(uintptr(unsafe.Pointer(&modes[0])))
		c.EncodersPtr = uint64(uintptr(unsafe.Pointer(&encs[0])))
		c.PropsPtr = uint64(uintptr(unsafe.Pointer(&props[0])))
		c.PropValuesPtr = uint64(uintptr(unsafe.Pointer(&vals[0])))
		if err := drmIoctl(fd, ioctlGetConnector, unsafe.Pointer(&c)); err != nil {
			return c, nil, fmt.Errorf("GETCONNECTOR %d: %w", id, err)
		}
		if c.CountModes <= n {
			return c, modes[:c.CountModes], nil
		}
	}
	return c, nil, fmt.Errorf("GETCONNECTOR %d: the mode list keeps changing", id)
}

var connectorTypes = map[uint32]string{15: "Virtual", 1: "VGA", 11: "HDMI-A", 10: "DisplayPort"}

func connectorName(card string, c drmModeGetConnector) string {
	t, ok := connectorTypes[c.ConnectorType]
	if !ok {
		t = "Type" + strconv.Itoa(int(c.ConnectorType))
	}
	return t + "-" + strconv.Itoa(int(c.ConnectorTypeID))
}

// preferred is the preferred mode, else the first one.
func preferred(modes []drmModeInfo) (drmModeInfo, bool) {
	for _, m := range modes {
		if m.Type&drmModeTypePreferred != 0 {
			return m, true
		}
	}
	if len(modes) > 0 {
		return modes[0], true
	}
	return drmModeInfo{}, false
}

func (a *agent) headCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.heads)
}

func (a *agent) head(i int) (*head, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if i < 0 || i >= len(a.heads) {
		return nil, fmt.Errorf("no head %d (the guest has %d)", i, len(a.heads))
	}
	return a.heads[i], nil
}

// headList describes the heads for the ready line: card:driver:WxH.
func (a *agent) headList() []string {
	var out []string
	for _, h := range a.heads {
		_, modes, err := connector(h.fd, h.conn)
		m, ok := preferred(modes)
		if err != nil || !ok {
			out = append(out, h.Card+":"+h.Driver+":none")
			continue
		}
		out = append(out, fmt.Sprintf("%s:%s:%dx%d", h.Card, h.Driver, m.Hdisplay, m.Vdisplay))
	}
	return out
}

// reportMonitors prints what the driver reports for head i's connector
// now (after a client's monitors config, the qxl driver changes its
// preferred mode and sends a hotplug uevent).
func (a *agent) reportMonitors(i int) {
	h, err := a.head(i)
	if err != nil {
		return
	}
	c, modes, err := connector(h.fd, h.conn)
	if err != nil {
		errorf(a.rep, "monitor "+strconv.Itoa(i), err)
		return
	}
	status := "disconnected"
	if c.Connection == drmConnected {
		status = "connected"
	}
	w, ht := 0, 0
	if m, ok := preferred(modes); ok {
		w, ht = int(m.Hdisplay), int(m.Vdisplay)
	}
	a.rep.Event(guestproto.TypeMonitor, "head", strconv.Itoa(i), "card", h.Card, "driver", h.Driver,
		"connector", h.connStr, "status", status, "w", strconv.Itoa(w), "h", strconv.Itoa(ht),
		"modes", strconv.Itoa(len(modes)))
}

// cmdDraw draws guestproto.Picture on a head at its preferred mode.
func (a *agent) cmdDraw(cmd guestproto.Command) ([]string, error) {
	i, err := cmd.Int("head")
	if err != nil {
		return nil, err
	}
	h, err := a.head(int(i))
	if err != nil {
		return nil, err
	}
	w, ht, err := h.draw()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", h.Card, err)
	}
	return []string{"head", strconv.Itoa(h.Index), "card", h.Card, "w", strconv.Itoa(w), "h", strconv.Itoa(ht)}, nil
}

func (h *head) draw() (int, int, error) {
	_, modes, err := connector(h.fd, h.conn)
	if err != nil {
		return 0, 0, err
	}
	mode, ok := preferred(modes)
	if !ok {
		return 0, 0, errors.New("the connector has no modes")
	}
	w, ht := int(mode.Hdisplay), int(mode.Vdisplay)
	cd := drmModeCreateDumb{Width: uint32(w), Height: uint32(ht), Bpp: 32}
	if err := drmIoctl(h.fd, ioctlCreateDumb, unsafe.Pointer(&cd)); err != nil {
		return 0, 0, fmt.Errorf("CREATE_DUMB %dx%d: %w", w, ht, err)
	}
	fb := drmModeFbCmd{Width: uint32(w), Height: uint32(ht), Pitch: cd.Pitch, Bpp: 32, Depth: 24, Handle: cd.Handle}
	if err := drmIoctl(h.fd, ioctlAddFB, unsafe.Pointer(&fb)); err != nil {
		return 0, 0, fmt.Errorf("ADDFB: %w", err)
	}
	md := drmModeMapDumb{Handle: cd.Handle}
	if err := drmIoctl(h.fd, ioctlMapDumb, unsafe.Pointer(&md)); err != nil {
		return 0, 0, fmt.Errorf("MAP_DUMB: %w", err)
	}
	mem, err := unix.Mmap(h.fd, int64(md.Offset), int(cd.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return 0, 0, fmt.Errorf("mmap dumb buffer: %w", err)
	}
	paint(mem, int(cd.Pitch), h.Index, w, ht)
	conn := h.conn
	sc := drmModeCrtc{
		SetConnectorsPtr: uint64(uintptr(unsafe.Pointer(&conn))), CountConnectors: 1,
		CrtcID: h.crtc, FbID: fb.FbID, ModeValid: 1, Mode: mode,
	}
	if err := drmIoctl(h.fd, ioctlSetCrtc, unsafe.Pointer(&sc)); err != nil {
		unix.Munmap(mem)
		return 0, 0, fmt.Errorf("SETCRTC: %w", err)
	}
	dirty := drmModeFbDirtyCmd{FbID: fb.FbID}
	if err := drmIoctl(h.fd, ioctlDirtyFB, unsafe.Pointer(&dirty)); err != nil && err != unix.ENOSYS {
		return 0, 0, fmt.Errorf("DIRTYFB: %w", err)
	}
	if h.fb != nil {
		unix.Munmap(h.fb)
	}
	h.fb, h.fbID, h.pitch, h.w, h.h = mem, fb.FbID, int(cd.Pitch), w, ht
	return w, ht, nil
}

// paint fills an XRGB8888 buffer (little endian: B, G, R, X) with the
// head's picture.
func paint(mem []byte, pitch, headIdx, w, h int) {
	sq := h / 8
	for y := 0; y < h; y++ {
		row := mem[y*pitch:]
		for x := 0; x < w; x++ {
			c := guestproto.PictureAt(headIdx, w, h, x, y, sq)
			row[4*x], row[4*x+1], row[4*x+2], row[4*x+3] = c.B, c.G, c.R, 0
		}
	}
}
