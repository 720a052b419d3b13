package guestagent

import (
	"errors"

	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

type capture struct{}

func (a *agent) cmdPlay(cmd guestproto.Command) ([]string, error) { return nil, errors.New("todo") }
func (a *agent) cmdCaptureStart(cmd guestproto.Command) ([]string, error) {
	return nil, errors.New("todo")
}
func (a *agent) cmdCaptureStop() ([]string, error) { return nil, errors.New("todo") }
func isCCID(sys string) bool                       { return false }
func (a *agent) watchCCID(sys, dev string)         {}
func (a *agent) readATR() error                    { return errors.New("todo") }
