package spice

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// KeyBits is the RSA modulus size of the ticket exchange.
const KeyBits = 1024

// ErrPasswordTooLong: spice-gtk refuses passwords over 60 bytes, and
// spice-server keeps only 59 of a 60-byte one.
var ErrPasswordTooLong = errors.New("spice: password is too long")

// EncryptTicket encrypts password + NUL with RSA-OAEP (SHA-1, MGF1-SHA-1,
// empty label) under pubKeyDER, the SubjectPublicKeyInfo from a link
// reply. The result is TicketSize bytes.
func EncryptTicket(pubKeyDER []byte, password string) ([]byte, error) {
	pub, err := x509.ParsePKIXPublicKey(pubKeyDER)
	if err != nil {
		return nil, fmt.Errorf("%w: server public key: %v", ErrMalformed, err)
	}
	rsaPub, ok := pub.(*rsa.PublicKey)
	if !ok || rsaPub.Size() != TicketSize {
		return nil, fmt.Errorf("%w: server public key is not RSA-%d", ErrMalformed, KeyBits)
	}
	msg := make([]byte, 0, len(password)+1)
	msg = append(append(msg, password...), 0)
	return rsa.EncryptOAEP(sha1.New(), rand.Reader, rsaPub, msg, nil)
}

// DecryptTicket decrypts a 128-byte ticket and returns the password: the
// plaintext up to its first NUL (the NUL is optional, as in
// spice-server).
func DecryptTicket(key *rsa.PrivateKey, ticket []byte) (string, error) {
	if len(ticket) != TicketSize {
		return "", fmt.Errorf("%w: ticket of %d bytes", ErrMalformed, len(ticket))
	}
	pt, err := rsa.DecryptOAEP(sha1.New(), nil, key, ticket, nil)
	if err != nil {
		return "", fmt.Errorf("%w: ticket does not decrypt", ErrMalformed)
	}
	if i := bytes.IndexByte(pt, 0); i >= 0 {
		pt = pt[:i]
	}
	return string(pt), nil
}

// MarshalPubKey returns key's public half as the 162-byte
// SubjectPublicKeyInfo a link reply carries.
func MarshalPubKey(key *rsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	if len(der) != PubKeySize {
		return nil, fmt.Errorf("spice: public key encodes to %d bytes, want %d", len(der), PubKeySize)
	}
	return der, nil
}

// LinkKey is a one-use RSA-1024 key pair with its encoded public key.
type LinkKey struct {
	Private *rsa.PrivateKey
	Public  []byte // SubjectPublicKeyInfo, PubKeySize bytes
}

// GenerateLinkKey makes a fresh LinkKey.
func GenerateLinkKey() (*LinkKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, KeyBits)
	if err != nil {
		return nil, err
	}
	pub, err := MarshalPubKey(k)
	if err != nil {
		return nil, err
	}
	return &LinkKey{Private: k, Public: pub}, nil
}

// KeyPool hands out fresh link keys generated ahead of time by a
// background goroutine, so a link reply never waits on RSA key
// generation. Each key is handed out once. When the pool is empty (a
// burst of links), Get waits for the first of two: the background
// goroutine's next key, or a turn to generate one inline (counted in
// Misses either way). At most GOMAXPROCS keys are generated inline at a
// time and turns are taken in arrival order, so in a burst the first
// links get their keys first instead of all of them sharing the CPU and
// finishing late together.
//
// While the pool is at least half full, the background goroutine tops
// it up only once no key has been taken for RefillQuiet: links come in
// bursts (a session's channels, within ~100 ms), and a key generated
// during one (~10 ms of CPU) competes with the session's own work — the
// backend's key generation and the client's — on a small machine.
// Below half it refills at once. The zero KeyPool is not usable; make
// one with NewKeyPool and stop it with Close.
type KeyPool struct {
	keys    chan *LinkKey
	inline  chan struct{} // turns to generate inline
	done    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
	lastGet atomic.Int64 // unix nanos of the last Get
	quiet   time.Duration
	taken   chan struct{} // a Get happened (capacity 1)
	made    atomic.Uint64 // keys the background goroutine generated

	hits, misses atomic.Uint64
}

// RefillQuiet is how long a KeyPool at least half full waits after the
// last key was taken before it generates the next one.
const RefillQuiet = 100 * time.Millisecond

// NewKeyPool starts a pool that keeps up to size keys ready
// (size <= 0 means 16).
func NewKeyPool(size int) *KeyPool { return newKeyPool(size, RefillQuiet) }

func newKeyPool(size int, quiet time.Duration) *KeyPool {
	if size <= 0 {
		size = 16
	}
	p := &KeyPool{keys: make(chan *LinkKey, size), inline: make(chan struct{}, runtime.GOMAXPROCS(0)), done: make(chan struct{}), quiet: quiet, taken: make(chan struct{}, 1)}
	p.wg.Add(1)
	go p.fillKeyPool()
	return p
}

func (p *KeyPool) fillKeyPool() {
	defer p.wg.Done()
	for {
		if !p.waitQuiet() {
			return
		}
		k, err := GenerateLinkKey()
		if err != nil {
			continue // crypto/rand does not fail on Linux; keep trying
		}
		p.made.Add(1)
		select {
		case p.keys <- k:
		case <-p.done:
			return
		}
	}
}

// waitQuiet waits until the pool needs a key now: it is below half, or
// no key was taken for RefillQuiet. False when the pool is closed.
func (p *KeyPool) waitQuiet() bool {
	for 2*len(p.keys) >= cap(p.keys) {
		wait := p.quiet - time.Since(time.Unix(0, p.lastGet.Load()))
		if wait <= 0 {
			return true
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-p.taken: // look again: the pool may be below half now
			t.Stop()
		case <-p.done:
			t.Stop()
			return false
		}
	}
	return true
}

// Get returns a key nobody else has had.
func (p *KeyPool) Get() (*LinkKey, error) {
	p.lastGet.Store(time.Now().UnixNano())
	defer func() {
		select {
		case p.taken <- struct{}{}:
		default:
		}
	}()
	select {
	case k := <-p.keys:
		p.hits.Add(1)
		return k, nil
	default:
	}
	p.misses.Add(1)
	select {
	case k := <-p.keys:
		return k, nil
	case p.inline <- struct{}{}:
		defer func() { <-p.inline }()
		return GenerateLinkKey()
	}
}

// Stats reports keys served from the pool and keys Get had to wait for.
func (p *KeyPool) Stats() (hits, misses uint64) { return p.hits.Load(), p.misses.Load() }

// Close stops the background generator and waits for it.
func (p *KeyPool) Close() {
	p.once.Do(func() { close(p.done) })
	p.wg.Wait()
}
