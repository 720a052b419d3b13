// Package vdagent is the guest end of the SPICE agent protocol, what
// spice-vdagent does in a Linux guest, over the com.redhat.spice.0
// virtio port, for the Linux test guest's agent. It is pure protocol:
// it reads and writes the port it is given and reports what arrives.
//
// Typical use in the guest agent:
//
//	port, _ := os.OpenFile("/dev/virtio-ports/com.redhat.spice.0", os.O_RDWR, 0)
//	ag := vdagent.Serve(ctx, port, reporter)
//	ag.SetClipboard([]byte("from the guest"), "text/plain") // the client may now paste it
//	<-ag.Done()
//
// What it speaks: VDIChunkHeader framing (port 1 the client, port 2
// spice-server; chunks it reads are at most 2048 bytes, as
// spice-vdagent insists; it writes each message as one chunk, which
// spice-server cuts for the client), capability announcement (it
// answers a client's request, resetting the clipboard grab serials),
// clipboard both ways by demand (a client's grab is answered with an
// immediate request for the first type offered; the client's requests
// are answered from SetClipboard), file transfer receive with status
// replies (CAN_SEND_DATA, then SUCCESS once size bytes arrived, ERROR
// past that), monitors config (reported per head and answered with a
// REPLY), VD_AGENT_MOUSE_STATE (spice-server routes client-mode mouse
// positions to the agent instead of the tablet whenever an agent is
// attached), and CLIENT_DISCONNECTED from spice-server.
//
// It reports through a Reporter, one event per thing that happened,
// with the event types below; data is reported as its length and
// sha256, never as the bytes. Received files are hashed and counted,
// and written to disk only when Options.FileDir is set.
//
// It is not spice-vdagent: no X11, no uinput, no session agent; the
// guest agent wires what it reports to the serial console.
package vdagent
