package vv

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestSecretsRedacted(t *testing.T) {
	const secret = "S3cretT0kenValue"
	f := File{Type: "spice", Host: "127.0.0.1", Port: 5900, Password: secret, CA: "PEM", Title: "vm0",
		SecureChannels: []string{"main"}, Proxy: "http://u:" + secret + "@h",
		Extra:  []Entry{{"fullscreen", "1"}, {"x-auth-token", secret}},
		Groups: []Group{{Name: "ovirt", Entries: []Entry{{"jsessionid", secret}, {"sso-token", secret}, {"host", "e"}}}}}
	type wrapper struct{ F File }
	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%d", "%x", "%X", "%10.3s", "%T"} {
		outs = append(outs, fmt.Sprintf(verb, f), fmt.Sprintf(verb, &f), fmt.Sprintf(verb, wrapper{f}), fmt.Sprintf(verb, []File{f}))
	}
	outs = append(outs, f.String(), f.GoString(), fmt.Sprint(f), fmt.Sprintln(&f))
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("vv", "file", f, "ptr", &f)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("vv", "file", f, "ptr", &f)
	outs = append(outs, buf.String())
	for _, out := range outs {
		if strings.Contains(out, secret) {
			t.Errorf("secret leaked: %s", out)
		}
	}
	for _, want := range []string{`host="127.0.0.1"`, "port=5900", "password=[redacted]", "ca=[3 bytes]", `fullscreen="1"`, `proxy="[redacted]"`, `host="e"`} {
		if !strings.Contains(f.String(), want) {
			t.Errorf("String() = %s, missing %s", f.String(), want)
		}
	}
	if gs := f.GoString(); !strings.HasPrefix(gs, "vv.File{Type:\"spice\"") || !strings.Contains(gs, `Password:"[redacted]"`) {
		t.Errorf("GoString() = %s", gs)
	}
	if !strings.Contains(buf.String(), "file.password=[redacted]") || !strings.Contains(buf.String(), `"password":"[redacted]"`) {
		t.Errorf("slog output lacks the redacted password:\n%s", buf.String())
	}
	// The rendered file is the one place the secret goes.
	out, err := Render(&f)
	if err != nil || !strings.Contains(string(out), "password="+secret+"\n") {
		t.Errorf("Render = %q, %v; want the password in it", out, err)
	}
	if f.Password != secret {
		t.Error("redaction modified the File")
	}
}

func TestRedacted(t *testing.T) {
	for k, want := range map[string]bool{"password": true, "Password": true, "sso-token": true, "jsessionid": true,
		"proxy": true, "x-secret": true, "ticket": true, "host": false, "ca": false, "title": false, "fullscreen": false} {
		if got := Redacted(k); got != want {
			t.Errorf("Redacted(%q) = %v, want %v", k, got, want)
		}
	}
}
