package inproc_test

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/api"
	"github.com/spiceharness/spiceharness/proxy/store"
	"github.com/spiceharness/spiceharness/static"
)

// The harness's API client terminates with POST first; this
// repository's API takes it (and GET, for Kerbside's older clients), so
// no fallback happens and the session ends.
func TestAPIClientTerminatesOurAPIWithPOST(t *testing.T) {
	st := store.New(store.Options{})
	k := static.Key{Source: "lab", UUID: "u1"}
	st.Load(static.Source{Name: k.Source, Type: static.TypeStatic, Consoles: []static.Console{{UUID: k.UUID, Name: "vm1",
		Hypervisor: "localhost", HypervisorIP: "127.0.0.1", InsecurePort: 5900, Ticket: "t"}}})
	srv, err := api.New(api.Config{Store: st})
	require.NoError(t, err)
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	m, err := st.Mint(k)
	require.NoError(t, err)

	a := &harness.APIClient{URL: hs.URL}
	require.NoError(t, a.TerminateSession(context.Background(), m.SessionID))
	assert.Equal(t, "POST", a.TerminateMethod())
	info, err := st.Session(m.SessionID)
	require.NoError(t, err)
	assert.Equal(t, "ended", info.State, "the session the POST terminated")
	require.NoError(t, a.TerminateConsole(context.Background(), k))
}
