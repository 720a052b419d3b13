package spicetest

import (
	"net"
	"sync"

	"github.com/spiceharness/spiceharness/proxy/spice"
)

// VMCDevice is a spicevmc channel of the test server and the guest end
// of its device: a usbredir device, or a named port (a webdav channel
// when the name is under org.spice-space.webdav.). What the client
// sends in SPICEVMC_DATA is written to Conn; what is written to the
// other end of Conn reaches the client as DATA (held until a client has
// the channel linked). The server closes Conn when it closes.
type VMCDevice struct {
	Type spice.ChannelType // ChannelUsbredir, ChannelPort or ChannelWebdav
	Name string            // port and webdav: the port's name
	Conn net.Conn
}

// vmcDevice is a VMCDevice at run time.
type vmcDevice struct {
	VMCDevice
	id uint8

	mu     sync.Mutex
	cond   *sync.Cond
	client *serverChannel
	closed bool
}

func (s *Server) startVMC() {
	n := map[spice.ChannelType]uint8{}
	for _, d := range s.VMC {
		v := &vmcDevice{VMCDevice: d, id: n[d.Type]}
		v.cond = sync.NewCond(&v.mu)
		n[d.Type]++
		s.vmc = append(s.vmc, v)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			v.readVMCDevice()
		}()
	}
}

func (s *Server) vmcFor(t spice.ChannelType, id uint8) *vmcDevice {
	for _, v := range s.vmc {
		if v.Type == t && v.id == id {
			return v
		}
	}
	return nil
}

func (v *vmcDevice) close() {
	v.mu.Lock()
	v.closed = true
	v.cond.Broadcast()
	v.mu.Unlock()
	v.Conn.Close()
}

// attach makes ch the channel's client (PORT_INIT first for ports, the
// guest end counted as open).
func (v *vmcDevice) attach(ch *serverChannel) {
	if v.Type == spice.ChannelPort || v.Type == spice.ChannelWebdav {
		ch.w.WriteMessage(spice.MsgPortInit, spice.PortInit{Name: v.Name, Opened: true}.Marshal())
	}
	v.mu.Lock()
	v.client = ch
	v.cond.Broadcast()
	v.mu.Unlock()
}

func (v *vmcDevice) detach(ch *serverChannel) {
	v.mu.Lock()
	if v.client == ch {
		v.client = nil
	}
	v.mu.Unlock()
}

// readVMCDevice sends what the guest end writes to the linked client.
func (v *vmcDevice) readVMCDevice() {
	buf := make([]byte, 64<<10)
	for {
		n, err := v.Conn.Read(buf)
		if n > 0 {
			v.mu.Lock()
			for v.client == nil && !v.closed {
				v.cond.Wait()
			}
			c := v.client
			v.mu.Unlock()
			if c != nil {
				c.w.WriteMessage(spice.MsgSpicevmcData, append([]byte(nil), buf[:n]...))
			}
		}
		if err != nil {
			return
		}
	}
}
