package harness

import (
	"context"
	"time"
)

// Cap returns the target's capability C, or a *CapabilityError naming
// capability c when the target lacks it:
//
//	term, err := harness.Cap[harness.Terminator](env, harness.CapTerminate)
func Cap[C any](e *Env, c Capability) (C, error) {
	if x, ok := e.target.(C); ok {
		return x, nil
	}
	var zero C
	return zero, &CapabilityError{Target: e.target.Name(), Cap: c}
}

// SessionID names the session a proxy `.vv` opened (capability
// terminate).
func (e *Env) SessionID(ctx context.Context, f *VVResponse) (string, error) {
	t, err := Cap[Terminator](e, CapTerminate)
	if err != nil {
		return "", err
	}
	return t.SessionID(ctx, f)
}

// Terminate ends a session through the target's API (capability
// terminate).
func (e *Env) Terminate(ctx context.Context, sessionID string) error {
	t, err := Cap[Terminator](e, CapTerminate)
	if err != nil {
		return err
	}
	return t.TerminateSession(ctx, sessionID)
}

// TerminateConsole ends every session of vm's console through the
// target's API (capability terminate).
func (e *Env) TerminateConsole(ctx context.Context, vm *VM) error {
	t, err := Cap[Terminator](e, CapTerminate)
	if err != nil {
		return err
	}
	return t.TerminateConsole(ctx, vm.Key)
}

// Session is the proxy's view of session id (capability session-state).
func (e *Env) Session(ctx context.Context, id string) (SessionState, error) {
	s, err := Cap[SessionStater](e, CapSessionState)
	if err != nil {
		return SessionState{}, err
	}
	return s.Session(ctx, id)
}

// Metric sums the proxy's series name whose labels match (name, value
// pairs) (capability metrics).
func (e *Env) Metric(ctx context.Context, name string, labels ...string) (float64, error) {
	m, err := Cap[MetricsReader](e, CapMetrics)
	if err != nil {
		return 0, err
	}
	return m.Metric(ctx, name, labels...)
}

// Audit returns the proxy's audit log (capability audit).
func (e *Env) Audit(ctx context.Context) ([]AuditEvent, error) {
	a, err := Cap[Auditor](e, CapAudit)
	if err != nil {
		return nil, err
	}
	return a.Audit(ctx)
}

// AuditCount counts the audit events of kind for session id.
func (e *Env) AuditCount(ctx context.Context, id, kind string) (int, error) {
	evs, err := e.Audit(ctx)
	n := 0
	for _, ev := range evs {
		if ev.Session == id && ev.Kind == kind {
			n++
		}
	}
	return n, err
}

// WaitIdle waits until the proxy holds no channel and no handshake
// (capability idle).
func (e *Env) WaitIdle(ctx context.Context) error {
	i, err := Cap[Idler](e, CapIdle)
	if err != nil {
		return err
	}
	return i.WaitIdle(ctx)
}

// ShutdownProxy shuts the proxy down gracefully (capability shutdown).
func (e *Env) ShutdownProxy(ctx context.Context) error {
	s, err := Cap[Shutdowner](e, CapShutdown)
	if err != nil {
		return err
	}
	return s.ShutdownProxy(ctx)
}

// RestartAPI restarts the target's `.vv` API alone (capability
// api-restart).
func (e *Env) RestartAPI(ctx context.Context) error {
	r, err := Cap[APIRestarter](e, CapAPIRestart)
	if err != nil {
		return err
	}
	return r.RestartAPI(ctx)
}

// PassTokenLifetime lets a minted token's lifetime pass (capability
// token-ttl): the target's token clock moves past it when the target can
// (in-process), else it waits the lifetime out. It returns the lifetime.
func (e *Env) PassTokenLifetime(ctx context.Context) (time.Duration, error) {
	l, err := Cap[TokenLifetime](e, CapTokenTTL)
	if err != nil {
		return 0, err
	}
	ttl := l.TokenTTL()
	past := ttl + ttl/10 + 10*time.Millisecond
	if err := l.AdvanceTokenClock(past); err == nil {
		return ttl, nil
	}
	// No clock to move: a real wait is the only way (see the
	// token-ttl capability: the target told us its lifetime).
	select {
	case <-ctx.Done():
		return ttl, context.Cause(ctx)
	case <-time.After(past):
	}
	return ttl, nil
}

// WebSocketOrigin is the Origin the target's WebSocket gateway accepts
// (capability websocket-origin).
func (e *Env) WebSocketOrigin() (string, error) {
	o, err := Cap[WebSocketOriginer](e, CapWebSocketOrigin)
	if err != nil {
		return "", err
	}
	return o.WebSocketOrigin(), nil
}

// WebSocketIdleTimeout is the idle limit of the target's WebSocket
// gateway (0: none known).
func (e *Env) WebSocketIdleTimeout() time.Duration {
	if i, ok := e.target.(WebSocketIdler); ok {
		return i.WebSocketIdleTimeout()
	}
	return 0
}
