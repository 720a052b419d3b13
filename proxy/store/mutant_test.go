package store

import (
	"errors"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/internal/mutant"
	"github.com/spiceharness/spiceharness/static"
)

// A token that opened no session of its own never joins another one;
// the bind-claimed-session mutant lets it join the session whose SPICE id
// it names, fresh or expired, of any console.
func TestFreshTokensJoinNoClaimedSession(t *testing.T) {
	k2 := static.Key{Source: "lab", UUID: "u2"}
	for _, mutated := range []bool{false, true} {
		s, clk := newTestStore(t)
		if mutated {
			mutant.Enable(s, mutant.BindClaimedSession)
			t.Cleanup(func() { mutant.Disable(s) })
		}
		victim, _ := s.Mint(k1)
		l, err := s.Authorize(victim.Token, true, 0)
		if err != nil {
			t.Fatal(err)
		}
		l.Established(0x5eed)
		other, _ := s.Mint(k2)
		same, _ := s.Mint(k1)
		expired, _ := s.Mint(k1)
		for _, tok := range []struct{ what, token string }{{"another console's", other.Token}, {"the same console's", same.Token}} {
			l, err := s.Authorize(tok.token, false, 0x5eed)
			switch {
			case !mutated && !errors.Is(err, ErrNoSession):
				t.Errorf("a fresh token of %s naming a live session: %v, want ErrNoSession", tok.what, err)
			case mutated && (err != nil || l.SessionID != victim.SessionID || l.Target.Key != k1):
				t.Errorf("mutant: a fresh token of %s naming a live session: %+v, %v; want a lease on the victim's session", tok.what, l, err)
			}
		}
		clk.add(2 * time.Minute)
		l, err = s.Authorize(expired.Token, false, 0x5eed)
		switch {
		case !mutated && !errors.Is(err, ErrTokenExpired):
			t.Errorf("an expired token naming a live session: %v, want ErrTokenExpired", err)
		case mutated && (err != nil || l.SessionID != victim.SessionID):
			t.Errorf("mutant: an expired token naming a live session: %+v, %v", l, err)
		}
	}
}
