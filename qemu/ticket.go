package qemu

import (
	"context"
	"crypto/rand"
	"fmt"
	"strconv"
	"time"

	"github.com/digitalocean/go-qemu/qmp/raw"
)

func (c *core) SetTicket(ctx context.Context) (string, error) {
	return c.setTicket(ctx, "keep", "never", "set ticket")
}

func (c *core) RotateTicket(ctx context.Context) (string, error) {
	return c.setTicket(ctx, "disconnect", "never", "set ticket")
}

// setTicket sets a fresh ticket, then its expiry ("never", or "+SECS").
// In that order the VM is never open to an old ticket: between the two
// calls the new ticket exists but nobody holds it yet, and the other
// order would revive a ticket whose expiry had passed.
func (c *core) setTicket(ctx context.Context, connected, expiry, what string) (string, error) {
	t := newTicket()
	err := c.do(ctx, func(m *raw.Monitor) error {
		if err := m.SetPassword("spice", t, &connected); err != nil {
			return err
		}
		c.mu.Lock()
		c.ep.Ticket = t
		c.mu.Unlock()
		return m.ExpirePassword("spice", expiry)
	})
	if err != nil {
		return "", fmt.Errorf("qemu: %s: %s: %w", c.self, what, redact(err, t))
	}
	return t, nil
}

// MinTicketLifetime is the shortest lifetime SetTicketFor takes: qemu
// counts it in whole seconds on two clocks, and a lifetime that rounds
// to 0 would mean "never" to spice-server.
const MinTicketLifetime = 2 * time.Second

func (c *core) SetTicketFor(ctx context.Context, d time.Duration) (string, time.Time, error) {
	if d < MinTicketLifetime {
		return "", time.Time{}, configErr("SetTicketFor", d, "want at least %v", MinTicketLifetime)
	}
	secs := int64((d + time.Second - 1) / time.Second)
	t, err := c.setTicket(ctx, "keep", "+"+strconv.FormatInt(secs, 10), "set expiring ticket")
	if err != nil {
		return "", time.Time{}, err
	}
	return t, time.Now().Add(time.Duration(secs) * time.Second), nil
}

func (c *core) ExpireTicket(ctx context.Context) error {
	err := c.do(ctx, func(m *raw.Monitor) error { return m.ExpirePassword("spice", "now") })
	if err != nil {
		return fmt.Errorf("qemu: %s: expire ticket: %w", c.self, err)
	}
	return nil
}

// TicketLen is the length of the tickets SetTicket makes: 32 characters
// of [A-Za-z0-9] (~190 bits), well under spice-server's 59-byte limit.
const TicketLen = 32

const ticketAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// newTicket draws TicketLen characters from crypto/rand without modulo
// bias.
func newTicket() string {
	b := make([]byte, 0, TicketLen)
	var buf [64]byte
	for len(b) < TicketLen {
		rand.Read(buf[:]) // never fails (Go 1.24+)
		for _, x := range buf {
			if x < 248 { // 248 = 4*62: keep the draw unbiased
				b = append(b, ticketAlphabet[x%62])
				if len(b) == TicketLen {
					break
				}
			}
		}
	}
	return string(b)
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var u [16]byte
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
