// Package testhosts makes extra hypervisor hosts on this machine for
// tests, and removes them after: each host is a network namespace joined
// to the root namespace by a veth pair, with a libvirtd of its own
// (and its own virtlogd) listening on the namespace's address.
//
// Typical use, in a test:
//
//	rig := testhosts.Start(t, testhosts.Options{Hosts: 2}) // skips where namespaces cannot be made
//	path := rig.WriteHostsFile(t.TempDir())                // a hosts.yaml naming both hosts
//	env := harness.Start(t, harness.WithHosts(must(harness.LoadHosts(path))))
//	rig.KillLibvirtd(1)                                    // a host going away
//
// and for a person, scripts/testhosts.sh up|down (the same code through
// the small command in testhostsctl).
//
// # What a host is
//
//   - A network namespace PREFIX-ID-K with a veth pair: the root side
//     (PREFIXIDxK) has 198.18.X.(4k+1)/30, the namespace side 198.18.X.(4k+2)/30.
//     Addresses come from 198.18.0.0/15 only (reserved for benchmarks,
//     RFC 2544), picked under a lock among the /30s no interface of the
//     root namespace uses, so two rigs on one machine never collide.
//     Nothing is routed beyond the pair: a host is reachable from this
//     machine's root namespace and nowhere else.
//   - A private mount namespace (`ip netns exec … unshare -m`) with a
//     tmpfs on /run/libvirt and bind mounts of the host's own directories
//     on /var/lib/libvirt, /var/cache/libvirt, /var/log/libvirt and
//     /etc/libvirt, so its daemons share no socket, pid file, state or
//     configuration with the machine's libvirtd.
//   - virtlogd (libvirtd cannot start a domain without one of its own)
//     and libvirtd --listen on the namespace address, TCP port 16509,
//     auth none: qemu+tcp://198.18.X.(4k+2)/system. Readiness is their
//     own sd_notify READY=1 on a socket the rig listens on, not a poll.
//   - With Options.TLS, qemu.conf has spice_tls = 1 and a certificate
//     from the rig's CA naming the host (CN=NAME, SANs: its address and
//     name), so its domains serve SPICE over TLS as a real host's would.
//
// The qemu processes of a host's domains are started by its libvirtd,
// so they run inside its namespaces and their SPICE ports listen on the
// namespace address, reached from the root namespace over the veth.
//
// # Cleanup
//
// Close kills every process in each host's network namespace (libvirtd,
// virtlogd, qemu; they survive a libvirtd that was killed), deletes the
// veth and the namespace and removes the host's directory. Start
// registers Close as the test's cleanup and also runs it on SIGINT,
// SIGTERM and SIGHUP. A run that was killed outright leaves its
// namespaces behind: every rig sweeps, at start, the namespaces,
// interfaces and directories with its prefix whose owner process is
// gone (the owner, pid and start time, is recorded in each host's
// directory before anything is created).
//
// Root, `ip` (iproute2), `unshare` (util-linux), libvirtd and virtlogd
// are needed; Start skips the test with the reason where they are
// missing, and fails it under CI=true.
package testhosts
