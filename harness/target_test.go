package harness

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/static"
)

// bareTarget has no capability beyond Target.
type bareTarget struct{}

func (bareTarget) Name() string                                             { return "bare" }
func (bareTarget) Start(context.Context, *Env) error                        { return nil }
func (bareTarget) Load(context.Context, []static.Source) error              { return nil }
func (bareTarget) Close() error                                             { return nil }
func (bareTarget) ProxyVV(context.Context, static.Key) (*VVResponse, error) { return nil, nil }

// terminating adds terminate and a known token lifetime.
type terminating struct {
	bareTarget
	ttl time.Duration
}

func (terminating) SessionID(context.Context, *VVResponse) (string, error) { return "", nil }
func (terminating) TerminateSession(context.Context, string) error         { return nil }
func (terminating) TerminateConsole(context.Context, static.Key) error     { return nil }
func (t terminating) TokenTTL() time.Duration                              { return t.ttl }
func (terminating) AdvanceTokenClock(time.Duration) error                  { return ErrUnsupported }

func TestCapabilities(t *testing.T) {
	// spice-clients is had by default: only a WebSocket gateway lacks it.
	assert.Equal(t, []Capability{CapSPICEClients}, Capabilities(bareTarget{}))
	if d := cmp.Diff([]Capability{CapSPICEClients, CapTerminate}, Capabilities(terminating{})); d != "" {
		t.Errorf("a target with an unknown token lifetime (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]Capability{CapSPICEClients, CapTerminate, CapTokenTTL}, Capabilities(terminating{ttl: time.Minute})); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	missing, name, err := Missing([]Capability{CapTerminate, CapMetrics, CapTokenTTL},
		WithTarget(func(Settings) (Target, error) { return terminating{}, nil }))
	require.NoError(t, err)
	assert.Equal(t, "bare", name)
	if d := cmp.Diff([]Capability{CapMetrics, CapTokenTTL}, missing); d != "" {
		t.Errorf("unexpected missing capabilities (-want +got):\n%s", d)
	}
	_, _, err = Missing([]Capability{"telepathy"}, WithTarget(func(Settings) (Target, error) { return bareTarget{}, nil }))
	assert.ErrorContains(t, err, "unknown capability")
}

func TestNoDefaultTargetSaysWhatToDo(t *testing.T) {
	saved := defaultTarget
	defaultTarget = nil
	defer func() { defaultTarget = saved }()
	t.Setenv(EnvExternalAPI, "")
	t.Setenv(EnvExec, "")
	_, err := newConfig(nil)
	require.Error(t, err)
	for _, want := range []string{"WithTarget", "HARNESS_EXEC", "HARNESS_EXTERNAL_API", "harness/inproc"} {
		assert.Contains(t, err.Error(), want)
	}
}

func TestTargetFromEnvironment(t *testing.T) {
	t.Setenv(EnvExternalAPI, "http://127.0.0.1:1")
	t.Setenv(EnvExternalSource, "")
	_, err := newConfig(nil)
	assert.ErrorContains(t, err, EnvExternalSource, "the sources path is required")

	t.Setenv(EnvExternalSource, filepath.Join(t.TempDir(), "s.yaml"))
	t.Setenv(EnvExec, "myproxy")
	_, err = newConfig(nil)
	assert.ErrorContains(t, err, "pick one")

	t.Setenv(EnvExec, "")
	c, err := newConfig(nil)
	require.NoError(t, err)
	tg, err := c.newTarget()
	require.NoError(t, err)
	assert.Equal(t, "kerbside http://127.0.0.1:1", tg.Name())
	assert.Equal(t, EnvExternalAPI, c.targetFrom)
}

func TestSharedSourcesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sources.yaml")
	f := sharedSources(path)
	a := []static.Source{{Name: "harness-a", Type: static.TypeStatic, Consoles: []static.Console{{UUID: "u1", Name: "one", Hypervisor: "h", HypervisorIP: "127.0.0.1", InsecurePort: 5900, Ticket: "t1"}}}}
	b := []static.Source{{Name: "harness-b", Type: static.TypeStatic}}
	require.NoError(t, f.put("harness-a", a))
	require.NoError(t, f.put("harness-b", b))
	names := func() []string {
		pf, err := static.ParseFile(path)
		require.NoError(t, err)
		var n []string
		for _, s := range pf.Sources {
			n = append(n, s.Name)
		}
		return n
	}
	if d := cmp.Diff([]string{"harness-a", "harness-b"}, names()); d != "" {
		t.Errorf("both lanes' sources (-want +got):\n%s", d)
	}
	require.NoError(t, f.remove("harness-a"))
	if d := cmp.Diff([]string{"harness-b"}, names()); d != "" {
		t.Errorf("after a lane closed (-want +got):\n%s", d)
	}
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "it holds tickets")
}

func TestReproNamesSecretsOnly(t *testing.T) {
	t.Setenv(EnvExternalToken, "eyJ-secret-jwt")
	t.Setenv(EnvExternalPassword, "hunter2")
	t.Setenv(EnvVMs, "2")
	r := Repro("TestScenarios/terminate")
	for _, secret := range []string{"eyJ-secret-jwt", "hunter2"} {
		assert.NotContains(t, r, secret)
	}
	for _, want := range []string{`HARNESS_EXTERNAL_TOKEN="$HARNESS_EXTERNAL_TOKEN"`, `HARNESS_EXTERNAL_PASSWORD="$HARNESS_EXTERNAL_PASSWORD"`,
		"HARNESS_VMS=2", "go test ./harness -run '^TestScenarios$/^terminate$'"} {
		assert.Contains(t, r, want)
	}
	assert.True(t, strings.HasPrefix(r, "cd "), "it runs from the module root: %s", r)
}

// harness.T is what testify's require and assert take.
var _ require.TestingT = T(nil)
