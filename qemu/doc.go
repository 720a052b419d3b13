// Package qemu runs one VM: config to argv, launch, QMP through go-qemu,
// SPICE tickets, waits and shutdown, plus a libvirt backend behind the
// same interface.
package qemu
