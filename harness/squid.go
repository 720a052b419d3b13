package harness

import (
	"context"
	"errors"
	"fmt"
	"github.com/spiceharness/spiceharness/internal/tail"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spiceharness/spiceharness/internal/proc"
)

// SquidOptions configure StartSquid.
type SquidOptions struct {
	// Ports are the only ports CONNECT may reach (required): the
	// consoles' SPICE ports.
	Ports []int
	// Dest is the only network CONNECT may reach, as CIDR ("":
	// 127.0.0.1/32).
	Dest string
	// Dir holds the config, logs and pid file ("": a new temporary
	// directory, removed by Close). Run as root, squid drops to user
	// proxy, so StartSquid hands Dir to that user.
	Dir string
	// Binary is the squid program ("": squid from PATH, else
	// /usr/sbin/squid).
	Binary string
}

// Squid is a real, unmodified HTTP CONNECT proxy (Debian's squid) for
// driving SPICE tunnels through: what oVirt deploys behind `proxy=` in
// its .vv files. It listens on 127.0.0.1 and lets CONNECT through to
// Dest on Ports only.
type Squid struct {
	// URL is "http://127.0.0.1:PORT", for a .vv's proxy= or SPICE_PROXY.
	URL  string
	Port int
	// Dir holds squid.conf, access.log, cache.log and squid.pid.
	Dir string

	child  *proc.Child
	ownDir bool
}

// ErrSquid is matched by StartSquid's errors about squid itself.
var ErrSquid = errors.New("harness: squid")

// SquidConfig renders the squid.conf StartSquid writes for port.
func SquidConfig(port int, dir string, o SquidOptions) (string, error) {
	if len(o.Ports) == 0 {
		return "", fmt.Errorf("%w: SquidOptions.Ports is empty: list the SPICE ports CONNECT may reach", ErrSquid)
	}
	var ports []string
	for _, p := range o.Ports {
		if p < 1 || p > 65535 {
			return "", fmt.Errorf("%w: SquidOptions.Ports: %d is not a port", ErrSquid, p)
		}
		ports = append(ports, strconv.Itoa(p))
	}
	dest := o.Dest
	if dest == "" {
		dest = "127.0.0.1/32"
	}
	if _, _, err := net.ParseCIDR(dest); err != nil {
		return "", fmt.Errorf("%w: SquidOptions.Dest %q: want a CIDR such as 127.0.0.1/32", ErrSquid, dest)
	}
	lines := []string{
		"# written by spice-harness: a CONNECT proxy for SPICE ports only",
		fmt.Sprintf("http_port 127.0.0.1:%d", port),
		"acl CONNECT method CONNECT",
		"acl spice_dst dst " + dest,
		"acl spice_ports port " + strings.Join(ports, " "),
		"http_access allow CONNECT spice_dst spice_ports",
		"http_access deny all",
		"cache deny all",
		"cache_mem 8 MB",
		"pid_filename " + filepath.Join(dir, "squid.pid"),
		"access_log stdio:" + filepath.Join(dir, "access.log"),
		"cache_log " + filepath.Join(dir, "cache.log"),
		"coredump_dir " + dir,
		"netdb_filename none",
		"pinger_enable off",
		// SIGTERM ends squid at once instead of waiting 30 s for clients.
		"shutdown_lifetime 0 seconds",
	}
	return strings.Join(lines, "\n") + "\n", nil
}

// squidPortAttempts bounds the retries when the picked port was taken
// between picking and squid's bind.
const squidPortAttempts = 5

