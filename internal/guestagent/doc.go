// Package guestagent is the Linux test guest's agent: the program the
// initramfs runs as /init (main package ./init). It mounts devtmpfs,
// proc and sysfs, loads the kernel modules the image lists, finds the
// virtio-serial ports by name, and reports on the serial console, one
// guestproto event line per thing that happened: ready (what it found),
// keys and pointer motion (evdev), bytes on the echo port (echoed back),
// USB devices and what was read from USB storage, monitor configuration
// per display head, captured audio, a smartcard's ATR. The harness
// commands it over the org.spice-harness.control port, one guestproto
// command line at a time (draw a picture on a head, play or capture
// audio, write to a port, read a medium again, …); each command is
// answered with an ack event.
//
// The SPICE agent port (com.redhat.spice.0) and the WebDAV port are
// served by packages of their own, handed to Run in Config; they report
// through the same Reporter.
//
// Everything is done in Go through the kernel's interfaces (DRM dumb
// buffers, evdev, ALSA PCM ioctls, usbfs, netlink uevents): the image
// carries no other program. It is not a general init: it never exits,
// reaps nothing but its own work, and has no shell.
package guestagent
