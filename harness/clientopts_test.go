package harness

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestClientOptions: each option becomes spice-gtk's own flags, the CD
// with its redirect-on-connect filter; bad paths and card sets are
// refused before any client starts.
func TestClientOptions(t *testing.T) {
	flags, err := clientFlags([]ClientOption{ShareCD("/tmp/cd.iso"), ShareDir("/tmp/shared"), SoftSmartcard("/tmp/db", "a", "b", "c")})
	require.NoError(t, err)
	assert.Equal(t, []string{
		"--spice-share-cd=/tmp/cd.iso", "--spice-usbredir-redirect-on-connect=0x08,-1,-1,-1,1",
		"--spice-shared-dir=/tmp/shared",
		"--spice-smartcard", "--spice-smartcard-db=/tmp/db", "--spice-smartcard-certificates=a,b,c",
	}, flags)

	for _, o := range []ClientOption{ShareCD("cd.iso"), ShareDir(""), SoftSmartcard("/tmp/db", "a", "b"), SoftSmartcard("/tmp/db", "a", "b,c", "d")} {
		_, err := clientFlags([]ClientOption{o})
		assert.Error(t, err)
	}
}
