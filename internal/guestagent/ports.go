package guestagent

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

// servePorts starts a server for each port the agent knows by name.
func (a *agent) servePorts(ps []port) {
	for _, p := range ps {
		f, err := os.OpenFile(p.Dev, os.O_RDWR, 0)
		if err != nil {
			errorf(a.rep, "port "+p.Name, err)
			continue
		}
		rw := &portConn{f: f}
		switch {
		case p.Name == guestproto.PortControl:
			go a.serveControl(rw)
		case p.Name == guestproto.PortAgent && a.cfg.Agent != nil:
			go func() {
				c := a.cfg.Agent(a.ctx, rw, a.rep)
				a.mu.Lock()
				a.clipboard = c
				a.mu.Unlock()
			}()
		case p.Name == guestproto.PortWebDAV && a.cfg.WebDAV != nil:
			go func() {
				w := a.cfg.WebDAV(a.ctx, rw, a.rep)
				a.mu.Lock()
				a.webdav = w
				a.mu.Unlock()
			}()
		case p.Name == guestproto.PortEcho:
			a.mu.Lock()
			a.echoes[p.Name] = f
			a.mu.Unlock()
			go a.serveEcho(p.Name, rw)
		default:
			a.mu.Lock()
			a.echoes[p.Name] = f // writable with port-write; nobody reads it
			a.mu.Unlock()
		}
	}
}

// portConn is a virtio-serial port. A read while the host side is
// closed returns EOF at once (and poll reports POLLHUP, so it cannot
// wait for the host either): portConn turns that into a wait, re-trying
// every 20 ms, so its users see a stream that blocks until the host
// connects. There is no event for "host connected" short of SIGIO.
type portConn struct{ f *os.File }

func (p *portConn) Read(b []byte) (int, error) {
	for {
		n, err := p.f.Read(b)
		if n > 0 || (err != nil && err != io.EOF) {
			return n, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *portConn) Write(b []byte) (int, error) { return p.f.Write(b) }

// serveEcho reports each chunk that arrives and writes it back.
func (a *agent) serveEcho(name string, rw io.ReadWriter) {
	total := sha256.New()
	var n int64
	buf := make([]byte, 64<<10)
	for {
		k, err := rw.Read(buf)
		if err != nil {
			errorf(a.rep, "port "+name, err)
			return
		}
		chunk := buf[:k]
		total.Write(chunk)
		n += int64(k)
		sum := sha256.Sum256(chunk)
		_, werr := rw.Write(chunk)
		kv := []string{"port", name, "len", fmt.Sprint(k), "sha256", hex.EncodeToString(sum[:]),
			"total", fmt.Sprint(n), "total_sha256", hexSum(total), "echoed", fmt.Sprint(werr == nil)}
		if werr != nil {
			kv = append(kv, "err", werr.Error())
		}
		a.rep.Event(guestproto.TypePortRx, kv...)
	}
}

func hexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

// serveControl reads commands, one line each, and runs them.
func (a *agent) serveControl(rw io.ReadWriter) {
	br := bufio.NewReader(rw)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			errorf(a.rep, "control port", err)
			return
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		cmd, err := guestproto.ParseCommand(line)
		if err != nil {
			errorf(a.rep, "control port", err)
			continue
		}
		go a.run1(cmd)
	}
}

// errUnknown is the ack of a command the agent does not know.
var errUnknown = errors.New("unknown command")

// run1 runs one command and acks it.
func (a *agent) run1(cmd guestproto.Command) {
	kv, err := a.dispatch(a.ctx, cmd)
	ack := []string{"cmd", cmd.Name, "id", fmt.Sprint(cmd.ID)}
	if err != nil {
		ack = append(ack, "ok", "false", "err", err.Error())
	} else {
		ack = append(ack, "ok", "true")
		ack = append(ack, kv...)
	}
	a.rep.Event(guestproto.TypeAck, ack...)
}

func (a *agent) dispatch(ctx context.Context, cmd guestproto.Command) ([]string, error) {
	switch cmd.Name {
	case guestproto.CmdDraw:
		return a.cmdDraw(cmd)
	case guestproto.CmdAnimate:
		return a.cmdAnimate(ctx, cmd)
	case guestproto.CmdMonitors:
		for i := range a.headCount() {
			a.reportMonitors(i)
		}
		return nil, nil
	case guestproto.CmdPortWrite:
		return a.cmdPortWrite(cmd)
	case guestproto.CmdStorageRead:
		dev := cmd.Value("dev")
		if dev == "" || strings.ContainsAny(dev, "/.") {
			return nil, fmt.Errorf("want dev=sr0 or the like, got %q", dev)
		}
		return nil, a.readStorageCommand(dev)
	case guestproto.CmdPlay:
		return a.cmdPlay(cmd)
	case guestproto.CmdCaptureStart:
		return a.cmdCaptureStart(cmd)
	case guestproto.CmdCaptureStop:
		return a.cmdCaptureStop()
	case guestproto.CmdSmartcard:
		return nil, a.readATR()
	case guestproto.CmdClipboardSet:
		data, err := payload(cmd, "text")
		if err != nil {
			return nil, err
		}
		a.mu.Lock()
		c := a.clipboard
		a.mu.Unlock()
		if c == nil {
			return nil, errors.New("no agent-port service (com.redhat.spice.0 missing or not served)")
		}
		mime := cmd.Value("mime")
		if mime == "" {
			mime = "text/plain"
		}
		c.SetClipboard(data, mime)
		sum := sha256.Sum256(data)
		return []string{"len", fmt.Sprint(len(data)), "sha256", hex.EncodeToString(sum[:])}, nil
	case guestproto.CmdWebDAVRead:
		a.mu.Lock()
		w := a.webdav
		a.mu.Unlock()
		if w == nil {
			return nil, errors.New("no WebDAV-port service (org.spice-space.webdav.0 missing or not served)")
		}
		b, err := w.Read(ctx, cmd.Value("path"))
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(b)
		return []string{"len", fmt.Sprint(len(b)), "sha256", hex.EncodeToString(sum[:])}, nil
	}
	return nil, fmt.Errorf("%w %q", errUnknown, cmd.Name)
}

// payload is a command's bytes: a literal (textKey or hex) or len+seed.
func payload(cmd guestproto.Command, textKey string) ([]byte, error) {
	if v, ok := cmd.Get(textKey); ok && textKey != "" {
		return []byte(v), nil
	}
	if v, ok := cmd.Get("hex"); ok {
		return hex.DecodeString(v)
	}
	n, err := cmd.Int("len")
	if err != nil {
		return nil, fmt.Errorf("want %s=…, hex=… or len=N seed=S: %w", textKey, err)
	}
	if n < 0 || n > 64<<20 {
		return nil, fmt.Errorf("len=%d: want 0..64 MiB", n)
	}
	seed, _ := cmd.Int("seed")
	return guestproto.PatternBytes(uint64(seed), int(n)), nil
}

func (a *agent) cmdPortWrite(cmd guestproto.Command) ([]string, error) {
	name := cmd.Value("port")
	a.mu.Lock()
	f := a.echoes[name]
	a.mu.Unlock()
	if f == nil {
		return nil, fmt.Errorf("no port named %q open", name)
	}
	data, err := payload(cmd, "")
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(data); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	return []string{"len", fmt.Sprint(len(data)), "sha256", hex.EncodeToString(sum[:])}, nil
}
