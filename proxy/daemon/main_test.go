package daemon_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/internal/syncbuf"
	"github.com/spiceharness/spiceharness/internal/testenv"
	"github.com/spiceharness/spiceharness/proxy/api"
	"github.com/spiceharness/spiceharness/proxy/daemon"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/spice/spicetest"
	"github.com/spiceharness/spiceharness/proxy/vv"
	"github.com/spiceharness/spiceharness/static"
)

// backendKeys is shared by the synthetic SPICE servers (the machine has
// two cores).
var backendKeys *spice.KeyPool

func TestMain(m *testing.M) {
	backendKeys = spice.NewKeyPool(8)
	testenv.VerifyTestMain(m, testenv.Teardown(backendKeys.Close))
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// backend is a synthetic SPICE server standing in for a qemu.
func backend(t *testing.T, ticket string) *spicetest.Server {
	t.Helper()
	s := &spicetest.Server{Password: ticket, Keys: backendKeys}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func consoleOf(uuid string, s *spicetest.Server) static.Console {
	return static.Console{UUID: uuid, Name: "vm-" + uuid, Hypervisor: "localhost", HypervisorIP: "127.0.0.1",
		InsecurePort: s.Port(), Ticket: s.Password}
}

func emit(t *testing.T, sources ...static.Source) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := static.Emit(&b, sources); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// renameOver writes data as an editor that saves atomically does: a new
// file renamed over the old one.
func renameOver(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".swp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// rewrite writes data into the same inode (truncate and write) and puts
// the old mtime back, as a coarse-mtime file system would leave it.
func rewrite(t *testing.T, path string, data []byte) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// Same size: one write over the old bytes. Another size: truncate
	// and write, as editors saving in place do (a reader between the two
	// sees an empty file: refused, skipped by next).
	flag := os.O_WRONLY
	if int64(len(data)) != st.Size() {
		flag |= os.O_TRUNC
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
}

// reloads collects the daemon's reload results (Config.OnReload).
type reloads chan daemon.ReloadResult

func (r reloads) hook(res daemon.ReloadResult) { r <- res }

// next waits for the next reload. A refused reload of a half-written
// file (caught between a truncation and the write that follows) is
// skipped: it changes nothing, by design, and a loaded machine may
// schedule a reader there.
func (r reloads) next(t *testing.T, what string) daemon.ReloadResult {
	t.Helper()
	for {
		select {
		case res := <-r:
			if res.Result == api.ReloadRefused && len(res.Problems) == 1 && strings.Contains(res.Problems[0].Message, "the file is empty") {
				t.Logf("skipped a reload of the file half-written: %s", res.Problems[0])
				continue
			}
			return res
		case <-time.After(20 * time.Second):
			t.Fatalf("no reload 20 s after %s", what)
			return daemon.ReloadResult{}
		}
	}
}

// logs is a JSON log sink the test can read.
func logs(t *testing.T) (*slog.Logger, *syncbuf.Buffer) {
	buf := &syncbuf.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", buf)
		}
	})
	return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// get fetches path from the daemon's API.
func get(t *testing.T, d *daemon.Daemon, method, path, key string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, d.APIURL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// connect opens a session through the daemon's proxy with a fresh proxy
// .vv, as a client would, and its inputs channel.
func connect(t *testing.T, ctx context.Context, d *daemon.Daemon, k static.Key, key string) (*spice.Session, *spice.Channel, *vv.File) {
	t.Helper()
	code, body := get(t, d, "GET", "/console/proxy/"+k.Source+"/"+k.UUID+"/console.vv", key)
	if code != 200 {
		t.Fatalf("proxy .vv of %s: %d %s", k, code, body)
	}
	f, err := vv.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(f.CA)) {
		t.Fatalf("the .vv's ca is not PEM: %q", f.CA)
	}
	dl := &spice.Dialer{Host: f.Host, TLSPort: f.TLSPort, Password: f.Password, CA: pool, HostSubject: f.HostSubject}
	s, err := dl.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	in, err := s.Open(ctx, spice.ChannelInputs, 0)
	if err != nil {
		t.Fatal(err)
	}
	return s, in, f
}

// relays presses key on in and waits until the backend got it: the
// session still carries traffic end to end.
func relays(t *testing.T, step string, s *spice.Session, in *spice.Channel, b *spicetest.Server, key uint16) {
	t.Helper()
	select {
	case <-s.Main.Done():
		t.Fatalf("%s: the live session's main channel closed: %v", step, s.Main.Err())
	case <-in.Done():
		t.Fatalf("%s: the live session's inputs channel closed: %v", step, in.Err())
	default:
	}
	if err := in.KeyPress(key); err != nil {
		t.Fatalf("%s: key press on the live session: %v", step, err)
	}
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if slices.Contains(b.KeysDown(), uint32(key)) {
			return
		}
	}
	t.Fatalf("%s: key %#x did not reach the backend through the live session", step, key)
}

func keysOf(d *daemon.Daemon) []string {
	var out []string
	for _, k := range d.Store().Keys() {
		out = append(out, k.String())
	}
	return out
}

// metric sums the current values of the series name with the given
// label pairs.
func metric(t *testing.T, d *daemon.Daemon, name string, labels ...string) float64 {
	t.Helper()
	fams, err := d.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
				}
				if !found {
					continue next
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
