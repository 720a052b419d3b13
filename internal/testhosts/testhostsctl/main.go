// Command testhostsctl makes and removes the extra hypervisor hosts of
// package testhosts for a person (scripts/testhosts.sh calls it):
//
//	testhostsctl up [-hosts N] [-slots N] [-tls] [-libvirt-tls] [-o hosts.yaml]
//	testhostsctl down
//	testhostsctl sweep     # only what killed test runs left behind
//
// `up` leaves the hosts running after it exits and writes their hosts
// file; `down` removes them. Both need root.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spiceharness/spiceharness/internal/testhosts"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	switch os.Args[1] {
	case "up":
		fs := flag.NewFlagSet("up", flag.ExitOnError)
		hosts := fs.Int("hosts", 2, "how many hosts")
		slots := fs.Int("slots", 4, "slot count of each host in the hosts file")
		tls := fs.Bool("tls", true, "give the hosts SPICE TLS (label spice-tls)")
		libvirtTLS := fs.Bool("libvirt-tls", false, "reach the hosts' libvirtd over libvirt's TLS transport (qemu+tls://) instead of qemu+tcp://")
		out := fs.String("o", "/tmp/spice-harness-testhosts.yaml", "where to write the hosts file")
		fs.Parse(os.Args[2:])
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		r, err := testhosts.Up(ctx, testhosts.Options{Hosts: *hosts, Slots: *slots, TLS: *tls, LibvirtTLS: *libvirtTLS, Detached: true, Logf: logf})
		if err != nil {
			fail(err)
		}
		if err := os.WriteFile(*out, r.HostsYAML(), 0o644); err != nil {
			r.Close()
			fail(err)
		}
		for _, h := range r.Hosts {
			fmt.Printf("%s\t%s\tnetns %s\t%v\n", h.Name, h.URI, h.Netns, h.Labels)
		}
		fmt.Printf("hosts file: %s\n", *out)
		fmt.Printf("try: harness up --hosts %s    remove with: scripts/testhosts.sh down\n", *out)
	case "down":
		removed, err := testhosts.Sweep(testhosts.ManualPrefix, true)
		for _, r := range removed {
			fmt.Println("removed", r)
		}
		if err != nil {
			fail(err)
		}
	case "sweep":
		removed, err := testhosts.Sweep(testhosts.TestPrefix, false)
		for _, r := range removed {
			fmt.Println("removed", r)
		}
		if err != nil {
			fail(err)
		}
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: testhostsctl up [-hosts N] [-slots N] [-tls=false] [-libvirt-tls] [-o FILE] | down | sweep")
	os.Exit(2)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "testhostsctl:", err)
	os.Exit(1)
}
