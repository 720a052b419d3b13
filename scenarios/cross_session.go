package scenarios

import (
	"context"
	"fmt"
	"strings"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

// hijackKeys are typed on any channel that links with a foreign token:
// letters that nothing else in the scenario types.
const hijackKeys = "qz"

func init() {
	Register(Scenario{
		Name: "cross-session-tokens",
		Tier: Hardening,
		Description: "fresh, never-used tokens (of another console, of the same console, and an expired one) presented with a live session's id " +
			"on display, inputs and cursor channels neither join it nor reach its guest; nothing reaches qemu; the session still works",
		Requires:  []harness.Capability{harness.CapTerminatesSPICE},
		Exercises: ProxySPICE | ProxyAPI,
		Options:   []harness.Option{harness.VMs(2)},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			victimVM, otherVM := env.VM(0), env.VM(1)
			victim, _, err := env.Connect(ctx, harness.Proxy, victimVM)
			require.NoError(t, err, "the victim's session")
			defer victim.Close()
			// The victim has display and cursor open, and opens inputs
			// only after the tries: qemu refuses a second channel of a
			// type a session already has, so a hijacked inputs channel
			// is one the session does not have yet, and its keys would
			// reach the guest.
			display, err := victim.Open(ctx, spice.ChannelDisplay, 0)
			require.NoError(t, err, "the victim's display")
			require.NoError(t, display.InitDisplay(), "DISPLAY_INIT")
			_, _, err = display.WaitFirstDraw(ctx)
			require.NoError(t, err, "the victim's first draw")
			cursor, err := victim.Open(ctx, spice.ChannelCursor, 0)
			require.NoError(t, err, "the victim's cursor")
			_, err = cursor.WaitFor(ctx, spice.MsgCursorInit)
			require.NoError(t, err, "CURSOR_INIT")

			var tokens []foreignToken
			other, err := env.FetchVV(ctx, harness.Proxy, otherVM)
			require.NoError(t, err, "a proxy .vv of the other console")
			tokens = append(tokens, foreignToken{"a fresh token of another console", other, spice.ErrBadConnectionID})
			same, err := env.FetchVV(ctx, harness.Proxy, victimVM)
			require.NoError(t, err, "a proxy .vv of the victim's console")
			tokens = append(tokens, foreignToken{"a fresh token of the same console", same, spice.ErrBadConnectionID})

			wv, wo := victimVM.WatchConnections(), otherVM.WatchConnections()
			defer wv.Close()
			defer wo.Close()
			linked := tryForeignTokens(ctx, t, env, victim.ID, tokens)
			// The expired token comes last: moving the token clock
			// expires the fresh ones too.
			if harness.HasCapability(env.Target(), harness.CapTokenTTL) {
				expired, err := env.FetchVV(ctx, harness.Proxy, victimVM)
				require.NoError(t, err, "a proxy .vv to let expire")
				ttl, err := env.PassTokenLifetime(ctx)
				require.NoError(t, err, "let the token's lifetime pass")
				t.Logf("token lifetime %v passed", ttl)
				linked += tryForeignTokens(ctx, t, env, victim.ID, []foreignToken{{"an expired token of the same console", expired, spice.ErrPermissionDenied}})
			} else {
				t.Logf("the expired-token case is skipped: the proxy under test (%s) does not tell its token lifetime (the token-ttl capability); the other cases ran", env.Target().Name())
			}
			nothingReached(ctx, t, "the foreign tokens naming the victim's session", wv, wo)

			// The victim still works, and no key typed on a channel that
			// linked reached its guest (the victim's own keys, typed
			// after them, show first that the guest's input is current).
			inputs, err := victim.Open(ctx, spice.ChannelInputs, 0)
			require.NoError(t, err, "the victim opens inputs after the tries")
			_, err = inputs.WaitFor(ctx, spice.MsgInputsInit)
			require.NoError(t, err, "INPUTS_INIT")
			require.NoError(t, inputs.Type("ok"), "the victim types after the tries")
			waitSerial(ctx, t, victimVM, `ok`)
			if linked > 0 && strings.Contains(victimVM.SerialTail(5), hijackKeys) {
				t.Errorf("keys typed on a channel that linked with a foreign token reached the victim's guest (serial tail:\n%s)", victimVM.SerialTail(5))
			}
		},
	})
}

// foreignToken is a token that has opened no session, and the code this
// repository's proxy refuses it with when it names another session.
type foreignToken struct {
	what string
	f    *harness.VVResponse
	code spice.LinkErr
}

// tryForeignTokens presents each token with sessionID on a display,
// inputs and cursor channel, judging each link on its own, and types
// hijackKeys on any inputs channel that links. It returns how many
// linked.
func tryForeignTokens(ctx context.Context, t harness.T, env *harness.Env, sessionID uint32, tokens []foreignToken) int {
	t.Helper()
	linked := 0
	for _, tok := range tokens {
		for _, typ := range []spice.ChannelType{spice.ChannelDisplay, spice.ChannelInputs, spice.ChannelCursor} {
			what := fmt.Sprintf("%s naming the victim's session (%s)", tok.what, typ)
			ch, err := harness.DialerFor(tok.f).DialChannel(ctx, sessionID, typ, 0)
			if ch != nil {
				linked++
				if typ == spice.ChannelInputs {
					if err := ch.Type(hijackKeys); err != nil {
						t.Logf("%s: typing on it: %v", what, err)
					}
				}
			}
			if wantRefusedLink(t, ch, err, what) {
				ownCode(t, env, err, tok.code, what)
			}
		}
	}
	return linked
}
