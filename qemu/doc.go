// Package qemu runs one VM with a SPICE server for the harness: config to
// argv, launch, QMP (through go-qemu's qmp/raw), SPICE tickets, waits and
// shutdown, with a libvirt backend behind the same VM interface.
//
// Typical use:
//
//	vm, err := qemu.Start(ctx)  // built-in guest, TCG, SPICE on 127.0.0.1:<free port>
//	defer vm.Close()            // safe even when Start failed
//	if err != nil {
//		return err
//	}
//	if _, err := vm.SetTicket(ctx); err != nil { // until now every client was refused
//		return err
//	}
//	if err := vm.WaitFor(ctx, qemu.ForSPICE(), qemu.ForGuestPrompt()); err != nil {
//		return err
//	}
//	ep := vm.Endpoint() // uuid, name, SPICE address and ports, the ticket
//
// # What it does
//
// qemu starts with `-spice port=P,addr=127.0.0.1` and no password and no
// disable-ticketing, so spice-server has ticketing on and refuses every
// client until the harness calls SetTicket (QMP set_password). Tickets are
// 32 random [A-Za-z0-9] characters; they never appear in argv, in logs or
// in error messages. ExpireTicket refuses every new link; a later
// SetTicket or RotateTicket lifts the expiry (they send expire_password
// "never" after set_password, since set_password alone does not).
//
// Each VM has a short state dir, ROOT/sh-NNNN (unix socket paths stop at
// 107 bytes, so not t.TempDir()), holding the QMP socket, qemu's log
// (stdout+stderr), the serial log, the x509 dir for TLS, and an owner
// file. Dirs left by crashed runs (owner process gone) are swept at the
// first Start of a process, or with SweepStateDirs.
//
// SPICE ports: 0 (the default) means Start probes a free port, launches
// qemu on it and, if qemu fails to bind it anyway (another process took
// it), launches again on another; eight VMs started at once never collide.
//
// No orphans: qemu runs in its own process group with a parent-death
// signal (SIGKILL). Because that signal follows the OS thread that forked
// qemu, not the process, the fork happens on a goroutine locked to its own
// thread that lives exactly as long as qemu. A SIGKILLed harness thus
// leaves no qemu behind. Close is QMP quit, a wait, then SIGKILL to the
// group and a wait, on every path including a failed launch.
//
// QMP: go-qemu's SocketMonitor drops QMP's error class, has no deadline
// and can block its reader on events, so this package implements a small
// qmp.Monitor that keeps the class (*QMPError), matches replies by id, and
// never blocks on events; qmp/raw's typed calls run on top of it. Every
// call takes a context (DefaultQMPTimeout when it has no deadline) and
// returns at once with the *ExitError when qemu exits. Events (SHUTDOWN,
// SPICE_CONNECTED, …) are kept in a bounded history (Events, ForEvent) and
// fanned out to bounded subscriptions (Subscribe).
//
// The default guest is package fixtures/guest: a boot sector that prints
// guest.Banner and guest.Prompt on screen and COM1 and echoes keys, so a
// key sent with SendKeys (or through a SPICE inputs channel) shows up in
// the serial log.
//
// # Channels
//
// Every VM has main, display:0, inputs and cursor. Channels adds the
// rest as typed devices (AllChannels adds them all):
//
//	vm, err := qemu.Start(ctx, qemu.Channels(qemu.AgentChannel(), qemu.PortChannel("org.example.echo"), qemu.USBRedirChannels(2)))
//
// AgentChannel (virtio-serial port com.redhat.spice.0 on a spicevmc
// chardev), PortChannel and WebDAVChannel (spiceport chardevs and ports
// of the same name), USBRedirChannels (usb-redir on spicevmc, on a
// qemu-xhci bus), SmartcardChannel (usb-ccid and ccid-card-passthru),
// AudioChannels (-audiodev spice, intel-hda, hda-duplex), DisplayHeads
// (secondary qxl devices: one display channel, and one cursor channel,
// each), StreamingVideo (-spice streaming-video=) and Tablet
// (usb-tablet). Chardev and device ids come from one allocator in argv
// order; the libvirt backend writes the same devices as domain XML
// (channel, redirdev, smartcard, sound and audio, video, input,
// graphics/streaming). spice-server numbers channels of one type in
// device order (usbredir:0, usbredir:1, …).
//
// # Accelerator
//
// AccelAuto (the default) picks TCG for the built-in guest: measured on
// the CI machine kind (itself a VM), the guest prints its prompt 0.16 s
// after exec under TCG and 2.9 s under nested KVM. For any other disk it
// picks KVM when /dev/kvm is usable, else TCG. The choice and the reason
// are logged (see Logger), and String() names the accelerator.
//
// # Environment
//
// Explicit options always beat the environment, which beats the
// defaults. Variables read (all with the HARNESS_ prefix):
//
//	HARNESS_QEMU       qemu binary (path or name in PATH); option Binary. Default: qemu-system-x86_64 from PATH.
//	HARNESS_ACCEL      auto | kvm | tcg; option Accel. Default: auto.
//	HARNESS_STATE_DIR  root of the per-VM state dirs and of the cached guest image; option StateRoot. Default: os.TempDir().
//	HARNESS_KEEP       "1" keeps state dirs after Close, for debugging (the next run's sweep removes them). No option.
//
// An invalid value fails Start with a *ConfigError naming the variable.
//
// # libvirt backend
//
// With Libvirt(uri) the VM is a transient libvirt domain on the libvirtd
// at uri (unix socket or TCP), created with go-libvirt: SPICE graphics on
// the SPICE address with autoport, its port read back from the live
// domain XML, QMP through libvirt's qemu-monitor-command, events through
// libvirt's QMP event stream. The domain is created with the autodestroy
// flag, so it dies with the harness's libvirt connection. See Domain for
// what differs. libvirt runs qemu as libvirt-qemu: the state dirs are
// mode 0711 and the built-in guest is copied into them, so nothing else
// needs to be readable by that user. When /dev/kvm exists but that user
// cannot open it (no udev: mode 0600), libvirt 9 re-probes qemu's
// capabilities on every lookup and a domain takes over a minute to
// start; scripts/services.sh must make /dev/kvm 0666 as Debian's udev
// rule does.
//
// With RemoteHost the libvirtd is on another machine and nothing of the
// VM is on this one's filesystem: the guest image is uploaded into a
// storage pool there (virStorageVolUpload, once per image content; each
// VM boots a qcow2 overlay of its own), the serial port is a pty whose
// output comes back over the libvirt connection into the local serial
// log, and the host's name is in String() and the Endpoint. HostTLS uses
// the TLS port that host's libvirtd opens with its own certificate. A
// lost connection to the host (libvirtd killed, network cut) ends the VM
// at once with an *ExitError matching ErrHostLost.
//
// # What it is not
//
// Not a general VM manager: one disk, no network, no graphics window. It
// does not speak SPICE (package proxy/spice does); ForSPICE only checks
// that the port accepts connections and that query-spice is right. It
// knows nothing of sources.yaml or of the proxy: Endpoint is plain data,
// and package harness turns it into a sources.yaml console. Its one
// dependency inside this module besides internal helpers is the built-in
// guest (package fixtures/guest, which imports nothing of this module):
// being the default disk is what lets Start boot, with no option at
// all, a VM that ForGuestPrompt and SendKeys can check.
package qemu
