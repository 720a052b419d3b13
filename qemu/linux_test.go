package qemu

import (
	"errors"
	"strings"
	"testing"
)

func TestLinuxGuestOptions(t *testing.T) {
	_, err := newConfig(LinuxGuestFrom(t.TempDir()))
	if !errors.Is(err, ErrNoGuestImage) || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "make guest") {
		t.Errorf("unexpected error %v, want ErrNoGuestImage naming make guest", err)
	}
	c, err := newConfig(testLinuxGuest)
	if err != nil {
		t.Fatal(err)
	}
	if c.memoryMiB != LinuxGuestMemoryMiB {
		t.Errorf("memory %d MiB, want the Linux guest's default %d", c.memoryMiB, LinuxGuestMemoryMiB)
	}
	if a, _ := c.resolveAccel(); a != AccelTCG {
		t.Errorf("auto accelerator %s for the Linux guest, want tcg", a)
	}
	if c, _ := newConfig(testLinuxGuest, Memory(512)); c.memoryMiB != 512 {
		t.Errorf("Memory(512) lost to the Linux guest's default: %d", c.memoryMiB)
	}
	if _, err := newConfig(testLinuxGuest, Libvirt("qemu:///system")); !errors.Is(err, ErrUnsupported) {
		t.Errorf("unexpected error %v for the Linux guest on libvirt, want ErrUnsupported", err)
	}
}
