package guestagent

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

// evdev event types and codes (include/uapi/linux/input-event-codes.h).
const (
	evSyn = 0
	evKey = 1
	evRel = 2
	evAbs = 3

	relX     = 0
	relY     = 1
	relWheel = 8
	absX     = 0
	absY     = 1
)

// inputEventSize is struct input_event on 64-bit: a timeval (16 bytes),
// type and code (u16 each) and value (s32).
const inputEventSize = 24

// watchInputs starts a reader on every event device present now (the
// uevent handler starts one for each that appears later).
func (a *agent) watchInputs() {
	for _, d := range sortedGlob("/dev/input/event*") {
		go a.readInput(d)
	}
}

// claim marks a device path as handled; false if it already was (a
// device found by the scan and by its uevent is read once).
func (a *agent) claim(kind, path string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.claimed == nil {
		a.claimed = map[string]bool{}
	}
	k := kind + " " + path
	if a.claimed[k] {
		return false
	}
	a.claimed[k] = true
	return true
}

func (a *agent) release(kind, path string) {
	a.mu.Lock()
	delete(a.claimed, kind+" "+path)
	a.mu.Unlock()
}

// readInput reports key events one by one and pointer motion once per
// SYN_REPORT.
func (a *agent) readInput(dev string) {
	if !a.claim("input", dev) {
		return
	}
	defer a.release("input", dev)
	f, err := os.Open(dev)
	if err != nil {
		errorf(a.rep, "input "+dev, err)
		return
	}
	defer f.Close()
	name := strings.ReplaceAll(readTrim("/sys/class/input/"+filepath.Base(dev)+"/device/name"), ",", ";")
	buf := make([]byte, inputEventSize*64)
	var rel [3]int64 // dx, dy, wheel
	var absSeen bool
	var haveRel bool
	x, y := int64(-1), int64(-1)
	for {
		n, err := f.Read(buf)
		if err != nil {
			return // device gone
		}
		for off := 0; off+inputEventSize <= n; off += inputEventSize {
			e := buf[off : off+inputEventSize]
			typ := binary.LittleEndian.Uint16(e[16:])
			code := binary.LittleEndian.Uint16(e[18:])
			val := int64(int32(binary.LittleEndian.Uint32(e[20:])))
			switch typ {
			case evKey:
				a.rep.Event(guestproto.TypeKey, "dev", name, "code", strconv.Itoa(int(code)), "value", strconv.FormatInt(val, 10))
			case evRel:
				switch code {
				case relX:
					rel[0] += val
				case relY:
					rel[1] += val
				case relWheel:
					rel[2] += val
				}
				haveRel = true
			case evAbs:
				switch code {
				case absX:
					x = val
				case absY:
					y = val
				}
				absSeen = true
			case evSyn:
				if code != 0 {
					continue
				}
				if absSeen {
					a.rep.Event(guestproto.TypeMouse, "dev", name, "x", strconv.FormatInt(x, 10), "y", strconv.FormatInt(y, 10))
					absSeen = false
				}
				if haveRel {
					a.rep.Event(guestproto.TypeMouse, "dev", name, "dx", strconv.FormatInt(rel[0], 10), "dy", strconv.FormatInt(rel[1], 10), "wheel", strconv.FormatInt(rel[2], 10))
					rel, haveRel = [3]int64{}, false
				}
			}
		}
	}
}
