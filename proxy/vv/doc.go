// Package vv reads and writes virt-viewer (.vv) files, the INI files that
// remote-viewer opens: a mandatory [virt-viewer] group with type, host,
// port, tls-port, password, ca, host-subject, title, delete-this-file,
// secure-channels, proxy and whatever other keys and groups a writer
// adds.
//
// Typical use, in a test that fetched a console.vv from the API:
//
//	f, err := vv.Parse(body)
//	if err != nil {
//		t.Fatal(err) // *vv.ParseError: "vv: line 4: port: "x" is not a port …"
//	}
//	pool := x509.NewCertPool()
//	pool.AppendCertsFromPEM([]byte(f.CA))
//	d := &spice.Dialer{Host: f.Host, Port: f.Port, TLSPort: f.TLSPort,
//		Password: f.Password, CA: pool, HostSubject: f.HostSubject}
//	t.Logf("connecting with %v", f) // the password prints as [redacted]
//
// and in the API that serves it:
//
//	body, err := vv.Render(&vv.File{Type: "spice", Host: "127.0.0.1", TLSPort: 5901,
//		Password: token, CA: string(caPEM), DeleteThisFile: true})
//
// # Format
//
// The syntax is GLib's GKeyFile, which virt-viewer uses: Render escapes
// exactly as g_key_file_set_string and g_key_file_set_string_list do
// (\n, \r, \\ anywhere, \s and \t for leading white space, \; inside list
// items, and a trailing ';' after every list item), so a CA PEM is one line
// with literal \n. Keys come in a fixed order with type first; Extra keys
// and other groups follow in their order. The escapes were checked against
// GLib 2.74's own functions (see oracle_test.go).
//
// Parse follows GKeyFile's reading rules (comments, groups, white space
// around '=', CRLF) and is stricter where GLib is silently lossy: keys or
// groups defined twice, unknown escapes, control characters and invalid
// UTF-8 are errors with a line number, and input over MaxSize is refused.
// For every File that Render accepts, Parse(Render(f)) equals f, and for
// every input Parse accepts, Render succeeds (fuzzed by FuzzParse) unless
// the rendering would exceed MaxSize.
//
// # Secrets
//
// The password (a SPICE ticket or a one-time proxy token) appears in
// Render's output only: String, GoString, Format (every fmt verb) and
// LogValue redact it, and redact Extra values whose key looks secret.
// ParseError messages never quote a secret value.
//
// # What it is not
//
// Not a general GKeyFile library: no comments are kept, no localized
// lookups, no typed access to keys other than the fields of File (their
// raw values are kept for a round trip). It does not check that a file
// makes sense for a client (type spice without any port parses fine).
package vv
