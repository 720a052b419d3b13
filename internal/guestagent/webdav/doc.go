// Package webdav is the guest end of the SPICE WebDAV channel, what
// spice-webdavd does in a guest, for the Linux test guest's agent: it
// multiplexes WebDAV requests to the client's shared folder over the
// org.spice-space.webdav.0 virtio port and reports what it read.
//
// Typical use in the guest agent:
//
//	port, _ := os.OpenFile("/dev/virtio-ports/org.spice-space.webdav.0", os.O_RDWR, 0)
//	c := webdav.New(ctx, port, reporter)
//	data, err := c.Read(ctx, "/hello.txt")        // GET, reported as path, len and sha256
//	names, err := c.List(ctx, "/")                // PROPFIND Depth: 1
//
// The framing, read in phodav's spice-webdavd.c (the guest daemon) and
// spice-gtk's channel-webdav.c (the client): every forwarded connection
// gets a 64-bit client id; each direction is a byte stream of frames
// "i64 id, u16 size, size bytes" (little-endian; spice-webdavd writes
// its structs raw, spice-gtk converts from little-endian), at most
// 65535 bytes each; a client id the client has not seen starts a new
// connection to its WebDAV server (phodav), and a frame of size 0 closes
// the connection, from either side. Where spice-webdavd accepts local
// TCP clients and forwards their bytes, this package makes each request
// a client of its own: it writes the HTTP request, reads the response
// and sends the size-0 frame.
//
// It is not a WebDAV client library: GET and PROPFIND are what the
// harness needs, and Do sends any other request.
package webdav
