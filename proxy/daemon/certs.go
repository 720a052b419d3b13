package daemon

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Files the daemon keeps in Config.StateDir.
const (
	StateCAFile   = "proxy-ca.pem"     // the CA `.vv` files embed
	StateCAKey    = "proxy-ca-key.pem" // its key (0600)
	StateCertFile = "proxy-cert.pem"   // the proxy's certificate, signed by the CA
	StateKeyFile  = "proxy-key.pem"    // its key (0600)
	stateLock     = "lock"
)

// Lifetimes of what the daemon generates. The server certificate is
// issued again from the kept CA, with the same subject, when less than
// renewBefore is left at start; `.vv` files hold the CA and the subject,
// so they stay valid.
const (
	caValidity   = 20 * 365 * 24 * time.Hour
	leafValidity = 825 * 24 * time.Hour
	renewBefore  = 30 * 24 * time.Hour
)

// leafSubject is the subject of the generated server certificate (the
// proxy's ephemeral one has the same): the `.vv` host-subject.
var leafSubject = pkix.Name{Organization: []string{"spice-harness"}, CommonName: "spice-harness proxy"}

// tlsMaterial is the proxy's certificate and the CA `.vv` files embed.
type tlsMaterial struct {
	cert   *tls.Certificate // nil: the proxy makes an ephemeral CA
	caPEM  []byte
	caFile string // a file that holds caPEM ("": none)
	origin string // config, files, state-dir, ephemeral
}

func (d *Daemon) loadTLS() (tlsMaterial, error) {
	c := &d.cfg
	switch {
	case c.Certificate != nil:
		return tlsMaterial{cert: c.Certificate, caPEM: c.CACertPEM, origin: "config"}, nil
	case c.TLSCertFile != "":
		return c.tlsFromFiles(time.Now())
	case c.StateDir != "":
		return c.tlsFromStateDir(d.log, time.Now())
	}
	return tlsMaterial{origin: "ephemeral"}, nil
}

