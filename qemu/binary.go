package qemu

// FindBinary resolves the qemu binary Start would run with opts: the
// Binary option, then HARNESS_QEMU, then qemu-system-x86_64 (or qemu-kvm)
// in PATH. Its error says what to install or set. With the Libvirt
// option libvirtd picks the binary, and FindBinary returns "" and nil.
func FindBinary(opts ...Option) (string, error) {
	c, err := newConfig(opts...)
	if err != nil {
		return "", err
	}
	if c.libvirtURI != "" {
		return "", nil
	}
	return c.resolveBinary()
}
