package spice

import (
	"context"
	"fmt"
	"sync"
)

// Audio data modes (audio_data_mode, a u16 on the wire) and formats
// (audio_fmt, u16).
const (
	AudioModeInvalid uint16 = 0
	AudioModeRaw     uint16 = 1 // 16-bit little-endian PCM
	AudioModeCELT    uint16 = 2
	AudioModeOpus    uint16 = 3

	AudioFormatS16 uint16 = 1
)

// PlaybackMode is SPICE_MSG_PLAYBACK_MODE: u32 time, u16 mode, data.
// spice-server sends it right after the link with the mode it will use:
// Opus when the client offered CapPlaybackOpus, raw PCM when it offered
// no codec (qemu 7.2: mode 3 for spice-gtk's caps 0xe).
type PlaybackMode struct {
	Time uint32
	Mode uint16
	Data []byte
}

// Marshal encodes the body (also SPICE_MSGC_RECORD_MODE's).
func (p PlaybackMode) Marshal() []byte {
	return append(le.AppendUint16(le.AppendUint32(nil, p.Time), p.Mode), p.Data...)
}

// ParsePlaybackMode decodes a PLAYBACK_MODE or RECORD_MODE body.
func ParsePlaybackMode(b []byte) (PlaybackMode, error) {
	if len(b) < 6 {
		return PlaybackMode{}, fmt.Errorf("%w: audio MODE of %d bytes", ErrMalformed, len(b))
	}
	return PlaybackMode{Time: le.Uint32(b), Mode: le.Uint16(b[4:]), Data: b[6:]}, nil
}

// AudioStart is SPICE_MSG_PLAYBACK_START (u32 channels, u16 format, u32
// frequency, u32 time: 14 bytes) or SPICE_MSG_RECORD_START (the same
// without time: 10 bytes). The guest opening its audio device sends it.
type AudioStart struct {
	Channels  uint32
	Format    uint16
	Frequency uint32
	Time      uint32 // playback only
}

// Marshal encodes a PLAYBACK_START body (withTime) or a RECORD_START one.
func (s AudioStart) Marshal(withTime bool) []byte {
	b := le.AppendUint32(le.AppendUint16(le.AppendUint32(nil, s.Channels), s.Format), s.Frequency)
	if withTime {
		b = le.AppendUint32(b, s.Time)
	}
	return b
}

// ParseAudioStart decodes a PLAYBACK_START (withTime) or RECORD_START body.
func ParseAudioStart(b []byte, withTime bool) (AudioStart, error) {
	want := 10
	if withTime {
		want = 14
	}
	if len(b) < want {
		return AudioStart{}, fmt.Errorf("%w: audio START of %d bytes, want %d", ErrMalformed, len(b), want)
	}
	s := AudioStart{Channels: le.Uint32(b), Format: le.Uint16(b[4:]), Frequency: le.Uint32(b[6:])}
	if withTime {
		s.Time = le.Uint32(b[10:])
	}
	return s, nil
}

// AudioPacket is SPICE_MSG_PLAYBACK_DATA or SPICE_MSGC_RECORD_DATA:
// u32 time, then the samples (PCM in raw mode).
type AudioPacket struct {
	Time uint32
	Data []byte
}

// Marshal encodes the body.
func (p AudioPacket) Marshal() []byte {
	b := make([]byte, 0, 4+len(p.Data))
	return append(le.AppendUint32(b, p.Time), p.Data...)
}

// ParseAudioPacket decodes the body (Data aliases b).
func ParseAudioPacket(b []byte) (AudioPacket, error) {
	if len(b) < 4 {
		return AudioPacket{}, fmt.Errorf("%w: audio DATA of %d bytes", ErrMalformed, len(b))
	}
	return AudioPacket{Time: le.Uint32(b), Data: b[4:]}, nil
}

// ParseAudioVolume decodes VOLUME: u8 channels, u16 per channel.
func ParseAudioVolume(b []byte) ([]uint16, error) {
	if len(b) < 1 || len(b) < 1+2*int(b[0]) {
		return nil, fmt.Errorf("%w: audio VOLUME of %d bytes", ErrMalformed, len(b))
	}
	v := make([]uint16, b[0])
	for i := range v {
		v[i] = le.Uint16(b[1+2*i:])
	}
	return v, nil
}

// audioState follows a playback or record channel's START, STOP and
// MODE on the reader, for the typed helpers.
type audioState struct {
	mu      sync.Mutex
	changed chan struct{}
	mode    *PlaybackMode
	start   *AudioStart
	starts  int
	stops   int
}

