package scenarios

import (
	"bytes"
	"context"
	"os"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/static"
)

func init() {
	Register(Scenario{
		Name:        "sources-roundtrip",
		Description: "the emitted sources.yaml parses clean to the running consoles and re-emits byte for byte",
		Options:     []harness.Option{harness.VMs(2)},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			data, err := os.ReadFile(env.SourcesYAML)
			check(t, err, "read sources.yaml")
			if st, err := os.Stat(env.SourcesYAML); err == nil && st.Mode().Perm()&0o077 != 0 {
				t.Errorf("sources.yaml holds tickets but has mode %v", st.Mode().Perm())
			}
			f, err := static.Parse(env.SourcesYAML, data)
			check(t, err, "parse sources.yaml")
			if len(f.Warnings()) != 0 {
				t.Errorf("warnings: %v", f.Warnings())
			}
			got := f.Consoles()
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
			check(t, static.Emit(&again, f.Sources), "emit")
			if !bytes.Equal(again.Bytes(), data) {
				t.Errorf("re-emitting the parsed file changed it")
			}
		},
	})
}
