package harness_test

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/harness"
)

// A test of your own proxy: the harness starts it per lane (the {…}
// placeholders become the lane's sources.yaml and free ports), boots a
// VM, and the test types through the proxy into the guest.
func ExampleStart() {
	myProxy := harness.Exec("./myproxy --sources {sources} --listen 127.0.0.1:{plain_port} --api 127.0.0.1:{api_port}")
	testTyping := func(t *testing.T) {
		env := harness.Start(t, myProxy) // Close registered as cleanup
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		s, _, err := env.Connect(ctx, harness.Proxy, env.VM(0)) // a proxy .vv, then main
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		_, inputs, _, err := harness.OpenAll(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		inputs.Type("hello")
		if err := env.VM(0).WaitSerial(ctx, regexp.MustCompile(`READY> hello`)); err != nil {
			t.Fatalf("the keys did not reach the guest: %v", err)
		}
	}
	_ = testTyping // func TestTyping(t *testing.T) in a _test.go file
}

func ExampleSessionIDFromTitle() {
	fmt.Println(harness.SessionIDFromTitle("vm-1 via proxy session ID 7f3a9c"))
	fmt.Println(harness.SessionIDFromTitle("vm-1 direct connection") == "")
	// Output:
	// 7f3a9c
	// true
}

func ExampleMissing() {
	missing, target, err := harness.Missing([]harness.Capability{harness.CapTerminate, harness.CapMetrics},
		harness.Exec("./myproxy --sources {sources}"))
	fmt.Println(target, harness.CapList(missing), err)
	// Output: exec ./myproxy metrics <nil>
}
