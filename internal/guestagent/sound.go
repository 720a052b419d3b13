package guestagent

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

// ALSA PCM kernel interface (include/uapi/sound/asound.h), used raw:
// open /dev/snd/pcmC0D0p or …c, HW_PARAMS, PREPARE, then WRITEI/READI.

type sndMask struct{ Bits [8]uint32 }

// sndInterval is struct snd_interval: min, max, then the bit fields
// openmin:1 openmax:1 integer:1 empty:1 in one unsigned int.
type sndInterval struct{ Min, Max, Flags uint32 }

type sndHwParams struct {
	Flags     uint32
	Masks     [3]sndMask // ACCESS, FORMAT, SUBFORMAT
	Mres      [5]sndMask
	Intervals [12]sndInterval // SAMPLE_BITS … TICK_TIME
	Ires      [9]sndInterval
	Rmask     uint32
	Cmask     uint32
	Info      uint32
	Msbits    uint32
	RateNum   uint32
	RateDen   uint32
	FifoSize  uint64
	Reserved  [64]byte
}

type sndXferi struct {
	Result int64
	Buf    uintptr
	Frames uint64
}

func ioc(dir, nr, size uintptr) uintptr { return dir<<30 | size<<16 | 'A'<<8 | nr }

var (
	sndHwParamsIoctl = ioc(3, 0x11, unsafe.Sizeof(sndHwParams{}))
	sndPrepare       = ioc(0, 0x40, 0)
	sndStart         = ioc(0, 0x42, 0)
	sndDrop          = ioc(0, 0x43, 0)
	sndDrain         = ioc(0, 0x44, 0)
	sndWriteI        = ioc(1, 0x50, unsafe.Sizeof(sndXferi{}))
	sndReadI         = ioc(2, 0x51, unsafe.Sizeof(sndXferi{}))
)

// Parameter indices.
const (
	paramAccess     = 0
	paramFormat     = 1
	paramSubformat  = 2
	paramFirstIntvl = 8
	paramChannels   = 10
	paramRate       = 11
	paramPeriodSize = 13
	paramPeriods    = 15

	accessRWInterleaved = 3
	formatS16LE         = 2
	intervalInteger     = 1 << 2
)

// PCM stream parameters of every play and capture.
const (
	pcmChannels   = 2
	pcmFrameBytes = 4 // S16_LE stereo
	periodFrames  = 1024
	periods       = 4
	defaultRate   = 48000
)

func sndIoctl(fd int, req uintptr, arg unsafe.Pointer) error {
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return e
		}
		return nil
	}
}

// openPCM opens card 0 device 0 for playback or capture at rate,
// S16_LE stereo interleaved, and prepares it.
func openPCM(capture bool, rate int) (int, error) {
	dev := "/dev/snd/pcmC0D0p"
	if capture {
		dev = "/dev/snd/pcmC0D0c"
	}
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", dev, err)
	}
	var p sndHwParams
	for i := range p.Masks {
		for j := range p.Masks[i].Bits {
			p.Masks[i].Bits[j] = ^uint32(0)
		}
	}
	for i := range p.Intervals {
		p.Intervals[i] = sndInterval{Min: 0, Max: ^uint32(0)}
	}
	p.Rmask = ^uint32(0)
	p.Masks[paramAccess] = sndMask{}
	p.Masks[paramAccess].Bits[0] = 1 << accessRWInterleaved
	p.Masks[paramFormat] = sndMask{}
	p.Masks[paramFormat].Bits[0] = 1 << formatS16LE
	p.Masks[paramSubformat] = sndMask{}
	p.Masks[paramSubformat].Bits[0] = 1
	exact := func(param int, v uint32) {
		p.Intervals[param-paramFirstIntvl] = sndInterval{Min: v, Max: v, Flags: intervalInteger}
	}
	exact(paramChannels, pcmChannels)
	exact(paramRate, uint32(rate))
	exact(paramPeriodSize, periodFrames)
	exact(paramPeriods, periods)
	if err := sndIoctl(fd, sndHwParamsIoctl, unsafe.Pointer(&p)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("%s: HW_PARAMS %d Hz S16_LE stereo: %w", dev, rate, err)
	}
	if err := sndIoctl(fd, sndPrepare, nil); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("%s: PREPARE: %w", dev, err)
	}
	return fd, nil
}

