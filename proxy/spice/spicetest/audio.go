package spicetest

import (
	"errors"
	"sync"

	"github.com/spiceharness/spiceharness/proxy/spice"
)

// audio is the playback and record side of the test server (Audio).
type audio struct {
	mu       sync.Mutex
	playback *serverChannel
	record   *serverChannel
	recMode  uint16
	recMarks int
	recPCM   []byte
}

// ErrNoChannel: no client has the channel linked.
var ErrNoChannel = errors.New("spicetest: no client on that channel")

// playbackFrames is the PCM of one PLAYBACK_DATA (10 ms of 48 kHz
// stereo S16, as qemu's spice audio backend sends).
const playbackFrames = 480 * 4

// PlayPCM plays 48 kHz stereo S16 PCM to the linked playback channel:
// START, DATA messages, STOP.
func (s *Server) PlayPCM(pcm []byte) error {
	s.audio.mu.Lock()
	ch := s.audio.playback
	s.audio.mu.Unlock()
	if ch == nil {
		return ErrNoChannel
	}
	start := spice.AudioStart{Channels: 2, Format: spice.AudioFormatS16, Frequency: 48000}
	if err := ch.w.WriteMessage(spice.MsgPlaybackStart, start.Marshal(true)); err != nil {
		return err
	}
	for t := uint32(0); len(pcm) > 0; t += 10 {
		k := min(len(pcm), playbackFrames)
		if err := ch.w.WriteMessage(spice.MsgPlaybackData, spice.AudioPacket{Time: t, Data: pcm[:k]}.Marshal()); err != nil {
			return err
		}
		pcm = pcm[k:]
	}
	return ch.w.WriteMessage(spice.MsgPlaybackStop, nil)
}

// StartRecord sends RECORD_START (48 kHz stereo S16) to the linked
// record channel, as qemu does when the guest opens its input.
func (s *Server) StartRecord() error {
	s.audio.mu.Lock()
	ch := s.audio.record
	s.audio.mu.Unlock()
	if ch == nil {
		return ErrNoChannel
	}
	start := spice.AudioStart{Channels: 2, Format: spice.AudioFormatS16, Frequency: 48000}
	return ch.w.WriteMessage(spice.MsgRecordStart, start.Marshal(false))
}

// Recorded returns the record mode the client set, how many START_MARKs
// it sent and the samples it sent so far.
func (s *Server) Recorded() (mode uint16, marks int, pcm []byte) {
	s.audio.mu.Lock()
	defer s.audio.mu.Unlock()
	return s.audio.recMode, s.audio.recMarks, append([]byte(nil), s.audio.recPCM...)
}

// attachAudio sends what spice-server sends at link: playback gets MODE
// (Opus when the client offered it, else raw PCM).
func (s *Server) attachAudio(ch *serverChannel) {
	s.audio.mu.Lock()
	defer s.audio.mu.Unlock()
	switch ch.typ {
	case spice.ChannelPlayback:
		s.audio.playback = ch
		mode := spice.AudioModeRaw
		if ch.caps.Has(spice.CapPlaybackOpus) {
			mode = spice.AudioModeOpus
		}
		ch.w.WriteMessage(spice.MsgPlaybackMode, spice.PlaybackMode{Mode: mode}.Marshal())
	case spice.ChannelRecord:
		s.audio.record = ch
	}
}

func (s *Server) detachAudio(ch *serverChannel) {
	s.audio.mu.Lock()
	defer s.audio.mu.Unlock()
	if s.audio.playback == ch {
		s.audio.playback = nil
	}
	if s.audio.record == ch {
		s.audio.record = nil
	}
}

// recordMessage takes one client message on a record channel.
func (s *Server) recordMessage(m spice.Message) {
	defer s.changed()
	s.audio.mu.Lock()
	defer s.audio.mu.Unlock()
	switch m.Type {
	case spice.MsgcRecordMode:
		if md, err := spice.ParsePlaybackMode(m.Body); err == nil {
			s.audio.recMode = md.Mode
		}
	case spice.MsgcRecordStartMark:
		s.audio.recMarks++
	case spice.MsgcRecordData:
		if p, err := spice.ParseAudioPacket(m.Body); err == nil {
			s.audio.recPCM = append(s.audio.recPCM, p.Data...)
		}
	}
}
