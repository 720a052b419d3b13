package spice

import (
	"context"
	"fmt"
	"sync"
)

// Mouse buttons (mouse_button, a u8) and the button state mask
// (mouse_button_mask, a u16) of the inputs channel.
const (
	MouseButtonLeft   uint8 = 1
	MouseButtonMiddle uint8 = 2
	MouseButtonRight  uint8 = 3
	MouseButtonUp     uint8 = 4 // wheel
	MouseButtonDown   uint8 = 5

	ButtonMaskLeft   uint16 = 1 << 0
	ButtonMaskMiddle uint16 = 1 << 1
	ButtonMaskRight  uint16 = 1 << 2
)

// MotionAckBunch is SPICE_INPUT_MOTION_ACK_BUNCH: spice-server sends
// one MOUSE_MOTION_ACK per 4 MOUSE_MOTION or MOUSE_POSITION messages.
// spice-gtk stops sending motion while 2 bunches are un-ACKed; Inputs
// waits instead.
const MotionAckBunch = 4

// MarshalMouseMotion encodes SPICE_MSGC_INPUTS_MOUSE_MOTION (server
// mouse mode): i32 dx, i32 dy, u16 buttons.
func MarshalMouseMotion(dx, dy int32, buttons uint16) []byte {
	return le.AppendUint16(le.AppendUint32(le.AppendUint32(nil, uint32(dx)), uint32(dy)), buttons)
}

// MarshalMousePosition encodes SPICE_MSGC_INPUTS_MOUSE_POSITION (client
// mouse mode): u32 x, u32 y, u16 buttons, u8 display id.
func MarshalMousePosition(x, y uint32, buttons uint16, display uint8) []byte {
	return append(le.AppendUint16(le.AppendUint32(le.AppendUint32(nil, x), y), buttons), display)
}

// MarshalMouseButton encodes MOUSE_PRESS or MOUSE_RELEASE: u8 button,
// u16 buttons held after the event.
func MarshalMouseButton(button uint8, buttons uint16) []byte {
	return le.AppendUint16([]byte{button}, buttons)
}

// Inputs is an inputs channel with the mouse: motion and positions wait
// for the server's motion ACKs as spice-gtk's window does, and buttons
// keep the held mask.
type Inputs struct {
	*Channel

	mu      sync.Mutex
	changed chan struct{}
	sent    uint64 // motions and positions sent
	acked   uint64 // motions the server ACKed (MotionAckBunch each)
	buttons uint16
}

// OpenInputs links inputs:0 with the mouse helpers.
func (s *Session) OpenInputs(ctx context.Context) (*Inputs, error) {
	in := &Inputs{changed: make(chan struct{})}
	ch, err := s.open(ctx, ChannelInputs, 0, dialOpts{setup: func(c *Channel) { c.tap = in.tap }})
	if err != nil {
		return nil, err
	}
	in.Channel = ch
	return in, nil
}

func (in *Inputs) tap(m Message) bool {
	if m.Type == MsgInputsMouseMotionAck {
		in.mu.Lock()
		in.acked += MotionAckBunch
		close(in.changed)
		in.changed = make(chan struct{})
		in.mu.Unlock()
	}
	return false
}

// waitWindow waits until fewer than 2 × MotionAckBunch motions are
// un-ACKed, then counts one more.
func (in *Inputs) waitWindow(ctx context.Context) error {
	for {
		in.mu.Lock()
		if in.sent < in.acked+2*MotionAckBunch {
			in.sent++
			in.mu.Unlock()
			return nil
		}
		ch := in.changed
		in.mu.Unlock()
		select {
		case <-ch:
		case <-in.Done():
			return in.endErr()
		case <-ctx.Done():
			return fmt.Errorf("spice: waiting for MOUSE_MOTION_ACK: %w", ctx.Err())
		}
	}
}

// MotionAcked reports motions (and positions) sent and ACKed so far.
func (in *Inputs) MotionAcked() (sent, acked uint64) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.sent, in.acked
}

// Motion moves the mouse by dx, dy (server mouse mode).
func (in *Inputs) Motion(ctx context.Context, dx, dy int32) error {
	if err := in.waitWindow(ctx); err != nil {
		return err
	}
	return in.Send(MsgcInputsMouseMotion, MarshalMouseMotion(dx, dy, in.held()))
}

// Position puts the mouse at x, y of a display (client mouse mode; the
// server ignores positions in server mode).
func (in *Inputs) Position(ctx context.Context, x, y uint32, display uint8) error {
	if err := in.waitWindow(ctx); err != nil {
		return err
	}
	return in.Send(MsgcInputsMousePosition, MarshalMousePosition(x, y, in.held(), display))
}

func (in *Inputs) held() uint16 {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.buttons
}

func buttonMask(b uint8) uint16 {
	switch b {
	case MouseButtonLeft:
		return ButtonMaskLeft
	case MouseButtonMiddle:
		return ButtonMaskMiddle
	case MouseButtonRight:
		return ButtonMaskRight
	}
	return 0
}

// Press presses a mouse button.
func (in *Inputs) Press(button uint8) error {
	in.mu.Lock()
	in.buttons |= buttonMask(button)
	held := in.buttons
	in.mu.Unlock()
	return in.Send(MsgcInputsMousePress, MarshalMouseButton(button, held))
}

// Release releases a mouse button.
func (in *Inputs) Release(button uint8) error {
	in.mu.Lock()
	in.buttons &^= buttonMask(button)
	held := in.buttons
	in.mu.Unlock()
	return in.Send(MsgcInputsMouseRelease, MarshalMouseButton(button, held))
}

// Click presses and releases a button.
func (in *Inputs) Click(button uint8) error {
	if err := in.Press(button); err != nil {
		return err
	}
	return in.Release(button)
}