// tlsFromFiles loads TLSCertFile and TLSKeyFile, and CAFile.
func (c *Config) tlsFromFiles(now time.Time) (tlsMaterial, error) {
	if err := c.checkPrivate(SettingTLSKey, c.TLSKeyFile); err != nil {
		return tlsMaterial{}, err
	}
	pair, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
	if err != nil {
		return tlsMaterial{}, c.errorf(SettingTLSCert, fmt.Errorf("%w: %w", ErrConfig, err), "%s %s with %s %s: %v",
			c.name(SettingTLSCert), c.TLSCertFile, c.name(SettingTLSKey), c.TLSKeyFile, err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return tlsMaterial{}, c.errorf(SettingTLSCert, ErrConfig, "%s %s: %v", c.name(SettingTLSCert), c.TLSCertFile, err)
		}
		pair.Leaf = leaf
	}
	switch {
	case now.After(leaf.NotAfter):
		return tlsMaterial{}, c.errorf(SettingTLSCert, ErrConfig, "%s %s expired on %s; clients refuse it: give a current certificate",
			c.name(SettingTLSCert), c.TLSCertFile, leaf.NotAfter.Format(time.DateOnly))
	case now.Before(leaf.NotBefore):
		return tlsMaterial{}, c.errorf(SettingTLSCert, ErrConfig, "%s %s is not valid before %s; check the clock or the certificate",
			c.name(SettingTLSCert), c.TLSCertFile, leaf.NotBefore.Format(time.RFC3339))
	}
	m := tlsMaterial{cert: &pair, origin: "files"}
	if c.CAFile == "" {
		if bytes.Equal(leaf.RawIssuer, leaf.RawSubject) && leaf.CheckSignatureFrom(leaf) == nil {
			m.caPEM, m.caFile = pemBlock("CERTIFICATE", leaf.Raw), c.TLSCertFile // self-signed: it is its own CA
		}
		return m, nil
	}
	caPEM, err := os.ReadFile(c.CAFile)
	if err != nil {
		return tlsMaterial{}, c.errorf(SettingCA, fmt.Errorf("%w: %w", ErrConfig, err), "%s: %v", c.name(SettingCA), err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return tlsMaterial{}, c.errorf(SettingCA, ErrConfig, "%s %s holds no PEM certificate (-----BEGIN CERTIFICATE-----)", c.name(SettingCA), c.CAFile)
	}
	inter := x509.NewCertPool()
	for _, der := range pair.Certificate[1:] {
		if ic, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(ic)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return tlsMaterial{}, c.errorf(SettingCA, ErrConfig, "%s %s does not verify against %s %s (%v); clients given that CA would refuse the proxy",
			c.name(SettingTLSCert), c.TLSCertFile, c.name(SettingCA), c.CAFile, err)
	}
	m.caPEM, m.caFile = caPEM, c.CAFile
	return m, nil
}

// checkPrivate refuses a key file that group or others may open.
func (c *Config) checkPrivate(s Setting, path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return c.errorf(s, fmt.Errorf("%w: %w", ErrConfig, err), "%s: %v", c.name(s), err)
	}
	if !st.Mode().IsRegular() {
		return c.errorf(s, ErrConfig, "%s %s is not a regular file", c.name(s), path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return c.errorf(s, ErrKeyPermissions, "%s %s is a private key open to group or others (mode %04o); "+
			"make it readable by its owner only: chmod 600 %s", c.name(s), path, perm, path)
	}
	return nil
}

// tlsFromStateDir loads the CA and server certificate kept in StateDir,
// generating what is missing.
func (c *Config) tlsFromStateDir(log interface{ Info(string, ...any) }, now time.Time) (tlsMaterial, error) {
	dir := c.StateDir
	if err := c.privateDir(dir); err != nil {
		return tlsMaterial{}, err
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return tlsMaterial{}, c.errorf(SettingStateDir, fmt.Errorf("%w: %w", ErrConfig, err), "%s %s: %v", c.name(SettingStateDir), dir, err)
	}
	defer unlock()
	path := func(name string) string { return filepath.Join(dir, name) }

	ca, caKey, err := c.readPair(path(StateCAFile), path(StateCAKey))
	switch {
	case errors.Is(err, fs.ErrNotExist) && !exists(path(StateCAFile)) && !exists(path(StateCAKey)):
		if ca, caKey, err = newCA(now); err != nil {
			return tlsMaterial{}, err
		}
		if err := writeFiles(dir, []stateFile{
			{StateCAKey, pemKey(caKey), 0o600}, {StateCAFile, pemBlock("CERTIFICATE", ca.Raw), 0o644},
		}); err != nil {
			return tlsMaterial{}, c.errorf(SettingStateDir, fmt.Errorf("%w: %w", ErrConfig, err), "%s %s: %v", c.name(SettingStateDir), dir, err)
		}
		log.Info("generated the proxy CA", "dir", dir, "file", path(StateCAFile))
	case err != nil:
		var ce *ConfigError
		if errors.As(err, &ce) {
			return tlsMaterial{}, err
		}
		return tlsMaterial{}, c.errorf(SettingStateDir, fmt.Errorf("%w: %w", ErrConfig, err), "%s %s: the proxy CA is incomplete (%v); restore it, "+
			"or delete the proxy-* files there to generate a new one (.vv files handed out before then stop working)", c.name(SettingStateDir), dir, err)
	case now.After(ca.NotAfter):
		return tlsMaterial{}, c.errorf(SettingStateDir, ErrConfig, "%s %s: the proxy CA expired on %s; delete the proxy-* files there "+
			"to generate a new one (.vv files handed out before then stop working)", c.name(SettingStateDir), dir, ca.NotAfter.Format(time.DateOnly))
	}

	leaf, leafKey, err := c.readPair(path(StateCertFile), path(StateKeyFile))
	if errors.Is(err, ErrKeyPermissions) {
		return tlsMaterial{}, err
	}
	if why := reissue(leaf, ca, err, now); why != "" {
		if leaf, leafKey, err = issue(ca, caKey, now, c.ProxyHost); err != nil {
			return tlsMaterial{}, err
		}
		if err := writeFiles(dir, []stateFile{
			{StateKeyFile, pemKey(leafKey), 0o600}, {StateCertFile, pemBlock("CERTIFICATE", leaf.Raw), 0o644},
		}); err != nil {
			return tlsMaterial{}, c.errorf(SettingStateDir, fmt.Errorf("%w: %w", ErrConfig, err), "%s %s: %v", c.name(SettingStateDir), dir, err)
		}
		log.Info("issued the proxy's server certificate", "dir", dir, "why", why, "expires", leaf.NotAfter.Format(time.DateOnly))
	}
	return tlsMaterial{
		cert:   &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: leafKey, Leaf: leaf},
		caPEM:  pemBlock("CERTIFICATE", ca.Raw),
		caFile: path(StateCAFile),
		origin: "state-dir",
	}, nil
}

