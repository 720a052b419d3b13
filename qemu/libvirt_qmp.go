package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/digitalocean/go-libvirt"
)

// Why not qmp.NewLibvirtRPCMonitor: it goes through libvirt.Run, which
// turns a QMP error into errors.New(desc) (class dropped), and it wants a
// pre-dialed net.Conn through the deprecated libvirt.New. libvirtMonitor
// below sends QMP with go-libvirt's QEMUDomainMonitorCommand (the same
// RPC) and parses the reply itself, so *QMPError keeps the class; qmp/raw
// runs on top of it like on the direct backend.

// libvirtMonitor runs QMP through libvirt's qemu-monitor-command.
type libvirtMonitor struct{ d *Domain }

func (m *libvirtMonitor) run(ctx context.Context, cmd []byte) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(cmd, &obj); err != nil {
		return nil, fmt.Errorf("qemu: QMP command is not a JSON object: %w", err)
	}
	name := commandName(obj)
	reply, err := call(ctx, func() (string, error) {
		return m.d.l.QEMUDomainMonitorCommand(m.d.dom, string(cmd), 0)
	})
	if err != nil {
		select {
		case <-m.d.stopped:
			return nil, fmt.Errorf("qemu: QMP %s: %w: %v", name, errMonitorClosed, err)
		default:
		}
		var lerr libvirt.Error
		if errors.As(err, &lerr) && (lerr.Code == uint32(libvirt.ErrOperationInvalid) || lerr.Code == uint32(libvirt.ErrNoDomain)) {
			// "domain is not running": the stop event is on its way.
			return nil, fmt.Errorf("qemu: QMP %s: %w: %v", name, errMonitorClosed, err)
		}
		return nil, fmt.Errorf("qemu: QMP %s via libvirt: %w", name, err)
	}
	return checkReply(name, []byte(reply))
}

func (m *libvirtMonitor) close() error { return nil }

// forwardQMPEvents publishes the domain's QMP events, which libvirt
// relays, until evCtx ends.
func (d *Domain) forwardQMPEvents(ctx, evCtx context.Context) error {
	qev, err := call(ctx, func() (<-chan libvirt.DomainEvent, error) { return d.l.SubscribeQEMUEvents(evCtx, d.cfg.name) })
	if err != nil {
		return fmt.Errorf("qemu: %s: QMP events: %w", d, err)
	}
	go func() {
		for e := range qev { // drained always: go-libvirt blocks on this channel
			var data map[string]any
			json.Unmarshal(e.Details, &data)
			d.core.publish(Event{Name: e.Event, Data: data, Time: time.Unix(int64(e.Seconds), int64(e.Microseconds)*1000)})
		}
	}()
	return nil
}