// StartSquid writes a config and runs `squid -N -f FILE` as a child (no
// daemon, no cache), and returns once squid accepts connections. Close
// stops it.
func StartSquid(ctx context.Context, o SquidOptions) (*Squid, error) {
	bin := o.Binary
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("squid"); err != nil {
			bin = "/usr/sbin/squid"
		}
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%w: %s not found (install squid, or run make deps): %v", ErrSquid, bin, err)
	}
	s := &Squid{Dir: o.Dir}
	if s.Dir == "" {
		dir, err := os.MkdirTemp("", "spice-harness-squid-")
		if err != nil {
			return nil, err
		}
		s.Dir, s.ownDir = dir, true
	}
	if err := handToProxyUser(s.Dir); err != nil {
		s.Close()
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		err := s.start(ctx, bin, o)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, errSquidBind) || attempt == squidPortAttempts || ctx.Err() != nil {
			s.Close()
			return nil, err
		}
	}
}

var errSquidBind = errors.New("harness: squid could not bind its port")

func (s *Squid) start(ctx context.Context, bin string, o SquidOptions) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	conf, err := SquidConfig(port, s.Dir, o)
	if err != nil {
		return err
	}
	path := filepath.Join(s.Dir, "squid.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return err
	}
	cacheLog := filepath.Join(s.Dir, "cache.log")
	os.Remove(cacheLog)
	// -n: squid names its shared memory segments after its service name
	// (/squid-cf__metadata.shm with the default "squid"), so two squids
	// starting at once on one machine collide ("shm_open … File exists")
	// unless each has a name of its own (alphanumeric).
	cmd := exec.Command(bin, "-N", "-n", fmt.Sprintf("spiceharness%d", port), "-f", path)
	cmd.Dir = s.Dir
	child, err := proc.Start(cmd)
	if err != nil {
		return fmt.Errorf("%w: start: %v", ErrSquid, err)
	}
	for {
		log, _ := os.ReadFile(cacheLog)
		switch {
		case strings.Contains(string(log), "Accepting HTTP Socket connections"):
			s.child, s.Port, s.URL = child, port, fmt.Sprintf("http://127.0.0.1:%d", port)
			return nil
		case strings.Contains(string(log), "Cannot bind socket"):
			child.Stop(time.Second)
			return errSquidBind
		}
		select {
		case <-child.Exited():
			log, _ := os.ReadFile(cacheLog)
			return fmt.Errorf("%w: exited before accepting connections (%v); cache.log:\n%s", ErrSquid, child.ProcessState(), tail.Lines(string(log), 10))
		case <-ctx.Done():
			child.Stop(time.Second)
			return fmt.Errorf("%w: not accepting connections: %v", ErrSquid, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// handToProxyUser gives dir to user proxy when running as root (squid
// drops to that user and must write its logs and pid there).
func handToProxyUser(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("proxy")
	if err != nil {
		return fmt.Errorf("%w: run as root, squid drops to user proxy, which does not exist (install squid): %v", ErrSquid, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(dir, uid, gid)
}

// AccessLog returns squid's access log so far: one line per finished
// request, such as `… TCP_TUNNEL/200 5321 CONNECT 127.0.0.1:5930 - …`
// for a tunnel, `TCP_DENIED/403` for a refused one.
func (s *Squid) AccessLog() (string, error) {
	b, err := os.ReadFile(filepath.Join(s.Dir, "access.log"))
	return string(b), err
}

// Exited is closed once squid has exited (Close stops it).
func (s *Squid) Exited() <-chan struct{} { return s.child.Exited() }

// ProcessState is squid's exit state, nil while it runs.
func (s *Squid) ProcessState() *os.ProcessState { return s.child.ProcessState() }

// CacheLog returns squid's cache.log (its own messages) so far.
func (s *Squid) CacheLog() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "cache.log"))
	return string(b)
}

// Close stops squid (its clients' tunnels end) and removes Dir if
// StartSquid made it.
func (s *Squid) Close() error {
	if s == nil {
		return nil
	}
	var err error
	if s.child != nil {
		err = s.child.Stop(5 * time.Second) // safe again after exit: Close may run twice
	}
	if s.ownDir {
		os.RemoveAll(s.Dir)
	}
	return err
}
