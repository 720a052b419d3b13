package vdagent

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spiceharness/spiceharness/proxy/spice"
)

// xfer is one file being received.
type xfer struct {
	start spice.FileXferStart
	got   uint64
	hash  hash.Hash
	file  *os.File // with Options.FileDir
}

func (x *xfer) abort() {
	if x.file != nil {
		name := x.file.Name()
		x.file.Close()
		os.Remove(name)
	}
}

func (a *Agent) xferStatus(b []byte) {
	s, err := spice.ParseFileXferStatus(b)
	if err != nil {
		a.report(TypeAgentError, "what", "file-xfer-status", "err", err.Error())
		return
	}
	a.mu.Lock()
	x := a.xfers[s.ID]
	delete(a.xfers, s.ID)
	a.mu.Unlock()
	if x != nil {
		x.abort()
		a.reportFile(x, "cancelled")
	}
}

func (a *Agent) reply(id, result uint32) {
	a.send(spice.AgentFileXferStatus, spice.FileXferStatus{ID: id, Result: result}.Marshal())
}

// safeName is the base name a received file is written under, or "" if
// the name is not a plain file name.
func safeName(name string) string {
	base := filepath.Base(name)
	if base != name || base == "." || base == ".." || strings.ContainsAny(base, "/\x00") {
		return ""
	}
	return base
}

// xferStart answers FILE_XFER_START with CAN_SEND_DATA (or ERROR).
func (a *Agent) xferStart(b []byte) {
	s, err := spice.ParseFileXferStart(b)
	if err != nil {
		a.report(TypeAgentError, "what", "file-xfer-start", "err", err.Error())
		if len(b) >= 4 {
			a.reply(s.ID, spice.XferFailed)
		}
		return
	}
	x := &xfer{start: s, hash: sha256.New()}
	if a.opts.FileDir != "" {
		name := safeName(s.Name)
		if name == "" {
			a.report(TypeAgentError, "what", "file-xfer-start", "err", "refused file name "+strconv.Quote(s.Name))
			a.reply(s.ID, spice.XferFailed)
			return
		}
		f, err := os.OpenFile(filepath.Join(a.opts.FileDir, name), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
		if err != nil {
			a.report(TypeAgentError, "what", "file-xfer-start", "err", err.Error())
			a.reply(s.ID, spice.XferFailed)
			return
		}
		x.file = f
	}
	a.mu.Lock()
	old := a.xfers[s.ID]
	a.xfers[s.ID] = x
	a.mu.Unlock()
	if old != nil {
		old.abort()
	}
	a.reply(s.ID, spice.XferCanSendData)
}

// xferData takes a FILE_XFER_DATA: SUCCESS once the announced size
// arrived, ERROR past it.
func (a *Agent) xferData(b []byte) {
	id, data, err := spice.ParseFileXferData(b)
	if err != nil {
		a.report(TypeAgentError, "what", "file-xfer-data", "err", err.Error())
		return
	}
	a.mu.Lock()
	x := a.xfers[id]
	a.mu.Unlock()
	if x == nil {
		a.report(TypeAgentError, "what", "file-xfer-data", "err", fmt.Sprintf("data for unknown transfer %d", id))
		return
	}
	x.got += uint64(len(data))
	x.hash.Write(data)
	if x.file != nil {
		if _, err := x.file.Write(data); err != nil {
			a.finish(x, spice.XferFailed, "error")
			return
		}
	}
	switch {
	case x.got > x.start.Size:
		a.finish(x, spice.XferFailed, "error")
	case x.got == x.start.Size:
		if x.file != nil {
			if err := x.file.Close(); err != nil {
				x.file = nil
				a.finish(x, spice.XferFailed, "error")
				return
			}
			x.file = nil
		}
		a.finish(x, spice.XferSuccess, "success")
	}
}

func (a *Agent) finish(x *xfer, result uint32, status string) {
	a.mu.Lock()
	delete(a.xfers, x.start.ID)
	a.mu.Unlock()
	if result != spice.XferSuccess {
		x.abort()
	}
	a.reply(x.start.ID, result)
	a.reportFile(x, status)
}

func (a *Agent) reportFile(x *xfer, status string) {
	a.report(TypeFile, "id", strconv.Itoa(int(x.start.ID)), "name", x.start.Name, "size", strconv.FormatUint(x.start.Size, 10),
		"len", strconv.FormatUint(x.got, 10), "sha256", hex.EncodeToString(x.hash.Sum(nil)), "status", status)
}