// xfer moves whole frames with WRITEI/READI, re-preparing after an
// xrun (EPIPE). It returns the frames moved.
func xfer(fd int, req uintptr, buf []byte) (int, error) {
	if len(buf) < pcmFrameBytes {
		return 0, nil
	}
	x := sndXferi{Buf: uintptr(unsafe.Pointer(&buf[0])), Frames: uint64(len(buf) / pcmFrameBytes)}
	for {
		err := sndIoctl(fd, req, unsafe.Pointer(&x))
		if errors.Is(err, unix.EPIPE) {
			if perr := sndIoctl(fd, sndPrepare, nil); perr != nil {
				return 0, perr
			}
			if req == sndReadI {
				sndIoctl(fd, sndStart, nil)
			}
			continue
		}
		return int(x.Result), err
	}
}

func rateArg(cmd guestproto.Command) (int, error) {
	if _, ok := cmd.Get("rate"); !ok {
		return defaultRate, nil
	}
	r, err := cmd.Int("rate")
	if err != nil || r < 8000 || r > 192000 {
		return 0, fmt.Errorf("rate=%q: want 8000..192000", cmd.Value("rate"))
	}
	return int(r), nil
}

// pcmTone is a sine of freq Hz at half scale on both channels.
func pcmTone(rate int, freq float64, frames int) []byte {
	b := make([]byte, frames*pcmFrameBytes)
	for i := range frames {
		v := uint16(int16(math.Round(16384 * math.Sin(2*math.Pi*freq*float64(i)/float64(rate)))))
		binary.LittleEndian.PutUint16(b[4*i:], v)
		binary.LittleEndian.PutUint16(b[4*i+2:], v)
	}
	return b
}

// cmdPlay plays a tone (freq, ms) or PatternBytes frames (frames,
// seed) and returns once the device drained them.
func (a *agent) cmdPlay(cmd guestproto.Command) ([]string, error) {
	rate, err := rateArg(cmd)
	if err != nil {
		return nil, err
	}
	var pcm []byte
	switch {
	case cmd.Value("freq") != "":
		freq, err := strconv.ParseFloat(cmd.Value("freq"), 64)
		if err != nil || freq <= 0 || freq >= float64(rate)/2 {
			return nil, fmt.Errorf("freq=%q: want 0 < freq < rate/2", cmd.Value("freq"))
		}
		ms, err := cmd.Int("ms")
		if err != nil || ms <= 0 || ms > 60000 {
			return nil, fmt.Errorf("ms=%q: want 1..60000", cmd.Value("ms"))
		}
		pcm = pcmTone(rate, freq, int(int64(rate)*ms/1000))
	case cmd.Value("frames") != "":
		n, err := cmd.Int("frames")
		if err != nil || n <= 0 || n > 60*192000 {
			return nil, fmt.Errorf("frames=%q: want 1..60 s of frames", cmd.Value("frames"))
		}
		seed, _ := cmd.Int("seed")
		pcm = guestproto.PatternBytes(uint64(seed), int(n)*pcmFrameBytes)
	default:
		return nil, errors.New("want freq=HZ ms=N (a tone) or frames=N seed=S (PatternBytes)")
	}
	fd, err := openPCM(false, rate)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	// A device that stops consuming (qemu's audio backend stalled) would
	// block WRITEI or DRAIN for ever: past the sound's length and a
	// margin, DROP wakes them with an error.
	limit := time.Duration(len(pcm)/pcmFrameBytes)*time.Second/time.Duration(rate) + playMargin
	stalled := time.AfterFunc(limit, func() { sndIoctl(fd, sndDrop, nil) })
	defer stalled.Stop()
	for off := 0; off < len(pcm); {
		end := min(off+periodFrames*pcmFrameBytes, len(pcm))
		n, err := xfer(fd, sndWriteI, pcm[off:end])
		if err != nil {
			return nil, fmt.Errorf("WRITEI after %d frames: %w", off/pcmFrameBytes, err)
		}
		off += n * pcmFrameBytes
	}
	if err := sndIoctl(fd, sndDrain, nil); err != nil {
		return nil, fmt.Errorf("DRAIN: %w (the device stopped consuming for %v?)", err, limit)
	}
	sum := sha256.Sum256(pcm)
	return []string{"rate", strconv.Itoa(rate), "channels", "2", "format", "S16_LE",
		"frames", strconv.Itoa(len(pcm) / pcmFrameBytes), "sha256", hex.EncodeToString(sum[:])}, nil
}

