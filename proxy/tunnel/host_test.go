package tunnel

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiceharness/spiceharness/static"
)

var (
	testKey   = static.Key{Source: "lab", UUID: "6a2c1d9e-0000-4000-8000-000000000001"}
	testGrant = Grant{Key: testKey, Port: 5930, TLSPort: 5931, Expires: time.Unix(1_900_000_000, 0)}
)

func testSigner(t *testing.T) *Signer {
	t.Helper()
	s, err := NewSigner([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// label is what a DNS label may be (and what GLib passes through in a
// CONNECT line unchanged).
var label = regexp.MustCompile(`^[a-z2-7]{1,63}$`)

func TestSignDecodeVerify(t *testing.T) {
	s := testSigner(t)
	host, err := s.Sign(testGrant)
	if err != nil {
		t.Fatal(err)
	}
	if len(host) != HostLen || !label.MatchString(host) {
		t.Fatalf("host %q is not one lower-case DNS label of %d characters", host, HostLen)
	}
	for _, spelling := range []string{host, strings.ToUpper(host)} {
		c, err := Decode(spelling)
		if err != nil {
			t.Fatal(err)
		}
		got := struct {
			Port, TLSPort int
			Expires       time.Time
		}{c.Port, c.TLSPort, c.Expires}
		want := struct {
			Port, TLSPort int
			Expires       time.Time
		}{5930, 5931, testGrant.Expires}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("unexpected claim (-want +got):\n%s", diff)
		}
		if c.Hint() != s.Hint(testKey) {
			t.Errorf("the claim's hint is not the console's")
		}
		if err := s.Verify(c, testKey); err != nil {
			t.Errorf("Verify of its own host: %v", err)
		}
		if !c.Allows(5930) || !c.Allows(5931) || c.Allows(0) || c.Allows(22) {
			t.Errorf("Allows: want exactly 5930 and 5931")
		}
	}
	// The same grant signs to the same host; a second later, another.
	again, _ := s.Sign(testGrant)
	later, _ := s.Sign(Grant{Key: testKey, Port: 5930, TLSPort: 5931, Expires: testGrant.Expires.Add(time.Second)})
	if again != host || later == host {
		t.Errorf("signing is not a function of the grant: %v %v", again == host, later == host)
	}
}

func TestVerifyRefuses(t *testing.T) {
	s := testSigner(t)
	host, _ := s.Sign(testGrant)
	c, _ := Decode(host)
	other, _ := NewSigner([]byte("another secret of thirty-two by."))
	for name, err := range map[string]error{
		"other source":  s.Verify(c, static.Key{Source: "lab2", UUID: testKey.UUID}),
		"other uuid":    s.Verify(c, static.Key{Source: "lab", UUID: testKey.UUID + "x"}),
		"shifted key":   s.Verify(c, static.Key{Source: "la", UUID: "b" + testKey.UUID}),
		"other secret":  other.Verify(c, testKey),
		"other version": s.Verify(Claim{Version: 2, Port: c.Port, TLSPort: c.TLSPort, Expires: c.Expires, hint: c.hint, mac: c.mac}, testKey),
	} {
		if !errors.Is(err, ErrBadMAC) {
			t.Errorf("%s: unexpected error (-want +got):\n-%v\n+%v", name, ErrBadMAC, err)
		}
	}
}

// TestTamperEveryCharacter: changing any one character of a host makes
// it either undecodable or fail Verify; never another valid host.
func TestTamperEveryCharacter(t *testing.T) {
	s := testSigner(t)
	host, _ := s.Sign(testGrant)
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	for i := range host {
		for _, r := range alphabet {
			if byte(r) == host[i] {
				continue
			}
			bad := host[:i] + string(r) + host[i+1:]
			c, err := Decode(bad)
			if err == nil {
				err = s.Verify(c, testKey)
			}
			if err == nil {
				t.Fatalf("tampered host (character %d → %c) verified", i, r)
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBadMAC) {
				t.Fatalf("tampered host: unexpected error %v", err)
			}
		}
	}
}

func TestDecodeMalformed(t *testing.T) {
	s := testSigner(t)
	host, _ := s.Sign(testGrant)
	for name, h := range map[string]string{
		"empty":       "",
		"short":       host[:HostLen-1],
		"long":        host + "a",
		"not base32":  host[:HostLen-1] + "1",
		"with a dot":  host[:HostLen-1] + ".",
		"an address":  "127.0.0.1",
		"proxmox":     "pvespiceproxy:65a1b2c3:100:node1::0123456789abcdef0123456789abcdef01234567",
		"non-canonic": host[:HostLen-1] + string(host[HostLen-1]^1),
	} {
		if _, err := Decode(h); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: unexpected error (-want +got):\n-%v\n+%v", name, ErrMalformed, err)
		}
	}
}

func TestSignRefuses(t *testing.T) {
	s := testSigner(t)
	for name, g := range map[string]Grant{
		"no port":  {Key: testKey},
		"negative": {Key: testKey, Port: -1},
		"too big":  {Key: testKey, TLSPort: 65536},
	} {
		if _, err := s.Sign(g); err == nil {
			t.Errorf("%s: signed", name)
		}
	}
	if _, err := NewSigner([]byte("short")); !errors.Is(err, ErrSecret) {
		t.Errorf("short secret: %v", err)
	}
}

func TestRandomSignersDiffer(t *testing.T) {
	a, b := RandomSigner(), RandomSigner()
	h, _ := a.Sign(testGrant)
	c, _ := Decode(h)
	if b.Verify(c, testKey) == nil || a.Verify(c, testKey) != nil {
		t.Fatal("a random signer's host verified with another random signer, or not with its own")
	}
	if a.Hint(testKey) == b.Hint(testKey) {
		t.Fatal("hints do not depend on the secret: a host would tell which console it opens")
	}
}

func TestFingerprint(t *testing.T) {
	host, _ := testSigner(t).Sign(testGrant)
	fp := Fingerprint(host)
	if len(fp) != 12 || strings.Contains(host, fp) || fp != Fingerprint(strings.ToUpper(host)) {
		t.Fatalf("fingerprint %q of %q", fp, host)
	}
}

func FuzzDecode(f *testing.F) {
	s, _ := NewSigner([]byte("0123456789abcdef0123456789abcdef"))
	host, _ := s.Sign(testGrant)
	f.Add(host)
	f.Add(strings.ToUpper(host))
	f.Add("")
	f.Add(strings.Repeat("a", HostLen))
	f.Fuzz(func(t *testing.T, h string) {
		c, err := Decode(h)
		if err != nil {
			return
		}
		if !strings.EqualFold(h, host) && s.Verify(c, testKey) == nil {
			t.Fatalf("a host other than the signed one verified: %q", h)
		}
	})
}