// reissue says why the server certificate must be issued again ("":
// keep it).
func reissue(leaf, ca *x509.Certificate, readErr error, now time.Time) string {
	switch {
	case errors.Is(readErr, fs.ErrNotExist):
		return "none yet"
	case readErr != nil:
		return "unreadable: " + readErr.Error()
	case leaf.CheckSignatureFrom(ca) != nil:
		return "not signed by the kept CA"
	case now.Add(renewBefore).After(leaf.NotAfter):
		return "expires on " + leaf.NotAfter.Format(time.DateOnly)
	case pkixString(leaf.Subject) != pkixString(leafSubject):
		return "another subject"
	}
	return ""
}

func pkixString(n pkix.Name) string { return n.String() }

// readPair reads a PEM certificate and its key. A missing file is
// fs.ErrNotExist; a key open to others is refused.
func (c *Config) readPair(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	if _, err := os.Stat(keyPath); err != nil {
		return nil, nil, err
	}
	if err := c.checkPrivate(SettingStateDir, keyPath); err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	bad := func(what string, err error) error {
		return c.errorf(SettingStateDir, fmt.Errorf("%w: %w", ErrConfig, err), "%s %s: %s is unreadable (%v); restore it, or delete the "+
			"proxy-* files there to generate new ones (.vv files handed out before then stop working)", c.name(SettingStateDir), c.StateDir, what, err)
	}
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, nil, bad(filepath.Base(certPath), errors.New("no PEM certificate"))
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, bad(filepath.Base(certPath), err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, bad(filepath.Base(keyPath), errors.New("no PEM key"))
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, bad(filepath.Base(keyPath), err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, bad(filepath.Base(keyPath), errors.New("not a signing key"))
	}
	if pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return nil, nil, bad(filepath.Base(keyPath), errors.New("does not match "+filepath.Base(certPath)))
	}
	return cert, signer, nil
}

func exists(path string) bool { _, err := os.Lstat(path); return err == nil }

// privateDir makes dir (0700), or checks that others cannot write to it.
func (c *Config) privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return c.errorf(SettingStateDir, fmt.Errorf("%w: %w", ErrConfig, err), "%s: %v", c.name(SettingStateDir), err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return c.errorf(SettingStateDir, fmt.Errorf("%w: %w", ErrConfig, err), "%s: %v", c.name(SettingStateDir), err)
	}
	if !st.IsDir() {
		return c.errorf(SettingStateDir, ErrConfig, "%s %s is not a directory", c.name(SettingStateDir), dir)
	}
	// The keys in it are 0600 (checked on every read); a directory
	// others may write to would let them replace the CA.
	if perm := st.Mode().Perm(); perm&0o022 != 0 {
		return c.errorf(SettingStateDir, ErrKeyPermissions, "%s %s holds private keys and group or others may write to it (mode %04o), "+
			"so they could replace the CA; make it private: chmod 700 %s", c.name(SettingStateDir), dir, perm, dir)
	}
	return nil
}

// lockDir takes an exclusive flock on dir's lock file, so two daemons
// starting on one state dir do not both generate a CA.
func lockDir(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, stateLock), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

type stateFile struct {
	name string
	data []byte
	mode os.FileMode
}

// writeFiles writes each file atomically (a temporary file with its
// final mode, then a rename), in order.
func writeFiles(dir string, files []stateFile) error {
	for _, f := range files {
		tmp, err := os.CreateTemp(dir, ".tmp-"+f.name+"-*")
		if err != nil {
			return err
		}
		err = tmp.Chmod(f.mode)
		if err == nil {
			_, err = tmp.Write(f.data)
		}
		if err == nil {
			err = tmp.Sync()
		}
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), filepath.Join(dir, f.name))
		}
		if err != nil {
			os.Remove(tmp.Name())
			return err
		}
	}
	return nil
}

func newCA(now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"spice-harness"}, CommonName: "spice-harness proxy CA " + host},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	return sign(tmpl, tmpl, key.Public(), key, key)
}

// issue signs a server certificate with leafSubject for loopback, this
// machine's name and proxyHost.
func issue(ca *x509.Certificate, caKey crypto.Signer, now time.Time, proxyHost string) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      leafSubject,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	hosts := []string{"localhost", "127.0.0.1", "::1", proxyHost}
	if h, err := os.Hostname(); err == nil {
		hosts = append(hosts, h)
	}
	seen := map[string]bool{}
	for _, h := range hosts {
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return sign(tmpl, ca, key.Public(), caKey, key)
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer, key crypto.Signer) (*x509.Certificate, crypto.Signer, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pemKey(k crypto.Signer) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		panic(err) // an ECDSA P-256 key always marshals
	}
	return pemBlock("PRIVATE KEY", der)
}
