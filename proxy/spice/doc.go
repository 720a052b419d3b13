// Package spice implements the SPICE wire protocol a proxy and a test
// client need: link messages, ticket crypto, data headers, common
// messages, and a Go SPICE client.
//
// # Channels
//
// A Session is a linked main channel; Open links any other channel raw
// (every message to Recv), and the typed opens decode theirs on the
// channel's reader, before the drop-oldest Recv queue, so no payload is
// lost however slowly a test reads:
//
//	s, _ := d.Connect(ctx)
//	ag, _ := s.Agent(ctx)                      // main: the guest's agent
//	ag.SetClipboard(ctx, []byte("hi"))          // grab; requests answered
//	got, _ := ag.GuestClipboard(ctx)            // the guest's grab, requested
//	ag.SendFile(ctx, "f.bin", r, size)          // START, DATA, final STATUS
//	p, _ := s.OpenPort(ctx, "org.example.echo") // port channel by name
//	p.Write(data); p.ReadFull(ctx, len(data))   // SPICEVMC_DATA both ways
//	pb, _ := s.OpenPlayback(ctx, false)         // raw PCM: no Opus offered
//	in, _ := s.OpenInputs(ctx)                  // mouse, paced by motion ACKs
//	d1, _ := s.OpenDisplay(ctx, 1)              // second head, DISPLAY_INIT sent
//
// What each typed channel knows:
//
//   - Agent (main): AGENT_START grants the server DefaultAgentTokens
//     AGENT_DATA ahead, returned with AGENT_TOKEN as they are read
//     (spice-gtk grants ~0, no flow control); every AGENT_DATA the
//     client sends waits for one of the server's tokens (MAIN_INIT's
//     agent_tokens, AGENT_CONNECTED_TOKENS, then AGENT_TOKEN: 10 from
//     spice-server). Agent messages travel in AGENT_DATA pieces of at
//     most 2048 bytes, a new message starting a new piece (spice-server
//     drops a client that breaks this). Clipboard messages carry a
//     selection byte and the grab a serial only when both ends
//     announced those caps. spice-server hands MONITORS_CONFIG to the
//     display devices instead of the agent when every one has a guest
//     driver taking client monitor configs (SendMonitors then;
//     SetMonitors waits for the agent's REPLY).
//   - VMC (usbredir, port, webdav): the DATA payloads as a byte stream;
//     links without LZ4 so no COMPRESSED_DATA comes. Port adds
//     PORT_INIT (u32 name size with NUL, u32 offset 9, u8 opened, name)
//     and PORT_EVENT (the guest opening or closing its virtio port).
//     ShareFolder serves WebDAV over webdav:0 in spice-webdavd's frames.
//   - Playback and Record: spice-server sends MODE at link, raw PCM
//     when the client offered neither Opus nor CELT; START when the
//     guest opens its device. Record sends MODE, START_MARK and DATA.
//   - Inputs: MOUSE_MOTION (server mouse mode) and MOUSE_POSITION
//     (client mode) wait while two bunches of four are un-ACKed, as
//     spice-gtk's window does. spice-server (reds.cpp) offers client
//     mode through a USB tablet only with exactly one display channel;
//     with an agent attached it offers it through the agent instead,
//     and positions then reach the agent as VD_AGENT_MOUSE_STATE, not
//     the tablet (both seen against qemu 7.2 and the Linux guest).
//   - Display: streams (CREATE, DATA, DATA_SIZED, DESTROY) and the
//     latest surface are counted; every message still reaches Recv.
//   - Smartcard: VSC messages (12-byte little-endian header);
//     spice-server answers READER_ADD with ERROR 0.
//
// Channel ids follow CHANNELS_LIST, which Session.ChannelsList caches:
// qemu 7.2 with every device lists display, cursor (one per head),
// inputs, playback, record, smartcard, usbredir (one per device), port
// and webdav. Package spicetest offers the same channels (agent relay,
// spicevmc devices, audio) for unit tests.
package spice
