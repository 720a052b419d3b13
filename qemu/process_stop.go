package qemu

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/spiceharness/spiceharness/internal/proc"
	"github.com/spiceharness/spiceharness/internal/tail"
)

// exitError describes a finished attempt.
func (p *Process) exitError(pr *proc.Child) *ExitError {
	e := &ExitError{VM: p.String(), Argv: p.argv, Code: -1, Status: "unknown"}
	if st := pr.ProcessState(); st != nil {
		e.Status, e.Code = st.String(), st.ExitCode()
	} else if err := pr.WaitErr(); err != nil {
		e.Status = err.Error()
	}
	e.Log = tail.File(p.logPath, 20)
	e.Serial = tail.File(p.serialPath, 10)
	e.bind = bindFailedRE.MatchString(e.Log)
	return e
}

// watch waits for the running qemu to end, then records the exit and
// releases QMP.
func (p *Process) watch(pr *proc.Child) {
	defer close(p.watchDone)
	<-pr.Exited()
	e := p.exitError(pr)
	p.mon.close()
	p.core.exit(e)
	if !e.Expected {
		p.cfg.logger.Error("qemu: exited unexpectedly", "vm", p.String(), "status", e.Status)
	}
}

// Kill sends SIGKILL to qemu's process group and waits until qemu is
// reaped. The exit counts as expected. Killing an exited VM is a no-op.
func (p *Process) Kill() error {
	if p == nil || p.pr == nil {
		return nil
	}
	p.killMu.Lock()
	defer p.killMu.Unlock()
	select {
	case <-p.pr.Exited():
		return nil
	default:
	}
	p.core.expected.Store(true)
	if err := syscall.Kill(-p.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("qemu: %s: kill: %w", p, err)
	}
	select {
	case <-p.pr.Exited():
		<-p.watchDone
		return nil
	case <-time.After(killGrace):
		return fmt.Errorf("qemu: %s: still running %v after SIGKILL", p, killGrace)
	}
}

// Close shuts qemu down: QMP quit, up to 5 s for it to exit, then
// SIGKILL to the process group and a wait for the reap. It then removes
// the state dir (kept when HARNESS_KEEP=1). See VM.Close.
func (p *Process) Close() error {
	if p == nil {
		return nil
	}
	p.closeOnce.Do(func() { p.closeErr = p.shutdown() })
	return p.closeErr
}

func (p *Process) shutdown() error {
	crashed := p.core.crashed(p.pr != nil)
	var err error
	if p.pr != nil {
		err = p.core.quitOrKill(p.pr.Exited(), p.cfg.logger, p.Kill)
		<-p.watchDone
	}
	return p.core.finishClose(p.stateDir, p.cfg.keep, crashed, err)
}
