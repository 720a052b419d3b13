package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestRunTargetFlags: the CONNECT proxy flags pick their target, clash
// with the other target flags by name, and keep a password out of the
// repro arguments.
func TestRunTargetFlags(t *testing.T) {
	for _, tc := range []struct {
		f    targetFlags
		args []string
		err  string
	}{
		{f: targetFlags{squid: true}, args: []string{"--squid"}},
		{f: targetFlags{connectProxy: "http://u:hunter2@127.0.0.1:3128"}, args: []string{"--connect-proxy", "http://u:xxxxx@127.0.0.1:3128"}},
		{f: targetFlags{connectProxy: "127.0.0.1:3128"}, err: "--connect-proxy"},
		{f: targetFlags{squid: true, exec: "p"}, err: "--exec and --squid each pick the proxy under test"},
		{f: targetFlags{connectProxy: "http://p:1", externalAPI: "http://a"}, err: "--external-api and --connect-proxy"},
	} {
		opt, args, err := tc.f.option()
		if tc.err != "" {
			var ee *exitError
			if !errors.As(err, &ee) || ee.Code != exitUsage || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%+v: %v, want a usage error naming %q", tc.f, err, tc.err)
			}
			continue
		}
		if err != nil || opt == nil {
			t.Fatalf("%+v: %v", tc.f, err)
		}
		if d := cmp.Diff(tc.args, args); d != "" {
			t.Errorf("%+v: unexpected repro arguments (-want +got):\n%s", tc.f, d)
		}
	}
}
