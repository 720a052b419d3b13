package qemu_test

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/spiceharness/spiceharness/qemu"
)

func ExampleStart() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vm, err := qemu.Start(ctx, qemu.Accel(qemu.AccelTCG), qemu.Name("example"))
	defer vm.Close() // safe even when Start failed
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := vm.SetTicket(ctx); err != nil {
		fmt.Println(err)
		return
	}
	if err := vm.WaitFor(ctx, qemu.ForSPICE(), qemu.ForGuestPrompt()); err != nil {
		fmt.Println(err)
		return
	}
	if err := vm.SendKeys(ctx, "h", "i"); err != nil {
		fmt.Println(err)
		return
	}
	if err := vm.WaitSerial(ctx, regexp.MustCompile(`READY> hi`)); err != nil {
		fmt.Println(err)
		return
	}
	con := vm.Endpoint()
	fmt.Println(con.Name, con.HostIP, con.Port > 0, len(con.Ticket))
}
