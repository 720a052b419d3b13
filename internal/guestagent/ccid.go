package guestagent

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

// usbfs ioctls (include/uapi/linux/usbdevice_fs.h).
type usbdevfsBulk struct {
	Ep, Len, Timeout uint32
	_                uint32
	Data             uintptr
}

var (
	usbdevfsBulkIoctl = 3<<30 | unsafe.Sizeof(usbdevfsBulk{})<<16 | 'U'<<8 | 2
	usbdevfsClaim     = uintptr(2<<30 | 4<<16 | 'U'<<8 | 15)
)

// CCID messages (USB CCID 1.1, section 6).
const (
	ccidIccPowerOn      = 0x62
	ccidGetSlotStatus   = 0x65
	ccidDataBlock       = 0x80
	ccidSlotStatus      = 0x81
	ccidNotifySlotChg   = 0x50
	ccidHeaderLen       = 10
	usbClassSmartCard   = 0x0b
	ccidTimeoutMs       = 5000
	ccidIccStatusNoCard = 2
)

// reader is a CCID device the agent claimed through usbfs.
type reader struct {
	mu      sync.Mutex // one command at a time
	fd      int
	usb     string // vid:pid
	out, in uint8  // bulk endpoints
	intr    uint8  // interrupt IN (0: none)
	seq     uint8
}

var (
	ccidMu  sync.Mutex
	readers []*reader
)

// isCCID reports whether a USB interface uevent is a smart card reader
// (INTERFACE=11/0/0: class 0x0b).
func isCCID(iface string) bool {
	c, _, _ := cutSlash(iface)
	n, err := strconv.Atoi(c)
	return err == nil && n == usbClassSmartCard
}

func cutSlash(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// watchCCID claims a reader's interface (ifaceSys is its sysfs dir),
// reports the ATR of a card already present, then one for each card
// inserted (NotifySlotChange on the interrupt endpoint).
func (a *agent) watchCCID(ifaceSys string) {
	devSys := filepath.Dir(ifaceSys)
	r, err := openReader(devSys, ifaceSys)
	if err != nil {
		errorf(a.rep, "smartcard", err)
		return
	}
	ccidMu.Lock()
	readers = append(readers, r)
	ccidMu.Unlock()
	if present, err := r.slotPresent(); err == nil && present {
		a.reportATR(r)
	}
	if r.intr == 0 {
		return
	}
	buf := make([]byte, 64)
	for {
		n, err := r.transfer(r.intr, buf, 0) // no timeout: a card arrives whenever a client sends one
		if err != nil {
			errorf(a.rep, "smartcard", fmt.Errorf("interrupt endpoint: %w", err))
			return
		}
		// RDR_to_PC_NotifySlotChange: bmSlotICCState, 2 bits per slot:
		// bit 0 present, bit 1 changed.
		if n >= 2 && buf[0] == ccidNotifySlotChg && buf[1]&3 == 3 {
			a.reportATR(r)
		}
	}
}

func openReader(devSys, ifaceSys string) (*reader, error) {
	bus, _ := strconv.Atoi(readTrim(devSys + "/busnum"))
	dev, _ := strconv.Atoi(readTrim(devSys + "/devnum"))
	path := fmt.Sprintf("/dev/bus/usb/%03d/%03d", bus, dev)
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	r := &reader{fd: fd, usb: readTrim(devSys+"/idVendor") + ":" + readTrim(devSys+"/idProduct")}
	ifnum, _ := strconv.ParseUint(readTrim(ifaceSys+"/bInterfaceNumber"), 16, 32)
	for _, ep := range sortedGlob(ifaceSys + "/ep_*") {
		addr, err := strconv.ParseUint(readTrim(ep+"/bEndpointAddress"), 16, 8)
		if err != nil {
			continue
		}
		switch typ := readTrim(ep + "/type"); {
		case typ == "Bulk" && addr&0x80 == 0:
			r.out = uint8(addr)
		case typ == "Bulk":
			r.in = uint8(addr)
		case typ == "Interrupt" && addr&0x80 != 0:
			r.intr = uint8(addr)
		}
	}
	if r.out == 0 || r.in == 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: no bulk endpoint pair on the CCID interface", path)
	}
	n := uint32(ifnum)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), usbdevfsClaim, uintptr(unsafe.Pointer(&n))); e != 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: claim interface %d: %w", path, n, e)
	}
	return r, nil
}

