package harness

import (
	"os"
	"testing"

	"github.com/spiceharness/spiceharness/internal/testenv"
)

func TestMain(m *testing.M) {
	if os.Getenv(fakeProxyEnv) == "1" {
		os.Exit(fakeProxy(os.Args[1:]))
	}
	testenv.VerifyTestMain(m)
}
