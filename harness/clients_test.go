package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/internal/testenv"
)

// Xvfb announces its display before it accepts clients; StartXvfb must
// not return before a client can connect (7 of 10 failed before the fix).
func TestIntegrationXvfbAcceptsAtOnce(t *testing.T) {
	testenv.NeedCommand(t, "Xvfb", "xvfb")
	testenv.NeedCommand(t, "xdotool", "xdotool")
	for i := 0; i < 5; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		x, err := StartXvfb(ctx)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		cmd := exec.CommandContext(ctx, "xdotool", "getdisplaygeometry")
		cmd.Env = append(os.Environ(), "DISPLAY="+x.Display)
		out, err := cmd.CombinedOutput()
		x.Close()
		cancel()
		if err != nil || string(bytes.TrimSpace(out)) != "1024 768" {
			t.Fatalf("round %d: a client right after StartXvfb: %v: %s", i, err, out)
		}
	}
}

func TestPPM(t *testing.T) {
	img := &Image{W: 3, H: 2, Pix: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18}}
	got, err := DecodePPM(img.EncodePPM())
	if err != nil || got.DiffPixels(img) != 0 {
		t.Fatalf("round trip: %v, %d pixels differ", err, got.DiffPixels(img))
	}
	// Comments and odd whitespace in the header, as some writers emit.
	withComment := append([]byte("P6\n# made by test\n3  2\t255\n"), img.Pix...)
	if got, err := DecodePPM(withComment); err != nil || got.DiffPixels(img) != 0 {
		t.Fatalf("header with a comment: %v", err)
	}
	c, err := img.Crop(1, 1, 2, 1)
	if err != nil || !bytes.Equal(c.Pix, []byte{13, 14, 15, 16, 17, 18}) {
		t.Fatalf("crop: %v %v", c, err)
	}
	if _, err := img.Crop(2, 1, 2, 1); err == nil {
		t.Fatal("crop outside the image accepted")
	}
	for _, bad := range []string{"", "P3\n1 1\n255\n", "P6\n1 1\n65535\n\x00\x00", "P6\n2 2\n255\n\x00", "P6\n99999999 1\n255\n"} {
		if _, err := DecodePPM([]byte(bad)); err == nil {
			t.Errorf("DecodePPM(%q) accepted", bad)
		}
	}
	if img.Blank() || !(&Image{W: 2, H: 1, Pix: []byte{9, 9, 9, 9, 9, 9}}).Blank() {
		t.Fatal("Blank is wrong")
	}
}

// Every event spice-gtk reports has its name in a failure, including the
// ones that are not errors (a stock go-spice proxy's failure once read
// "main channel event 12: ?").
func TestClientErrorNamesEvents(t *testing.T) {
	for n, want := range map[int]string{12: "CLOSED (the server closed the channel)", 10: "OPENED", 11: "SWITCHING", 23: "ERROR_AUTH", 99: "unknown event 99"} {
		e := &ClientError{Program: "spicy-screenshot", Status: "exit status 1", Event: n}
		if got := e.Error(); !strings.Contains(got, fmt.Sprintf("main channel event %d: %s", n, want)) {
			t.Errorf("unexpected message for event %d (-want +got):\n-…%s…\n+%s", n, want, got)
		}
	}
}

// A client's home is its own, inside its work directory (removed with
// it); only its cache is shared, outside the temp directory: a test
// binary leaves no spice-harness-home-* behind, with or without a
// TestMain.
func TestClientEnvHomeIsTheClients(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	work := t.TempDir()
	env, err := clientEnv(work, "X=1")
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	if !strings.HasPrefix(vars["HOME"], work+"/") || !strings.HasPrefix(vars["XDG_CONFIG_HOME"], vars["HOME"]) {
		t.Errorf("HOME %q and XDG_CONFIG_HOME %q are not inside the client's work directory %s", vars["HOME"], vars["XDG_CONFIG_HOME"], work)
	}
	if c := vars["XDG_CACHE_HOME"]; c == "" || strings.HasPrefix(c, work) || !strings.HasSuffix(c, "spice-harness/clients") {
		t.Errorf("XDG_CACHE_HOME %q: want the shared spice-harness/clients cache", c)
	}
	ents, _ := os.ReadDir(tmp)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), homePrefix) {
			t.Errorf("a per-process home was made in the temp directory: %s", e.Name())
		}
	}
}
