package scenarios

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

// The judge of refusals. spice-gtk treats every non-OK link answer alike
// (it reports the channel's error and stops), and a connection closed
// before the OK link result too: a proxy may refuse with any code, or
// just close. A CONNECT proxy refuses with an HTTP error status, a
// WebSocket gateway with an HTTP error before the upgrade or a close
// frame (spice-html5 shows either at once). What a refusal must not be is an OK followed by nothing,
// or silence. Scenarios then prove the stronger property themselves:
// nothing reached qemu (ConnWatch.Barrier) and the victim still works.
// The exact code this repository's proxy answers with is its own
// convention, checked against it alone (ownCode).

// refusal describes how a link attempt ended: ok when it was a refusal
// as SPICE clients see one, and in words either way ("PERMISSION_DENIED
// at link result", "closed before the link result", "hung: …").
func refusal(err error) (how string, ok bool) {
	if err == nil {
		return "linked: the proxy accepted the channel", false
	}
	var le *spice.LinkError
	if !errors.As(err, &le) {
		return fmt.Sprintf("not a link outcome: %v", err), false
	}
	switch {
	case le.Code != spice.LinkOK:
		return fmt.Sprintf("%s at %s", le.Code.Name(), le.Step), true
	case le.Step == spice.StepProxy:
		if pe, ok := proxyRefusal(err); ok {
			return fmt.Sprintf("the CONNECT proxy answered %d", pe.Status), true
		}
		return fmt.Sprintf("the CONNECT proxy neither opened the tunnel nor answered with an error: %v", le.Err), false
	case le.Step == spice.StepWebSocket:
		// An HTTP error before the upgrade: spice-html5 shows it at once.
		var we *spice.WebSocketError
		if errors.As(err, &we) && we.Status >= 400 {
			return fmt.Sprintf("the WebSocket gateway refused the upgrade with %d", we.Status), true
		}
		return fmt.Sprintf("the WebSocket gateway neither upgraded nor answered with an error: %v", le.Err), false
	case timedOut(err):
		return fmt.Sprintf("hung: no link answer and no close at %s within the link deadline (%v)", le.Step, le.Err), false
	case le.Step != spice.StepMainInit && webSocketClosed(err):
		code, _ := spice.WebSocketCloseStatus(err)
		return fmt.Sprintf("the WebSocket gateway closed the socket (code %d) before the OK link result (at %s)", code, le.Step), true
	case le.Step == spice.StepMainInit:
		return fmt.Sprintf("linked (OK), then no MAIN_INIT: %v", le.Err), false
	case le.Step == spice.StepDial || le.Step == spice.StepTLS:
		return fmt.Sprintf("the proxy could not be reached (%s): %v", le.Step, le.Err), false
	case closed(err):
		return fmt.Sprintf("closed before the OK link result (at %s)", le.Step), true
	}
	return fmt.Sprintf("unexpected link failure at %s: %v", le.Step, le.Err), false
}

// webSocketClosed reports a WebSocket close frame from the peer.
func webSocketClosed(err error) bool {
	code, _ := spice.WebSocketCloseStatus(err)
	return code >= 0
}

// timedOut reports a deadline: the peer neither answered nor closed.
func timedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// closed reports the peer closing (or resetting) the connection.
func closed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

// wantRefusedLink fails t (without ending the scenario: the checks after
// it are independent) unless the link attempt that returned ch, err was
// refused: any non-OK link answer, or a close before OK. A channel that
// did link is closed. It reports whether the link was refused.
func wantRefusedLink(t harness.T, ch *spice.Channel, err error, what string) bool {
	t.Helper()
	if ch != nil {
		ch.Close()
	}
	how, ok := refusal(err)
	if !ok {
		t.Errorf("%s: want a refusal (a non-OK link reply or result, or a close before OK), got: %s", what, how)
		return false
	}
	t.Logf("%s: refused (%s)", what, how)
	return true
}

// wantRefusedSession is wantRefusedLink for a whole session (Connect).
func wantRefusedSession(t harness.T, s *spice.Session, err error, what string) bool {
	t.Helper()
	if s != nil {
		s.Close()
	}
	return wantRefusedLink(t, nil, err, what)
}

// ownCode checks, against this repository's proxy only, the link code it
// refuses with (its convention; another proxy may refuse with any code,
// or close). Failing it does not end the scenario.
func ownCode(t harness.T, env *harness.Env, err error, code spice.LinkErr, what string) {
	t.Helper()
	if !harness.HasCapability(env.Target(), harness.CapInProcess) {
		return
	}
	if got, _ := spice.CodeOf(err); got != code {
		t.Errorf("%s: unexpected refusal code of this repository's proxy (its convention) (-want +got):\n-%s\n+%s (%v)", what, code.Name(), got.Name(), err)
	}
}