// transfer runs one bulk or interrupt transfer (timeout in ms, 0 none).
func (r *reader) transfer(ep uint8, buf []byte, timeout uint32) (int, error) {
	b := usbdevfsBulk{Ep: uint32(ep), Len: uint32(len(buf)), Timeout: timeout, Data: uintptr(unsafe.Pointer(&buf[0]))}
	for {
		n, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(r.fd), usbdevfsBulkIoctl, uintptr(unsafe.Pointer(&b)))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(n), nil
	}
}

// command sends one PC_to_RDR message on slot 0 and reads the answer.
func (r *reader) command(typ uint8, param byte) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	msg := make([]byte, ccidHeaderLen)
	msg[0], msg[5], msg[6], msg[7] = typ, 0, r.seq, param
	if _, err := r.transfer(r.out, msg, ccidTimeoutMs); err != nil {
		return nil, fmt.Errorf("bulk out: %w", err)
	}
	buf := make([]byte, 4096)
	for {
		n, err := r.transfer(r.in, buf, ccidTimeoutMs)
		if err != nil {
			return nil, fmt.Errorf("bulk in: %w", err)
		}
		if n < ccidHeaderLen {
			return nil, fmt.Errorf("short CCID answer (%d bytes)", n)
		}
		if buf[6] != r.seq { // an answer to an earlier command that timed out
			continue
		}
		l := int(binary.LittleEndian.Uint32(buf[1:]))
		if ccidHeaderLen+l > n {
			return nil, fmt.Errorf("CCID answer says %d data bytes, has %d", l, n-ccidHeaderLen)
		}
		return buf[:ccidHeaderLen+l], nil
	}
}

func (r *reader) slotPresent() (bool, error) {
	ans, err := r.command(ccidGetSlotStatus, 0)
	if err != nil {
		return false, err
	}
	return ans[0] == ccidSlotStatus && ans[7]&3 != ccidIccStatusNoCard, nil
}

// powerOn returns the card's ATR.
func (r *reader) powerOn() ([]byte, error) {
	ans, err := r.command(ccidIccPowerOn, 0) // bPowerSelect 0: automatic voltage
	if err != nil {
		return nil, err
	}
	if ans[0] != ccidDataBlock {
		return nil, fmt.Errorf("IccPowerOn answered message type %#x", ans[0])
	}
	if status := ans[7]; status>>6 != 0 {
		if status&3 == ccidIccStatusNoCard {
			return nil, errNoCard
		}
		return nil, fmt.Errorf("IccPowerOn failed: bStatus %#x bError %#x", status, ans[8])
	}
	return ans[ccidHeaderLen:], nil
}

var errNoCard = errors.New("no card in the reader")

func (a *agent) reportATR(r *reader) error {
	atr, err := r.powerOn()
	if err != nil {
		a.rep.Event(guestproto.TypeSmartcard, "usb", r.usb, "slot", "0", "err", err.Error())
		return err
	}
	a.rep.Event(guestproto.TypeSmartcard, "usb", r.usb, "slot", "0", "atr", hex.EncodeToString(atr))
	return nil
}

// readATR is CmdSmartcard: the ATR of the card in the first reader.
func (a *agent) readATR() error {
	ccidMu.Lock()
	var r *reader
	if len(readers) > 0 {
		r = readers[0]
	}
	ccidMu.Unlock()
	if r == nil {
		return errors.New("no CCID reader (usb-ccid) found")
	}
	return a.reportATR(r)
}
