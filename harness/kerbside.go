package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spiceharness/spiceharness/internal/tail"
	"github.com/spiceharness/spiceharness/static"
)

// KerbsideConfig describes a Kerbside-style deployment the harness did
// not start: its `.vv` API (see APIClient for the dialect) and the
// sources.yaml its daemon loads.
type KerbsideConfig struct {
	// API is the base URL of its `.vv` API (required).
	API string
	// SourcesPath is the sources.yaml the deployment loads (required).
	// Lanes running at the same time in this process share it: each
	// writes its own source (a unique name per lane) and removes it when
	// it closes.
	SourcesPath string
	// Token is a ready bearer token (JWT); or User and Password are sent
	// to POST /auth for one.
	Token, User, Password string
	// ReloadCommand, when set, runs (sh -c) after each write of the
	// sources file, to make the deployment re-read it now ("systemctl
	// kill -s HUP kerbside", "docker restart kerbside"). Without it the
	// harness waits for the deployment's own re-read (Kerbside: every 60 s).
	ReloadCommand string
	// ReloadWithin bounds the wait for the deployment to serve a
	// rewritten file (0: 90 s, enough for a 60 s re-read cycle).
	ReloadWithin time.Duration
	// TokenTTL is the deployment's token lifetime, when known (Kerbside's
	// default is 60 s): it gives the lane the token-ttl capability.
	TokenTTL time.Duration
}

// KerbsideConfigFromEnv reads the HARNESS_EXTERNAL_* variables.
func KerbsideConfigFromEnv() (KerbsideConfig, error) {
	kc := KerbsideConfig{
		API:           os.Getenv(EnvExternalAPI),
		SourcesPath:   os.Getenv(EnvExternalSource),
		Token:         os.Getenv(EnvExternalToken),
		User:          os.Getenv(EnvExternalUser),
		Password:      os.Getenv(EnvExternalPassword),
		ReloadCommand: os.Getenv(EnvExternalReload),
	}
	if v := os.Getenv(EnvExternalTokenTTL); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return kc, fmt.Errorf("harness: %s=%q: want a positive duration like 60s", EnvExternalTokenTTL, v)
		}
		kc.TokenTTL = d
	}
	if kc.SourcesPath == "" {
		return kc, fmt.Errorf("harness: %s is set but %s (where to write the sources.yaml that proxy loads) is not", EnvExternalAPI, EnvExternalSource)
	}
	return kc, nil
}

// Kerbside is a target for a Kerbside-style deployment: the harness
// boots the VMs, writes their source into cfg.SourcesPath, has the
// deployment reload it, and waits until its API serves every console
// with its current ticket. It offers the direct-vv, terminate and (when
// cfg.TokenTTL is set) token-ttl capabilities.
func Kerbside(cfg KerbsideConfig) NewTarget {
	return func(s Settings) (Target, error) {
		cfg := cfg // each lane its own copy
		u, err := url.Parse(cfg.API)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("the Kerbside API URL %q is not an http(s) URL (set --external-api or %s)", cfg.API, EnvExternalAPI)
		}
		if cfg.SourcesPath == "" {
			return nil, fmt.Errorf("no sources.yaml path for the Kerbside deployment (set --external-sources or %s)", EnvExternalSource)
		}
		if cfg.User != "" && cfg.Password == "" {
			return nil, fmt.Errorf("%s is set but %s is not", EnvExternalUser, EnvExternalPassword)
		}
		if cfg.ReloadWithin <= 0 {
			cfg.ReloadWithin = 90 * time.Second
		}
		k := &kerbside{cfg: cfg, log: s, source: UniqueSourceName(), died: make(chan struct{}), stop: make(chan struct{})}
		k.api = &APIClient{URL: strings.TrimRight(cfg.API, "/"), Token: cfg.Token, User: cfg.User, Password: cfg.Password,
			CredentialsHint: EnvExternalToken + " (a bearer token), or " + EnvExternalUser + " and " + EnvExternalPassword,
			HTTP:            &http.Client{Timeout: 30 * time.Second}}
		return k, nil
	}
}

type kerbside struct {
	cfg    KerbsideConfig
	log    Settings
	api    *APIClient
	source string
	wrote  bool

	died    chan struct{}
	diedErr error
	stop    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

func (k *kerbside) Name() string        { return "kerbside " + k.api.URL }
func (k *kerbside) SourceName() string  { return k.source }
func (k *kerbside) SourcesPath() string { return k.cfg.SourcesPath }

func (k *kerbside) Start(ctx context.Context, env *Env) error {
	env.APIURL = k.api.URL
	// Fail at once on a wrong URL or credentials: a listing is the
	// cheapest authenticated route.
	if _, _, err := k.api.get(ctx, "/console"); err != nil {
		var he *HTTPError
		if !errors.As(err, &he) {
			return err
		}
	}
	k.wg.Add(1)
	go func() { defer k.wg.Done(); k.watch() }()
	return nil
}

// watch probes the API's TCP port every 2 s; three failures in a row
// mean the deployment is gone. (The SPICE port is never probed: a
// connection dropped before TLS has crashed Kerbside's proxy.)
func (k *kerbside) watch() {
	u, _ := url.Parse(k.api.URL)
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), map[string]string{"http": "80", "https": "443"}[u.Scheme])
	}
	fails := 0
	for {
		select {
		case <-k.stop:
			return
		case <-time.After(2 * time.Second):
		}
		c, err := net.DialTimeout("tcp", host, 2*time.Second)
		if err == nil {
			c.Close()
			fails = 0
			continue
		}
		if fails++; fails == 3 {
			k.diedErr = fmt.Errorf("the proxy under test's API %s stopped answering: %w", k.api.URL, err)
			close(k.died)
			return
		}
	}
}

