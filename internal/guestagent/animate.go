package guestagent

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

// cmdAnimate repaints a region of a head's framebuffer frames times at
// fps, marking only that region dirty each time (one qxl draw of the
// same size per frame: what spice-server's stream detection looks for).
// The head gets its picture first when nothing was drawn on it yet.
func (a *agent) cmdAnimate(ctx context.Context, cmd guestproto.Command) ([]string, error) {
	i, err := cmd.Int("head")
	if err != nil {
		return nil, err
	}
	h, err := a.head(int(i))
	if err != nil {
		return nil, err
	}
	arg := func(k string, def int64) int64 {
		if v, err := cmd.Int(k); err == nil && v > 0 {
			return v
		}
		return def
	}
	frames, fps := int(arg("frames", 75)), arg("fps", 25)
	rw, rh := int(arg("w", 512)), int(arg("h", 384))
	if h.fb == nil {
		if _, _, err := h.draw(); err != nil {
			return nil, fmt.Errorf("%s: %w", h.Card, err)
		}
	}
	if h.fbID == 0 || h.pitch == 0 {
		return nil, errors.New("no framebuffer to animate")
	}
	x0, y0 := h.w/4, h.h/4
	if x0+rw > h.w || y0+rh > h.h {
		return nil, fmt.Errorf("region %dx%d at (%d, %d) is outside the %dx%d head", rw, rh, x0, y0, h.w, h.h)
	}
	row := rw * 4
	noise := guestproto.AnimationNoise(row*rh + 64*1024)
	clip := [4]uint16{uint16(x0), uint16(y0), uint16(x0 + rw), uint16(y0 + rh)} // drm_clip_rect: x1, y1, x2, y2
	tick := time.NewTicker(time.Second / time.Duration(fps))
	defer tick.Stop()
	start := time.Now()
	for f := range frames {
		off := (f * 4099) % (64 * 1024) &^ 3
		for y := range rh {
			copy(h.fb[(y0+y)*h.pitch+4*x0:(y0+y)*h.pitch+4*x0+row], noise[off+y*row:off+(y+1)*row])
		}
		dirty := drmModeFbDirtyCmd{FbID: h.fbID, NumClips: 1, ClipsPtr: uint64(uintptr(unsafe.Pointer(&clip[0])))}
		if err := drmIoctl(h.fd, ioctlDirtyFB, unsafe.Pointer(&dirty)); err != nil && err != unix.ENOSYS {
			return nil, fmt.Errorf("DIRTYFB frame %d: %w", f, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
	return []string{"head", strconv.Itoa(h.Index), "frames", strconv.Itoa(frames), "ms", strconv.Itoa(int(time.Since(start).Milliseconds())),
		"x", strconv.Itoa(x0), "y", strconv.Itoa(y0), "w", strconv.Itoa(rw), "h", strconv.Itoa(rh)}, nil
}
