package qemu_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
	"github.com/google/go-cmp/cmp"
	"github.com/spiceharness/spiceharness/fixtures/guest"
	"github.com/spiceharness/spiceharness/internal/pki"
	"github.com/spiceharness/spiceharness/internal/poll"
	"github.com/spiceharness/spiceharness/internal/syncbuf"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/qemu"
)

func TestIntegrationBootSerialAndKeys(t *testing.T) {
	vm := startVM(t)
	ctx := ctxT(t, 30*time.Second)
	if err := vm.WaitFor(ctx, qemu.ForGuestPrompt()); err != nil {
		t.Fatal(err)
	}
	if err := vm.SendKeys(ctx, "h", "i", "ret"); err != nil {
		t.Fatal(err)
	}
	if err := vm.WaitSerial(ctx, regexp.MustCompile(regexp.QuoteMeta(guest.Prompt+"hi\r\n"))); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(vm.SerialLog())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(guest.Ready+"hi\r\n", string(got)); diff != "" {
		t.Errorf("unexpected serial log (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(guest.Banner+"\r\n"+guest.Prompt+"hi", vm.SerialTail(2)); diff != "" {
		t.Errorf("unexpected SerialTail(2) (-want +got):\n%s", diff)
	}
}

func TestIntegrationTickets(t *testing.T) {
	var logBuf syncbuf.Buffer
	vm := startVM(t, qemu.Logger(slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	ctx := ctxT(t, 60*time.Second)
	con := vm.Endpoint()
	if con.Ticket != "" {
		t.Fatalf("ticket set before SetTicket")
	}
	if err := vm.WaitSPICE(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := vm.QuerySpice(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := qemu.SpiceInfo{Enabled: true, Host: "127.0.0.1", Port: con.Port, Auth: "spice", MouseMode: info.MouseMode}
	if diff := cmp.Diff(want, info); diff != "" {
		t.Errorf("unexpected query-spice (-want +got):\n%s", diff)
	}
	tickets := checkTickets(t, vm)

	// Tickets never leave the process: not in argv, not in qemu's log.
	p := vm.(*qemu.Process)
	log, err := os.ReadFile(p.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range tickets {
		if strings.Contains(strings.Join(p.Argv(), " "), tk) {
			t.Errorf("ticket in argv")
		}
		if strings.Contains(string(log), tk) {
			t.Errorf("ticket in qemu log")
		}
		if strings.Contains(logBuf.String(), tk) {
			t.Errorf("ticket in the harness log")
		}
	}
}

// checkTickets runs the ticket lifecycle on a fresh VM of either
// backend: refused until SetTicket; only the current ticket works;
// RotateTicket retires the old one; ExpireTicket refuses everyone; a
// later SetTicket lifts the expiry. The Go client gives exact link
// results; spicy-screenshot (a real client) confirms the final ticket.
// It returns the tickets it set.
func checkTickets(t *testing.T, vm qemu.VM) []string {
	ctx := ctxT(t, 60*time.Second)
	con := vm.Endpoint()
	wantLink(t, con, spice.ErrPermissionDenied, "before SetTicket", "", "x")
	t1, err := vm.SetTicket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(t1) != qemu.TicketLen || !regexp.MustCompile(`^[A-Za-z0-9]+$`).MatchString(t1) {
		t.Fatalf("unexpected ticket format (length %d)", len(t1))
	}
	if vm.Endpoint().Ticket != t1 {
		t.Fatalf("Console().Ticket is not the ticket SetTicket returned")
	}
	wantLink(t, con, spice.ErrPermissionDenied, "after SetTicket, no or wrong ticket", "", t1[1:], "wrong")
	wantLink(t, con, spice.LinkOK, "after SetTicket, fresh ticket", t1)

	t2, err := vm.RotateTicket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if t2 == t1 {
		t.Fatal("RotateTicket returned the old ticket")
	}
	wantLink(t, con, spice.ErrPermissionDenied, "after RotateTicket, old ticket", t1)
	wantLink(t, con, spice.LinkOK, "after RotateTicket, new ticket", t2)

	if err := vm.ExpireTicket(ctx); err != nil {
		t.Fatal(err)
	}
	wantLink(t, con, spice.ErrPermissionDenied, "after ExpireTicket", t2, "")
	t3, err := vm.RotateTicket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantLink(t, con, spice.ErrPermissionDenied, "after a rotation that follows an expiry, old tickets", t1, t2)
	wantLink(t, con, spice.LinkOK, "after a rotation that follows an expiry, new ticket", t3)
	if !spiceLogin(t, con.HostIP, con.Port, t3) {
		t.Error("spicy-screenshot was refused with the current ticket")
	}
	if spiceLogin(t, con.HostIP, con.Port, t2) {
		t.Error("spicy-screenshot got in with a retired ticket")
	}
	for _, tk := range []string{t1, t2, t3} {
		if strings.Contains(vm.String(), tk) {
			t.Errorf("ticket in String()")
		}
	}
	return []string{t1, t2, t3}
}

// TestIntegrationTicketsAndSessions: SetTicket keeps a connected session,
// RotateTicket disconnects it.
func TestIntegrationTicketsAndSessions(t *testing.T) {
	vm := startVM(t)
	ctx := ctxT(t, 60*time.Second)
	t1, err := vm.SetTicket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	con := vm.Endpoint()
	d := &spice.Dialer{Host: con.HostIP, Port: con.Port, Password: t1}
	s, err := d.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := vm.SetTicket(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Main.Done():
		t.Fatalf("SetTicket dropped a connected session: %v", s.Main.Err())
	case <-time.After(500 * time.Millisecond):
	}
	if _, err := vm.RotateTicket(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Main.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("RotateTicket left a connected session in")
	}
}

func TestIntegrationTLS(t *testing.T) {
	ca, err := pki.NewCA("qemu test CA")
	if err != nil {
		t.Fatal(err)
	}
	vm := startVM(t, qemu.TLS(ca))
	ctx := ctxT(t, 60*time.Second)
	con := vm.Endpoint()
	if con.TLSPort == 0 || con.TLSPort == con.Port {
		t.Fatalf("unexpected ports %d/%d", con.Port, con.TLSPort)
	}
	if diff := cmp.Diff("O=spice-harness,CN=localhost", con.HostSubject); diff != "" {
		t.Errorf("unexpected host subject (-want +got):\n%s", diff)
	}
	if err := vm.WaitSPICE(ctx); err != nil {
		t.Fatal(err)
	}
	ticket, err := vm.SetTicket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d := &spice.Dialer{Host: "127.0.0.1", TLSPort: con.TLSPort, SecureAll: true, Password: ticket, CA: ca.Pool(), HostSubject: con.HostSubject}
	ch, err := d.DialChannel(ctx, 0, spice.ChannelMain, 0)
	if err != nil {
		t.Fatalf("TLS link with the CA and host subject: %v", err)
	}
	if !ch.Secure {
		t.Error("channel not linked over TLS")
	}
	ch.Close()
	if _, err := os.Stat(filepath.Join(vm.(*qemu.Process).StateDir(), "x509", "server-key.pem")); err != nil {
		t.Errorf("x509 dir: %v", err)
	}
}

func TestIntegrationQMP(t *testing.T) {
	vm := startVM(t)
	ctx := ctxT(t, 30*time.Second)
	got, err := vm.Run(ctx, "query-status")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Running bool   `json:"running"`
		Status  string `json:"status"`
	}
	if err := json.Unmarshal(got, &st); err != nil || !st.Running {
		t.Errorf("unexpected query-status %s (%v)", got, err)
	}
	_, err = vm.Run(ctx, "no-such-command")
	var qe *qemu.QMPError
	if !errors.As(err, &qe) {
		t.Fatalf("error %v is not a *qemu.QMPError", err)
	}
	if diff := cmp.Diff("CommandNotFound", qe.Class); diff != "" {
		t.Errorf("unexpected QMP error class (-want +got):\n%s", diff)
	}
	_, err = vm.Run(ctx, qmp.Command{Execute: "set_password", Args: map[string]string{"protocol": "vnc", "password": "x"}})
	if !errors.As(err, &qe) || qe.Class != "GenericError" {
		t.Errorf("unexpected error for set_password on a VM without VNC: %v", err)
	}
	if err := vm.SendKeys(ctx, "no-such-key"); err == nil {
		t.Error("SendKeys accepted an unknown key")
	}
}

func TestIntegrationEvents(t *testing.T) {
	vm := startVM(t)
	ctx := ctxT(t, 30*time.Second)
	ticket, err := vm.SetTicket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sub := vm.Subscribe()
	defer sub.Close()
	con := vm.Endpoint()
	if !spiceLogin(t, con.HostIP, con.Port, ticket) {
		t.Fatal("login refused")
	}
	for _, name := range []string{qemu.EventSPICEConnected, qemu.EventSPICEInitialized, qemu.EventSPICEDisconnected} {
		e, err := sub.Next(ctx, name)
		if err != nil {
			t.Fatalf("waiting for %s: %v", name, err)
		}
		if e.Data == nil || e.Time.IsZero() {
			t.Errorf("event %s without data or time: %+v", name, e)
		}
	}
	if err := vm.WaitFor(ctx, qemu.ForEvent(qemu.EventSPICEInitialized)); err != nil {
		t.Fatalf("ForEvent does not see an event from the history: %v", err)
	}
	// quit: SHUTDOWN is delivered, and the exit is expected.
	if _, err := vm.Run(ctx, "quit"); err != nil && !errors.Is(err, qemu.ErrExited) {
		t.Fatal(err)
	}
	if _, err := sub.Next(ctx, qemu.EventShutdown); err != nil {
		t.Fatalf("no SHUTDOWN event: %v", err)
	}
	if err := vm.Wait(ctx); err != nil {
		t.Fatalf("Wait after quit: %v", err)
	}
	if _, err := sub.Next(ctx); !errors.Is(err, qemu.ErrExited) {
		t.Errorf("Next after exit: want ErrExited, got %v", err)
	}
}

// TestIntegrationUnexpectedExit: qemu killed behind the harness's back
// makes waits and calls fail fast with an *ExitError, and Close report it.
func TestIntegrationUnexpectedExit(t *testing.T) {
	needQemu(t)
	ctx := ctxT(t, 60*time.Second)
	vm, err := qemu.Start(ctx, qemu.Accel(qemu.AccelTCG), qemu.Logger(testLogger(t)))
	defer vm.Close()
	if err != nil {
		t.Fatal(err)
	}
	ticket, err := vm.SetTicket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.WaitFor(ctx, qemu.ForGuestPrompt()); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- vm.WaitSerial(ctx, regexp.MustCompile("never printed")) }()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	if err := syscall.Kill(vm.(*qemu.Process).Pid(), syscall.SIGSEGV); err != nil {
		t.Fatal(err)
	}
	var errs []error
	select {
	case err := <-errc:
		errs = append(errs, err)
	case <-time.After(10 * time.Second):
		t.Fatal("WaitSerial did not fail fast when qemu died")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("WaitSerial took %v to notice the exit", d)
	}
	var ee *qemu.ExitError
	if !errors.As(errs[0], &ee) {
		t.Fatalf("WaitSerial error is not an *ExitError: %v", errs[0])
	}
	if ee.Expected || ee.Code != -1 || !strings.Contains(ee.Status, "segmentation fault") {
		t.Errorf("unexpected ExitError fields: expected=%v code=%d status=%q", ee.Expected, ee.Code, ee.Status)
	}
	if !strings.Contains(ee.Serial, guest.Prompt) || !strings.Contains(ee.Error(), "qemu-system-x86_64") {
		t.Errorf("ExitError lacks the serial tail or the command line:\n%v", ee)
	}
	if err := vm.Wait(ctx); !errors.As(err, &ee) {
		t.Errorf("Wait: want the *ExitError, got %v", err)
	}
	_, err = vm.SetTicket(ctx)
	errs = append(errs, err)
	err = vm.ExpireTicket(ctx)
	errs = append(errs, err)
	err = vm.SendKeys(ctx, "a")
	errs = append(errs, err)
	err = vm.Close()
	errs = append(errs, err)
	for i, err := range errs {
		if !errors.Is(err, qemu.ErrExited) {
			t.Errorf("error %d does not match ErrExited: %v", i, err)
		}
		if strings.Contains(err.Error(), ticket) {
			t.Errorf("error %d contains the ticket", i)
		}
	}
	if err := vm.Close(); !errors.Is(err, qemu.ErrExited) {
		t.Errorf("second Close: want the same ExitError, got %v", err)
	}
	if _, err := vm.QuerySpice(ctx); !errors.Is(err, qemu.ErrClosed) {
		t.Errorf("call after Close: want ErrClosed, got %v", err)
	}
}

func TestIntegrationBadOption(t *testing.T) {
	needQemu(t)
	ctx := ctxT(t, 60*time.Second)
	vm, err := qemu.Start(ctx, qemu.Accel(qemu.AccelTCG), qemu.ExtraArgs("-no-such-option"))
	if cerr := vm.Close(); cerr != nil {
		t.Errorf("Close after a failed Start: %v", cerr)
	}
	var ee *qemu.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("Start error is not an *ExitError: %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"exit status 1", "qemu-system-x86_64", "-no-such-option", "invalid option"} {
		if !strings.Contains(msg, want) {
			t.Errorf("Start error lacks %q:\n%s", want, msg)
		}
	}
	if diff := cmp.Diff(1, ee.Code); diff != "" {
		t.Errorf("unexpected exit code (-want +got):\n%s", diff)
	}
	if !errors.Is(err, qemu.ErrExited) || errors.Is(err, qemu.ErrBind) {
		t.Errorf("unexpected sentinel matches for %v", err)
	}
	select {
	case <-vm.Exited():
	default:
		t.Error("Exited() not closed after a failed Start")
	}
}

func TestIntegrationFixedPortInUse(t *testing.T) {
	needQemu(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	ctx := ctxT(t, 60*time.Second)
	vm, err := qemu.Start(ctx, qemu.Accel(qemu.AccelTCG), qemu.SPICEPort(port))
	vm.Close()
	if !errors.Is(err, qemu.ErrBind) {
		t.Fatalf("Start on a taken fixed port: want ErrBind, got %v", err)
	}
}

func TestIntegrationKill(t *testing.T) {
	vm := startVM(t)
	ctx := ctxT(t, 30*time.Second)
	if err := vm.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-vm.Exited():
	default:
		t.Fatal("Exited() not closed after Kill returned")
	}
	if err := vm.Wait(ctx); err != nil {
		t.Errorf("Wait after Kill (an expected exit): %v", err)
	}
	if _, err := vm.Run(ctx, "query-status"); !errors.Is(err, qemu.ErrExited) {
		t.Errorf("call after Kill: want ErrExited, got %v", err)
	}
	if err := vm.Kill(); err != nil {
		t.Errorf("second Kill: %v", err)
	}
}

// TestIntegrationStartThreadExits: qemu's parent-death signal is tied to
// the OS thread that forked it, not to the process. Call Start from a
// goroutine that locks its thread and exits still locked, so the Go
// runtime ends that thread: qemu must live on. (A Start that forked from
// the caller's thread fails this test.)
func TestIntegrationStartThreadExits(t *testing.T) {
	needQemu(t)
	ctx := ctxT(t, 60*time.Second)
	type result struct {
		vm  qemu.VM
		err error
		tid int
	}
	rc := make(chan result, 1)
	var onOwnThread func()
	onOwnThread = func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if syscall.Gettid() == os.Getpid() {
			// The main thread is never ended by the runtime; hop off it.
			runtime.UnlockOSThread()
			go onOwnThread()
			return
		}
		vm, err := qemu.Start(ctx, qemu.Accel(qemu.AccelTCG))
		rc <- result{vm, err, syscall.Gettid()}
	}
	go onOwnThread()
	r := <-rc
	defer r.vm.Close()
	if r.err != nil {
		t.Fatal(r.err)
	}
	// The runtime ends the thread when its goroutine returns locked;
	// nothing reports that, so poll /proc for it.
	task := "/proc/self/task/" + strconv.Itoa(r.tid)
	err := poll.Until(ctxT(t, 5*time.Second), 10*time.Millisecond, func(context.Context) error {
		if _, err := os.Stat(task); err == nil {
			return fmt.Errorf("thread %d still exists", r.tid)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the runtime did not end the thread that called Start; the test proves nothing: %v", err)
	}
	time.Sleep(200 * time.Millisecond) // a parent-death signal would have landed by now
	select {
	case <-r.vm.Exited():
		t.Fatalf("qemu died with the thread that called Start: %v", r.vm.Wait(ctx))
	default:
	}
	if _, err := r.vm.Run(ctx, "query-status"); err != nil {
		t.Fatal(err)
	}
}

func TestIntegrationParallel(t *testing.T) {
	needQemu(t)
	const n = 8
	ctx := ctxT(t, 120*time.Second)
	vms := make([]qemu.VM, n)
	errs := make([]error, n)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			vms[i], errs[i] = qemu.Start(ctx, qemu.Accel(qemu.AccelTCG))
			if errs[i] == nil {
				_, errs[i] = vms[i].SetTicket(ctx)
			}
			if errs[i] == nil {
				errs[i] = vms[i].WaitSPICE(ctx)
			}
		})
	}
	wg.Wait()
	t.Logf("%d VMs started in parallel, SPICE ready with tickets, in %v", n, time.Since(start))
	defer func() {
		start := time.Now()
		for _, vm := range vms {
			wg.Go(func() {
				if err := vm.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
		}
		wg.Wait()
		t.Logf("%d VMs closed in %v", n, time.Since(start))
		for _, vm := range vms {
			if pid := vm.(*qemu.Process).Pid(); pid != 0 && syscall.Kill(pid, 0) == nil {
				t.Errorf("qemu %d still running after Close", pid)
			}
		}
	}()
	ports := map[int]int{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("VM %d: %v", i, err)
		}
		p := vms[i].Endpoint().Port
		if j, dup := ports[p]; dup {
			t.Errorf("VMs %d and %d share SPICE port %d", j, i, p)
		}
		ports[p] = i
	}
}

// TestIntegrationMachines: the built-in guest boots on pc and q35 (the
// image is padded to 1 MiB for AHCI) with std and qxl VGA.
func TestIntegrationMachines(t *testing.T) {
	for _, m := range []struct{ machine, vga string }{{"pc", "qxl"}, {"q35", "std"}, {"q35", "qxl"}} {
		t.Run(m.machine+"-"+m.vga, func(t *testing.T) {
			vm := startVM(t, qemu.Machine(m.machine), qemu.VGA(m.vga), qemu.Memory(64))
			if err := vm.WaitFor(ctxT(t, 30*time.Second), qemu.ForGuestPrompt(), qemu.ForSPICE()); err != nil {
				t.Fatal(err)
			}
		})
	}
}
