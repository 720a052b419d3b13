package proc

import (
	"fmt"

	"github.com/prometheus/procfs"
)

// Info is what the harness reads about a process from /proc.
type Info struct {
	PID  int
	PPID int
	// State is the one-letter state of /proc/PID/stat: R running,
	// S sleeping, Z zombie (exited, not yet reaped), …
	State string
	// StartTime is when the process started, in clock ticks after boot.
	// With PID it names one process across pid reuse.
	StartTime uint64
	// Cmdline is the process's argv (empty for kernel threads).
	Cmdline []string
}

// Alive reports whether the process runs: it exists and is not a zombie.
func (i Info) Alive() bool { return i.State != "Z" }

// Lookup reads pid's /proc entry. When there is no such process the
// error matches fs.ErrNotExist.
func Lookup(pid int) (Info, error) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return Info{}, err
	}
	p, err := fs.Proc(pid)
	if err != nil {
		return Info{}, err
	}
	return read(p)
}

// Alive reports whether pid exists and is not a zombie.
func Alive(pid int) bool {
	i, err := Lookup(pid)
	return err == nil && i.Alive()
}

// All lists the processes in /proc. One that exits while it is being
// read is left out.
func All() ([]Info, error) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return nil, err
	}
	ps, err := fs.AllProcs()
	if err != nil {
		return nil, err
	}
	out := make([]Info, 0, len(ps))
	for _, p := range ps {
		if i, err := read(p); err == nil {
			out = append(out, i)
		}
	}
	return out, nil
}

func read(p procfs.Proc) (Info, error) {
	st, err := p.Stat()
	if err != nil {
		return Info{}, fmt.Errorf("proc: %d: %w", p.PID, err)
	}
	argv, err := p.CmdLine()
	if err != nil {
		return Info{}, fmt.Errorf("proc: %d: %w", p.PID, err)
	}
	return Info{PID: p.PID, PPID: st.PPID, State: st.State, StartTime: st.Starttime, Cmdline: argv}, nil
}