// playMargin is how long past its length a play may take before it
// counts as stalled.
const playMargin = 10 * time.Second

// capture is a recording under way.
type capture struct {
	fd   int
	rate int
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	pcm  []byte
	err  error
}

// maxCapture bounds a recording (60 s at 48 kHz).
const maxCapture = 60 * defaultRate * pcmFrameBytes

func (a *agent) cmdCaptureStart(cmd guestproto.Command) ([]string, error) {
	rate, err := rateArg(cmd)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	busy := a.capture != nil
	a.mu.Unlock()
	if busy {
		return nil, errors.New("a capture is under way: capture-stop first")
	}
	fd, err := openPCM(true, rate)
	if err != nil {
		return nil, err
	}
	if err := sndIoctl(fd, sndStart, nil); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("START: %w", err)
	}
	c := &capture{fd: fd, rate: rate, stop: make(chan struct{}), done: make(chan struct{})}
	a.mu.Lock()
	a.capture = c
	a.mu.Unlock()
	go c.run()
	return []string{"rate", strconv.Itoa(rate)}, nil
}

// run reads one period at a time until stopped.
func (c *capture) run() {
	defer close(c.done)
	buf := make([]byte, periodFrames*pcmFrameBytes)
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		n, err := xfer(c.fd, sndReadI, buf)
		if err != nil {
			c.err = err
			return
		}
		if len(c.pcm) < maxCapture {
			c.pcm = append(c.pcm, buf[:n*pcmFrameBytes]...)
		}
	}
}

func (a *agent) cmdCaptureStop() ([]string, error) {
	a.mu.Lock()
	c := a.capture
	a.capture = nil
	a.mu.Unlock()
	if c == nil {
		return nil, errors.New("no capture under way")
	}
	close(c.stop)
	sndIoctl(c.fd, sndDrop, nil) // wakes a READI that waits for frames
	<-c.done
	unix.Close(c.fd)
	if c.err != nil && !errors.Is(c.err, unix.EBADFD) {
		return nil, fmt.Errorf("READI: %w", c.err)
	}
	kv := analyse(c.pcm, c.rate)
	a.rep.Event(guestproto.TypeAudio, kv...)
	return kv, nil
}

// analyse describes captured S16_LE stereo PCM: its sha256 and, for the
// left channel after the leading silence, the frequency by zero
// crossings, the RMS level in dBFS and the peak.
func analyse(pcm []byte, rate int) []string {
	sum := sha256.Sum256(pcm)
	frames := len(pcm) / pcmFrameBytes
	left := make([]float64, frames)
	for i := range frames {
		left[i] = float64(int16(binary.LittleEndian.Uint16(pcm[4*i:])))
	}
	start := 0
	for start < frames && math.Abs(left[start]) < 328 { // 1 % of full scale
		start++
	}
	sig := left[start:]
	var sq, peak float64
	crossings := 0
	for i, v := range sig {
		sq += v * v
		peak = math.Max(peak, math.Abs(v))
		if i > 0 && (sig[i-1] < 0) != (v < 0) {
			crossings++
		}
	}
	freq, rms := 0.0, math.Inf(-1)
	if len(sig) > 1 {
		freq = float64(crossings) / 2 / (float64(len(sig)) / float64(rate))
		rms = 20 * math.Log10(math.Sqrt(sq/float64(len(sig)))/32768)
	}
	return []string{"card", "0", "rate", strconv.Itoa(rate), "channels", "2", "format", "S16_LE",
		"frames", strconv.Itoa(frames), "sha256", hex.EncodeToString(sum[:]),
		"lead_silence", strconv.Itoa(start), "freq_hz", strconv.FormatFloat(freq, 'f', 1, 64),
		"rms_dbfs", strconv.FormatFloat(math.Max(rms, -200), 'f', 1, 64), "peak", strconv.Itoa(int(peak))}
}
