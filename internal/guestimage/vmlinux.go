package guestimage

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
)

// Offsets in the x86 boot protocol's setup header (Documentation/x86/boot).
const (
	offSetupSects    = 0x1f1
	offHeaderMagic   = 0x202 // "HdrS"
	offPayloadOffset = 0x248
	offPayloadLength = 0x24c
)

var xzMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0}

// bzPayload returns the compressed kernel inside a bzImage.
func bzPayload(bz []byte) ([]byte, error) {
	if len(bz) < 0x250 || string(bz[offHeaderMagic:offHeaderMagic+4]) != "HdrS" {
		return nil, errors.New("not a bzImage (no HdrS setup header)")
	}
	setup := int(bz[offSetupSects])
	if setup == 0 {
		setup = 4
	}
	start := (setup+1)*512 + int(binary.LittleEndian.Uint32(bz[offPayloadOffset:]))
	n := int(binary.LittleEndian.Uint32(bz[offPayloadLength:]))
	if start < 0 || n <= 0 || start+n > len(bz) {
		return nil, fmt.Errorf("payload %d+%d outside the %d-byte bzImage", start, n, len(bz))
	}
	return bz[start : start+n], nil
}

// extractVmlinux writes the ELF kernel inside a bzImage to dst and
// checks that qemu can boot it directly (a PVH entry note).
func extractVmlinux(ctx context.Context, bzImage, dst string) error {
	bz, err := os.ReadFile(bzImage)
	if err != nil {
		return fmt.Errorf("guestimage: %w", err)
	}
	payload, err := bzPayload(bz)
	if err != nil {
		return fmt.Errorf("guestimage: %s: %w", bzImage, err)
	}
	if !bytes.HasPrefix(payload, xzMagic) {
		return fmt.Errorf("guestimage: %s: the payload is not xz (magic % x): the builder handles Debian's xz kernels only", bzImage, payload[:min(6, len(payload))])
	}
	out, err := os.Create(dst + ".tmp")
	if err != nil {
		return err
	}
	defer os.Remove(dst + ".tmp")
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "xz", "--decompress", "--stdout", "--single-stream")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(payload), out, &stderr
	err = cmd.Run()
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("guestimage: xz -d the kernel of %s: %v: %s (install xz-utils)", bzImage, err, bytes.TrimSpace(stderr.Bytes()))
	}
	if err := checkPVH(dst + ".tmp"); err != nil {
		return fmt.Errorf("guestimage: %s: %w", bzImage, err)
	}
	return os.Rename(dst+".tmp", dst)
}

// xenElfnotePhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY: the PVH entry point
// qemu's -kernel uses for an ELF kernel.
const xenElfnotePhys32Entry = 18

// checkPVH makes sure path is an x86-64 ELF with a Xen PVH entry note.
func checkPVH(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("the uncompressed kernel is not ELF: %w", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("the uncompressed kernel is %v, want x86-64", f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		b, err := io.ReadAll(p.Open())
		if err != nil {
			return err
		}
		if hasNote(b, "Xen", xenElfnotePhys32Entry) {
			return nil
		}
	}
	return errors.New("the uncompressed kernel has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY): qemu cannot boot it with -kernel; it needs CONFIG_PVH=y")
}

// hasNote walks ELF notes (namesz, descsz, type, name, desc; 4-aligned).
func hasNote(b []byte, name string, typ uint32) bool {
	for len(b) >= 12 {
		nsz := int(binary.LittleEndian.Uint32(b[0:]))
		dsz := int(binary.LittleEndian.Uint32(b[4:]))
		t := binary.LittleEndian.Uint32(b[8:])
		b = b[12:]
		na, da := (nsz+3)&^3, (dsz+3)&^3
		if na+da > len(b) {
			return false
		}
		if t == typ && nsz > 0 && string(bytes.TrimRight(b[:nsz], "\x00")) == name {
			return true
		}
		b = b[na+da:]
	}
	return false
}
