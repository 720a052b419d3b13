package harness

import (
	"context"
	"errors"
	"fmt"
	"github.com/spiceharness/spiceharness/internal/tail"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/internal/pki"
	"github.com/spiceharness/spiceharness/internal/testenv"
	"github.com/spiceharness/spiceharness/qemu"
)

func TestSquidConfig(t *testing.T) {
	conf, err := SquidConfig(31280, "/d", SquidOptions{Ports: []int{5930, 5931}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"http_port 127.0.0.1:31280\n",
		"acl spice_dst dst 127.0.0.1/32\n",
		"acl spice_ports port 5930 5931\n",
		"http_access allow CONNECT spice_dst spice_ports\nhttp_access deny all\n",
		"access_log stdio:/d/access.log\n",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("squid.conf lacks %q:\n%s", want, conf)
		}
	}
	for name, o := range map[string]SquidOptions{
		"no ports":  {},
		"port 0":    {Ports: []int{0}},
		"bad CIDR":  {Ports: []int{1}, Dest: "127.0.0.1"},
		"huge port": {Ports: []int{70000}},
	} {
		if _, err := SquidConfig(1, "/d", o); !errors.Is(err, ErrSquid) || !strings.Contains(err.Error(), "SquidOptions.") {
			t.Errorf("%s: %v, want an ErrSquid naming the option", name, err)
		}
	}
}

// squidShot runs spicy-screenshot once with SPICE_PROXY=proxyURL (""
// for none) and a fresh qemu ticket, replaced as soon as it is done (the
// ticket is on its argv: it has no other way).
func squidShot(ctx context.Context, vm qemu.VM, home, proxyURL string, port int, secure bool) (*Image, error) {
	ticket, err := vm.SetTicket(ctx)
	if err != nil {
		return nil, err
	}
	defer vm.SetTicket(ctx)
	out := filepath.Join(home, "shot.ppm")
	os.Remove(out)
	flag := "-p"
	if secure {
		flag = "-s"
	}
	cmd := exec.CommandContext(ctx, "spicy-screenshot", "-h", "127.0.0.1", flag, strconv.Itoa(port), "-w", ticket, "-o", out)
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+home, "SSL_CERT_FILE="+filepath.Join(home, "ca.pem"))
	if proxyURL != "" {
		cmd.Env = append(cmd.Env, "SPICE_PROXY="+proxyURL)
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("spicy-screenshot port %d via %q: %v\n%s", port, proxyURL, err, tail.Lines(string(b), 5))
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	return DecodePPM(b)
}

// TestIntegrationSquidTunnel: Debian's squid, started with the config
// StartSquid writes, carries spicy-screenshot to qemu's plain and TLS
// ports with pixels identical to a direct capture (its access log shows
// the tunnels), and refuses a port it was not given: spicy-screenshot
// fails and nothing reaches qemu (qemu's next SPICE_CONNECTED is the
// barrier's own).
func TestIntegrationSquidTunnel(t *testing.T) {
	testenv.Short(t)
	testenv.NeedCommand(t, "qemu-system-x86_64", "qemu-system-x86")
	testenv.NeedCommand(t, "spicy-screenshot", "spice-client-gtk")
	if _, err := exec.LookPath("squid"); err != nil {
		if _, err := os.Stat("/usr/sbin/squid"); err != nil {
			testenv.Missing(t, "squid", "install it with `make deps` (Debian package squid)")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ca, err := pki.NewCA("squid test CA")
	if err != nil {
		t.Fatal(err)
	}
	vm, err := qemu.Start(ctx, qemu.Accel(qemu.AccelTCG), qemu.TLS(ca))
	t.Cleanup(func() { vm.Close() })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vm.SetTicket(ctx); err != nil {
		t.Fatal(err)
	}
	if err := vm.WaitFor(ctx, qemu.ForSPICE(), qemu.ForGuestPrompt()); err != nil {
		t.Fatal(err)
	}
	con := ConsoleOf(vm.Endpoint())
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, "ca.pem"), ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	sq, err := StartSquid(ctx, SquidOptions{Ports: []int{con.SecurePort}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := sq.Close(); err != nil {
			t.Errorf("squid Close: %v", err)
		}
	}()

	direct, err := squidShot(ctx, vm, home, "", con.InsecurePort, false)
	if err != nil {
		t.Fatal(err)
	}
	through, err := squidShot(ctx, vm, home, sq.URL, con.SecurePort, true)
	if err != nil {
		t.Fatal(err)
	}
	if n := through.DiffPixels(direct); n != 0 || through.W != direct.W {
		t.Fatalf("through squid: %d pixels differ from the direct capture", n)
	}

	// The plain port is not in squid's list: refused, nothing reaches qemu.
	sub := vm.Subscribe()
	defer sub.Close()
	if _, err := squidShot(ctx, vm, home, sq.URL, con.InsecurePort, false); err == nil {
		t.Fatal("spicy-screenshot got through squid to a port it was not given")
	}
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(con.InsecurePort)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mine := strconv.Itoa(c.LocalAddr().(*net.TCPAddr).Port)
	ev, err := sub.Next(ctx, qemu.EventSPICEConnected)
	if err != nil {
		t.Fatal(err)
	}
	if client, _ := ev.Data["client"].(map[string]any); fmt.Sprint(client["port"]) != mine {
		t.Fatalf("qemu saw a connection from port %v before the barrier's (%s): squid let the refused CONNECT through", client["port"], mine)
	}

	log, err := sq.AccessLog()
	if err != nil {
		t.Fatal(err)
	}
	tunnel := "TCP_TUNNEL/200 "
	target := fmt.Sprintf("CONNECT 127.0.0.1:%d ", con.SecurePort)
	denied := "/403 "
	var tunnels, refusals int
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, tunnel) && strings.Contains(line, target) {
			tunnels++
		}
		if strings.Contains(line, denied) && strings.Contains(line, fmt.Sprintf("CONNECT 127.0.0.1:%d ", con.InsecurePort)) {
			refusals++
		}
	}
	if tunnels < 2 || refusals < 1 {
		t.Errorf("squid's access log has %d tunnels to the TLS port (want main and display) and %d refusals of the plain port:\n%s", tunnels, refusals, log)
	}
}
