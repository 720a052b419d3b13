package scenarios

import (
	"bytes"
	"context"
	"os"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/static"
)

func init() {
	Register(Scenario{
		Name:        "sources-roundtrip",
		Tier:        Core,
		Exercises:   QemuDirect,
		Description: "the emitted sources.yaml parses clean to the running consoles and re-emits byte for byte",
		Options:     []harness.Option{harness.VMs(2)},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			data, err := os.ReadFile(env.SourcesYAML)
			require.NoError(t, err, "read sources.yaml")
			if st, err := os.Stat(env.SourcesYAML); err == nil && st.Mode().Perm()&0o077 != 0 {
				t.Errorf("sources.yaml holds tickets but has mode %v", st.Mode().Perm())
			}
			f, err := static.Parse(env.SourcesYAML, data)
			require.NoError(t, err, "parse sources.yaml")
			if len(f.Warnings()) != 0 {
				t.Errorf("warnings: %v", f.Warnings())
			}
			got := map[static.Key]static.Console{}
			var mine []static.Source // a sources.yaml shared with other lanes holds theirs too
			for k, c := range f.Consoles() {
				if k.Source == env.Source {
					got[k] = c
				}
			}
			for _, s := range f.Sources {
				if s.Name == env.Source {
					mine = append(mine, s)
				}
			}
			for _, vm := range env.VMs {
				c, ok := got[vm.Key]
				if !ok {
					t.Fatalf("sources.yaml lacks %s", vm.Key)
				}
				if c != vm.Console() {
					t.Errorf("console %s in sources.yaml differs from the running VM", vm.Key)
				}
			}
			if len(got) != len(env.VMs) {
				t.Errorf("sources.yaml has %d consoles, %d VMs run", len(got), len(env.VMs))
			}
			var again bytes.Buffer
			require.NoError(t, static.Emit(&again, f.Sources), "emit")
			require.Len(t, mine, 1, "the lane's source %q in sources.yaml", env.Source)
			if !bytes.Equal(again.Bytes(), data) {
				t.Errorf("re-emitting the parsed file changed it")
			}
		},
	})
}
