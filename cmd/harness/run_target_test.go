package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"

	"github.com/spiceharness/spiceharness/harness"
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

// Every field of the exec target has its flag; a flag beats its
// variable; the repro arguments name them (a token by its file only).
func TestRunExecFlags(t *testing.T) {
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(harness.EnvExecReload, "restart")
	for _, tc := range []struct {
		args []string
		want []string
		err  string
	}{
		{args: []string{"--exec", "./p --sources {sources}", "--exec-env", "A=1", "--exec-token-file", tok, "--exec-reload", "sighup",
			"--exec-ready", "log:loaded", "--exec-ready", "http:/console", "--exec-ready-within", "45s", "--exec-reload-within", "3s"},
			want: []string{"--exec", "./p --sources {sources}", "--exec-env", "A=1", "--exec-token-file", tok, "--exec-reload", "sighup",
				"--exec-ready", "log:loaded", "--exec-ready", "http:/console", "--exec-ready-within", "45s", "--exec-reload-within", "3s"}},
		{args: []string{"--exec", "./p", "--exec-ready", "spice-link"}, want: []string{"--exec", "./p", "--exec-ready", "spice-link"}}, // HARNESS_EXEC_RELOAD=restart
		{args: []string{"--exec-reload", "file"}, err: "--exec-reload needs --exec COMMAND (or HARNESS_EXEC)"},
		{args: []string{"--exec", "./p", "--exec-reload", "file", "--exec-ready", "spice-link"}, err: "use it with ReloadRestart"},
		{args: []string{"--exec", "./p", "--exec-reload", "poll"}, err: "--exec-reload: reload \"poll\": want one of file, sighup, restart"},
		{args: []string{"--exec", "./p", "--exec-env", "novalue"}, err: `--exec-env "novalue": want KEY=VALUE`},
		{args: []string{"--exec", "./p", "--exec-ready", "tcp:1"}, err: "--exec-ready: readiness \"tcp:1\""},
		{args: []string{"--exec", "./p", "--exec-token-file", "/nonexistent/token"}, err: "--exec-token-file"},
		{args: []string{"--exec", "./p", "--exec-ready-within", "0s"}, err: "--exec-ready-within 0s: want a positive duration"},
		{args: []string{"--squid", "--exec-reload", "sighup"}, err: "--exec and --squid each pick the proxy under test"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var f targetFlags
			f.add(&cobra.Command{})
			if err := f.cmd.ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			opt, args, err := f.option()
			if tc.err != "" {
				var ee *exitError
				if !errors.As(err, &ee) || ee.Code != exitUsage || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("%v, want a usage error with %q", err, tc.err)
				}
				return
			}
			if err != nil || opt == nil {
				t.Fatalf("%v", err)
			}
			if d := cmp.Diff(tc.want, args); d != "" {
				t.Errorf("unexpected repro arguments (-want +got):\n%s", d)
			}
			if strings.Contains(strings.Join(args, " "), "s3cret") {
				t.Errorf("the token is in the repro arguments: %q", args)
			}
		})
	}
}