func (k *kerbside) Died() <-chan struct{} { return k.died }
func (k *kerbside) Err() error            { return k.diedErr }

// WriteSources puts this lane's sources into the shared file.
func (k *kerbside) WriteSources(srcs []static.Source) error {
	k.wrote = true
	return sharedSources(k.cfg.SourcesPath).put(k.source, srcs)
}

func (k *kerbside) reload(ctx context.Context) error {
	if k.cfg.ReloadCommand == "" {
		return nil
	}
	out, err := exec.CommandContext(ctx, "sh", "-c", k.cfg.ReloadCommand).CombinedOutput()
	if err != nil {
		return fmt.Errorf("harness: the reload command (%s) failed: %w\n%s", EnvExternalReload, err, tail.Lines(string(out), 10))
	}
	return nil
}

func (k *kerbside) Load(ctx context.Context, srcs []static.Source) error {
	if err := k.reload(ctx); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, k.cfg.ReloadWithin)
	defer cancel()
	how := "its own re-read of the file (set " + EnvExternalReload + " to trigger one)"
	if k.cfg.ReloadCommand != "" {
		how = "the reload command"
	}
	interval := 250 * time.Millisecond
	if k.cfg.ReloadCommand == "" {
		interval = time.Second
	}
	if err := k.api.WaitListed(wctx, srcs, interval, true); err != nil {
		if errors.Is(err, ErrAPIAuth) || errors.Is(err, ErrAPIUnreachable) {
			return err
		}
		return fmt.Errorf("%w\nthe deployment did not serve %s within %v after %s; does its source driver read `type: static` sources?", err, k.cfg.SourcesPath, k.cfg.ReloadWithin, how)
	}
	return nil
}

func (k *kerbside) ProxyVV(ctx context.Context, key static.Key) (*VVResponse, error) {
	return k.api.VV(ctx, Proxy, key)
}

func (k *kerbside) DirectVV(ctx context.Context, key static.Key) (*VVResponse, error) {
	return k.api.VV(ctx, Direct, key)
}

func (k *kerbside) SessionID(ctx context.Context, f *VVResponse) (string, error) {
	return k.api.SessionID(ctx, f)
}

func (k *kerbside) TerminateSession(ctx context.Context, id string) error {
	return k.api.TerminateSession(ctx, id)
}

func (k *kerbside) TerminateConsole(ctx context.Context, key static.Key) error {
	return k.api.TerminateConsole(ctx, key)
}

func (k *kerbside) TokenTTL() time.Duration               { return k.cfg.TokenTTL }
func (k *kerbside) AdvanceTokenClock(time.Duration) error { return ErrUnsupported }

// Close takes this lane's source out of the shared file.
func (k *kerbside) Close() error {
	var err error
	k.once.Do(func() {
		close(k.stop)
		k.wg.Wait()
		if k.wrote {
			err = sharedSources(k.cfg.SourcesPath).remove(k.source)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err = errors.Join(err, k.reload(ctx))
		}
	})
	return err
}

// sharedFile is a sources.yaml that several lanes of this process write:
// each owns the sources it put.
type sharedFile struct {
	path  string
	mu    sync.Mutex
	lanes map[string][]static.Source
}

var (
	sharedMu    sync.Mutex
	sharedFiles = map[string]*sharedFile{}
)

func sharedSources(path string) *sharedFile {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	f := sharedFiles[path]
	if f == nil {
		f = &sharedFile{path: path, lanes: map[string][]static.Source{}}
		sharedFiles[path] = f
	}
	return f
}

func (f *sharedFile) put(lane string, srcs []static.Source) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lanes[lane] = srcs
	return f.write()
}

func (f *sharedFile) remove(lane string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.lanes, lane)
	return f.write()
}

func (f *sharedFile) write() error {
	names := make([]string, 0, len(f.lanes))
	for n := range f.lanes {
		names = append(names, n)
	}
	sort.Strings(names)
	all := []static.Source{}
	for _, n := range names {
		all = append(all, f.lanes[n]...)
	}
	var buf bytes.Buffer
	if err := static.Emit(&buf, all); err != nil {
		return err
	}
	return writeFileAtomic(f.path, buf.Bytes())
}

// TerminatesSPICE: the proxy swaps its own credential for qemu's ticket.
func (k *kerbside) TerminatesSPICE() {}

// TerminateMethod says how the terminate routes were called (POST, or
// GET after a 405).
func (k *kerbside) TerminateMethod() string { return k.api.TerminateMethod() }
