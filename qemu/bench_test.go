package qemu_test

import (
	"context"
	"os"
	"testing"

	"github.com/spiceharness/spiceharness/qemu"
)

// benchStart measures Start until ready: "spice-ready" is Start, a
// ticket set and the SPICE port accepting (ForSPICE); "prompt" is Start
// until the guest's prompt is on the serial log. Close is not timed.
func benchStart(b *testing.B, opts ...qemu.Option) {
	needQemu(b)
	for _, mode := range []string{"spice-ready", "prompt"} {
		b.Run(mode, func(b *testing.B) {
			for b.Loop() {
				ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
				vm, err := qemu.Start(ctx, opts...)
				if err == nil && mode == "spice-ready" {
					if _, err = vm.SetTicket(ctx); err == nil {
						err = vm.WaitSPICE(ctx)
					}
				}
				if err == nil && mode == "prompt" {
					err = vm.WaitFor(ctx, qemu.ForGuestPrompt())
				}
				b.StopTimer()
				cancel()
				if cerr := vm.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

func BenchmarkStartTCG(b *testing.B) { benchStart(b, qemu.Accel(qemu.AccelTCG)) }

func BenchmarkStartKVM(b *testing.B) {
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err != nil {
		b.Skipf("KVM not usable: %v", err)
	} else {
		f.Close()
	}
	benchStart(b, qemu.Accel(qemu.AccelKVM))
}

func BenchmarkStartLibvirtTCG(b *testing.B) {
	needLibvirt(b)
	benchStart(b, qemu.Libvirt("qemu:///system"), qemu.Accel(qemu.AccelTCG))
}
