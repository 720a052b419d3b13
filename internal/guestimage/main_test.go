package guestimage_test

import (
	"testing"

	"github.com/spiceharness/spiceharness/internal/testenv"
)

func TestMain(m *testing.M) { testenv.VerifyTestMain(m) }