func (s *audioState) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *audioState) wait(ctx context.Context, c *Channel, cond func() bool) error {
	for {
		s.mu.Lock()
		if cond() {
			s.mu.Unlock()
			return nil
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-c.Done():
			return c.endErr()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Playback is a playback channel: START/STOP/MODE followed, DATA
// payloads (PCM in raw mode) collected as a byte stream.
type Playback struct {
	*Channel
	state audioState
	pcm   *streamBuf
}

// OpenPlayback links playback:0 offering VOLUME and LATENCY, plus Opus
// when opus is set (spice-gtk offers all three, caps 0xe). Without Opus
// spice-server sends raw 16-bit PCM.
func (s *Session) OpenPlayback(ctx context.Context, opus bool) (*Playback, error) {
	caps := CapsOf(CapPlaybackVolume, CapPlaybackLatency)
	if opus {
		caps = caps.With(CapPlaybackOpus)
	}
	p := &Playback{pcm: newStreamBuf()}
	p.state.changed = make(chan struct{})
	ch, err := s.open(ctx, ChannelPlayback, 0, dialOpts{caps: caps, setup: func(c *Channel) {
		c.tap = p.tap
		c.closers = append(c.closers, func() { p.pcm.finish(c.err) })
	}})
	if err != nil {
		return nil, err
	}
	p.Channel = ch
	return p, nil
}

func (p *Playback) tap(m Message) bool {
	st := &p.state
	switch m.Type {
	case MsgPlaybackData:
		if pk, err := ParseAudioPacket(m.Body); err == nil {
			p.pcm.write(pk.Data)
		}
		return true
	case MsgPlaybackMode:
		if md, err := ParsePlaybackMode(m.Body); err == nil {
			st.mu.Lock()
			st.mode = &md
			st.notify()
			st.mu.Unlock()
		}
	case MsgPlaybackStart:
		if s, err := ParseAudioStart(m.Body, true); err == nil {
			st.mu.Lock()
			st.start, st.starts = &s, st.starts+1
			st.notify()
			st.mu.Unlock()
		}
	case MsgPlaybackStop:
		st.mu.Lock()
		st.stops++
		st.notify()
		st.mu.Unlock()
	}
	return false
}

// Mode waits for PLAYBACK_MODE and returns it.
func (p *Playback) Mode(ctx context.Context) (PlaybackMode, error) {
	var m PlaybackMode
	err := p.state.wait(ctx, p.Channel, func() bool {
		if p.state.mode != nil {
			m = *p.state.mode
		}
		return p.state.mode != nil
	})
	return m, err
}

// Start waits for PLAYBACK_START (the guest opened its output).
func (p *Playback) Start(ctx context.Context) (AudioStart, error) {
	var s AudioStart
	err := p.state.wait(ctx, p.Channel, func() bool {
		if p.state.start != nil {
			s = *p.state.start
		}
		return p.state.start != nil
	})
	return s, err
}

// Stops is how many PLAYBACK_STOPs arrived.
func (p *Playback) Stops() int {
	p.state.mu.Lock()
	defer p.state.mu.Unlock()
	return p.state.stops
}

// WaitStops waits until n PLAYBACK_STOPs arrived (the guest closed its
// output n times).
func (p *Playback) WaitStops(ctx context.Context, n int) error {
	return p.state.wait(ctx, p.Channel, func() bool { return p.state.stops >= n })
}

// Buffered returns every DATA payload byte received and not read yet.
func (p *Playback) Buffered() []byte {
	b, _ := p.pcm.readFull(context.Background(), int(p.pcm.buffered()))
	return b
}

// ReadPCM reads n bytes of DATA payload (PCM in raw mode).
func (p *Playback) ReadPCM(ctx context.Context, n int) ([]byte, error) { return p.pcm.readFull(ctx, n) }

// Received is how many DATA payload bytes arrived.
func (p *Playback) Received() uint64 { return p.pcm.received() }

// Record is a record channel: the client sends what the guest records.
type Record struct {
	*Channel
	state audioState
}

// OpenRecord links record:0 offering VOLUME, plus Opus when opus is
// set (spice-gtk offers both, caps 0x6).
func (s *Session) OpenRecord(ctx context.Context, opus bool) (*Record, error) {
	caps := CapsOf(CapRecordVolume)
	if opus {
		caps = caps.With(CapRecordOpus)
	}
	r := &Record{}
	r.state.changed = make(chan struct{})
	ch, err := s.open(ctx, ChannelRecord, 0, dialOpts{caps: caps, setup: func(c *Channel) { c.tap = r.tap }})
	if err != nil {
		return nil, err
	}
	r.Channel = ch
	return r, nil
}

func (r *Record) tap(m Message) bool {
	st := &r.state
	switch m.Type {
	case MsgRecordStart:
		if s, err := ParseAudioStart(m.Body, false); err == nil {
			st.mu.Lock()
			st.start, st.starts = &s, st.starts+1
			st.notify()
			st.mu.Unlock()
		}
	case MsgRecordStop:
		st.mu.Lock()
		st.stops++
		st.notify()
		st.mu.Unlock()
	}
	return false
}

// WaitStart waits for RECORD_START (the guest opened its input).
func (r *Record) WaitStart(ctx context.Context) (AudioStart, error) {
	var s AudioStart
	err := r.state.wait(ctx, r.Channel, func() bool {
		if r.state.start != nil {
			s = *r.state.start
		}
		return r.state.start != nil
	})
	return s, err
}

// SendMode sends SPICE_MSGC_RECORD_MODE (what spice-gtk sends on
// RECORD_START, before START_MARK and the data).
func (r *Record) SendMode(time uint32, mode uint16) error {
	return r.Send(MsgcRecordMode, PlaybackMode{Time: time, Mode: mode}.Marshal())
}

// SendStartMark sends SPICE_MSGC_RECORD_START_MARK.
func (r *Record) SendStartMark(time uint32) error {
	return r.Send(MsgcRecordStartMark, le.AppendUint32(nil, time))
}

// SendPCM sends samples in RECORD_DATA messages of at most chunk bytes
// (0: 4096, about 21 ms of 48 kHz stereo).
func (r *Record) SendPCM(time uint32, pcm []byte, chunk int) error {
	if chunk <= 0 {
		chunk = 4096
	}
	for len(pcm) > 0 {
		k := min(len(pcm), chunk)
		if err := r.Send(MsgcRecordData, AudioPacket{Time: time, Data: pcm[:k]}.Marshal()); err != nil {
			return err
		}
		pcm = pcm[k:]
	}
	return nil
}
