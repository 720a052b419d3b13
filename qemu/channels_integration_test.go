package qemu_test

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/qemu"
)

// everyChannel is what a VM with qemu.AllChannels lists in
// CHANNELS_LIST (qemu 7.2; the order varies): each display head has a
// cursor channel of its own, and main is never listed.
var everyChannel = []spice.ChannelID{
	{Type: spice.ChannelDisplay}, {Type: spice.ChannelDisplay, ID: 1}, {Type: spice.ChannelInputs},
	{Type: spice.ChannelCursor}, {Type: spice.ChannelCursor, ID: 1}, {Type: spice.ChannelPlayback},
	{Type: spice.ChannelRecord}, {Type: spice.ChannelSmartcard}, {Type: spice.ChannelUsbredir},
	{Type: spice.ChannelUsbredir, ID: 1}, {Type: spice.ChannelPort}, {Type: spice.ChannelWebdav},
}

func sortIDs(ids []spice.ChannelID) []spice.ChannelID {
	ids = slices.Clone(ids)
	slices.SortFunc(ids, func(a, b spice.ChannelID) int {
		if a.Type != b.Type {
			return int(a.Type) - int(b.Type)
		}
		return int(a.ID) - int(b.ID)
	})
	return ids
}

// TestIntegrationEveryChannel: a VM with AllChannels lists every
// channel type qemu has; the Go client links each one directly, qemu
// reports them all connected, and each says what spice-server says
// first: playback MODE (raw PCM when the client offers no codec), the
// usbredir hello, PORT_INIT with the port's name on port and webdav,
// SET_ACK on display:1, CURSOR_INIT, INPUTS_INIT, and the smartcard's
// answer to READER_ADD.
func TestIntegrationEveryChannel(t *testing.T) {
	vm := startVM(t, qemu.AllChannels())
	checkEveryChannel(t, vm)
}

// TestIntegrationLibvirtEveryChannel: the same devices as a libvirt
// domain give the same channels.
func TestIntegrationLibvirtEveryChannel(t *testing.T) {
	vm := startDomain(t, "qemu:///system", qemu.AllChannels())
	checkEveryChannel(t, vm)
}

func checkEveryChannel(t *testing.T, vm qemu.VM) {
	start := time.Now()
	ctx := ctxT(t, 60*time.Second)
	ticket, err := vm.SetTicket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ep := vm.Endpoint()
	s, err := (&spice.Dialer{Host: ep.HostIP, Port: ep.Port, Password: ticket}).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	list, err := s.ChannelsList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sortIDs(everyChannel), sortIDs(list)); diff != "" {
		t.Fatalf("unexpected CHANNELS_LIST (-want +got):\n%s", diff)
	}
	first := map[spice.ChannelID]string{}
	check := func(id spice.ChannelID, what string, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%v: %s: %v", id, what, err)
			return
		}
		first[id] = what
	}
	for _, id := range list {
		switch id.Type {
		case spice.ChannelPlayback:
			pb, err := s.OpenPlayback(ctx, false)
			if err != nil {
				check(id, "link", err)
				continue
			}
			m, err := pb.Mode(ctx)
			if err == nil && m.Mode != spice.AudioModeRaw {
				err = fmt.Errorf("MODE %d, want raw (%d) without Opus", m.Mode, spice.AudioModeRaw)
			}
			check(id, "MODE raw", err)
		case spice.ChannelUsbredir:
			v, err := s.OpenVMC(ctx, id.Type, id.ID)
			if err != nil {
				check(id, "link", err)
				continue
			}
			// usbredir's hello: header (type 0 = hello, length, id), then a
			// 64-byte version string.
			hello, err := v.ReadFull(ctx, 12+64)
			if err == nil && (!bytes.Equal(hello[:4], []byte{0, 0, 0, 0}) || !bytes.HasPrefix(hello[12:], []byte("qemu usb-redir guest"))) {
				err = fmt.Errorf("not a usbredir hello: % x", hello)
			}
			check(id, "usbredir hello", err)
		case spice.ChannelPort:
			p, err := s.OpenPort(ctx, qemu.EchoPortName)
			if err == nil && p.ID != id {
				err = fmt.Errorf("found on %v", p.ID)
			}
			check(id, "PORT_INIT "+qemu.EchoPortName, err)
		case spice.ChannelWebdav:
			p, err := s.OpenWebDAV(ctx)
			if err == nil && p.Init.Name != qemu.WebDAVPortName {
				err = fmt.Errorf("PORT_INIT names %q", p.Init.Name)
			}
			check(id, "PORT_INIT "+qemu.WebDAVPortName, err)
		case spice.ChannelDisplay:
			d, err := s.OpenDisplay(ctx, id.ID)
			if err != nil {
				check(id, "link", err)
				continue
			}
			_, err = d.WaitFor(ctx, spice.MsgSetAck)
			check(id, "SET_ACK", err)
		case spice.ChannelSmartcard:
			sc, err := s.OpenSmartcard(ctx)
			if err != nil {
				check(id, "link", err)
				continue
			}
			// spice-server attaches the client to the card and answers
			// READER_ADD with ERROR code 0 (VSC_SUCCESS).
			sc.SendVSC(spice.VSCMessage{Type: spice.VSCReaderAdd, Data: []byte("harness\x00")})
			m, err := sc.RecvVSC(ctx)
			if err == nil && (m.Type != spice.VSCError || !bytes.Equal(m.Data, []byte{0, 0, 0, 0})) {
				err = fmt.Errorf("answer %+v, want ERROR 0", m)
			}
			check(id, "READER_ADD answered", err)
		default:
			ch, err := s.Open(ctx, id.Type, id.ID)
			if err != nil {
				check(id, "link", err)
				continue
			}
			want := map[spice.ChannelType]uint16{spice.ChannelCursor: spice.MsgCursorInit, spice.ChannelInputs: spice.MsgInputsInit, spice.ChannelRecord: spice.MsgPing}[id.Type]
			_, err = ch.WaitFor(ctx, want)
			check(id, fmt.Sprint("message ", want), err)
		}
	}
	info, err := vm.QuerySpice(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var connected []spice.ChannelID
	for _, c := range info.Channels {
		if c.ChannelType != int64(spice.ChannelMain) {
			connected = append(connected, spice.ChannelID{Type: spice.ChannelType(c.ChannelType), ID: uint8(c.ChannelID)})
		}
	}
	if diff := cmp.Diff(sortIDs(everyChannel), sortIDs(connected)); diff != "" {
		t.Errorf("unexpected channels connected per query-spice (-want +got):\n%s", diff)
	}
	t.Logf("%d channels linked and checked in %v: %v", len(first), time.Since(start).Round(time.Millisecond), first)
}
