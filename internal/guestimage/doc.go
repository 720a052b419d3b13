// Package guestimage builds and caches the Linux test guest: Debian's
// kernel (linux-image-amd64, downloaded with apt-get, never installed)
// and an initramfs holding the guest agent as /init plus the kernel
// modules the agent loads.
//
// Typical use:
//
//	img, err := guestimage.Ensure(ctx, guestimage.Options{})
//	// img.Kernel, img.Initrd, img.Append go to qemu -kernel/-initrd/-append
//
// Ensure builds only what is missing. The image is keyed by the kernel
// package's version, the agent binary's sha256 (a static CGO_ENABLED=0
// build of internal/guestagent/init; Go builds are reproducible, so the
// binary changes exactly when its source or dependencies do) and
// BuilderVersion. A second Ensure with nothing changed rebuilds the
// agent from Go's build cache, compares, and touches no network.
//
// The kernel is booted uncompressed: Debian's vmlinuz is a bzImage whose
// xz payload the kernel itself decompresses, which under TCG costs
// seconds; the payload is an ELF vmlinux with a PVH entry note, which
// qemu boots directly with -kernel. The builder extracts it once per
// kernel version (with the xz program: the payload uses xz's x86 BCJ
// filter, which the pure-Go xz readers do not implement).
//
// The .deb carries no modules.dep; the builder reads each module's own
// .modinfo (depends=, softdep= pre:) to close the set the agent needs
// over its dependencies and writes a modules.dep for that subset, which
// the agent's loader (u-root's pkg/kmodule) reads. The initramfs is an
// uncompressed newc cpio written with u-root's pkg/cpio (an uncompressed
// archive costs the guest no decompression time).
//
// Cache layout under Dir (HARNESS_GUEST_DIR, default
// $XDG_CACHE_HOME/spice-harness/guest or ~/.cache/spice-harness/guest):
//
//	debs/                    downloaded .deb files
//	kernel-VERSION-HASH/     vmlinux, lib/modules/RELEASE/… (the module subset)
//	image-KEY/               initramfs.cpio, manifest.json
//	current.json             the manifest of the last image Ensure built or found
//
// Find reads current.json without building anything (package qemu's
// LinuxGuest option uses it).
package guestimage
