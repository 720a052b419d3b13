package proc

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"
)

// Child is a started program.
type Child struct {
	Cmd    *exec.Cmd
	exited chan struct{}
	state  *os.ProcessState
	err    error
}

// Start starts cmd in its own process group with SIGKILL as its
// parent-death signal.
func Start(cmd *exec.Cmd) (*Child, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	c := &Child{Cmd: cmd, exited: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread() // the child is reaped by then
		err := cmd.Start()
		started <- err
		if err == nil {
			// cmd.Wait, not Process.Wait: it also finishes copying the
			// child's output and closes the pipes.
			werr := cmd.Wait()
			c.state = cmd.ProcessState
			if _, isExit := werr.(*exec.ExitError); !isExit {
				c.err = werr
			}
		}
		close(c.exited)
	}()
	if err := <-started; err != nil {
		<-c.exited
		return nil, err
	}
	return c, nil
}

// Pid is the child's pid (and process group id).
func (c *Child) Pid() int { return c.Cmd.Process.Pid }

// Exited is closed when the child has exited and been reaped.
func (c *Child) Exited() <-chan struct{} { return c.exited }

// Wait waits for the child to exit or ctx to end; it returns the exit
// error (nil for status 0), or ctx's error.
func (c *Child) Wait(ctx context.Context) error {
	select {
	case <-c.exited:
		return c.exitErr()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Child) exitErr() error {
	if c.err != nil {
		return c.err
	}
	if !c.state.Success() {
		return &exec.ExitError{ProcessState: c.state}
	}
	return nil
}

// ProcessState is the exit state (nil while running).
func (c *Child) ProcessState() *os.ProcessState {
	select {
	case <-c.exited:
		return c.state
	default:
		return nil
	}
}

// WaitErr is the error waiting for the child failed with (not its exit
// status), nil while it runs or after a normal wait.
func (c *Child) WaitErr() error {
	select {
	case <-c.exited:
		return c.err
	default:
		return nil
	}
}

// ErrKilled is returned by Stop when the child needed SIGKILL.
var ErrKilled = errors.New("proc: child ignored SIGTERM and was killed")

// Stop sends SIGTERM to the child's group, waits up to grace, then
// SIGKILLs the group and waits for the child. Safe to call after exit
// and more than once.
func (c *Child) Stop(grace time.Duration) error {
	select {
	case <-c.exited:
		syscall.Kill(-c.Pid(), syscall.SIGKILL) // stragglers in the group
		return nil
	default:
	}
	syscall.Kill(-c.Pid(), syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.exited:
		syscall.Kill(-c.Pid(), syscall.SIGKILL)
		return nil
	case <-t.C:
	}
	syscall.Kill(-c.Pid(), syscall.SIGKILL)
	<-c.exited
	return ErrKilled
}
