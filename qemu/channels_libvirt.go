package qemu

import "libvirt.org/go/libvirtxml"

// libvirtUSBPorts is the port count of the qemu-xhci controller (libvirt
// passes it as p2= and p3=), as on the direct backend.
const libvirtUSBPorts = 8

// libvirtAudioID links the <sound> device to its <audio> backend.
const libvirtAudioID = 1

// addToDomain adds the Channels options to a domain's devices, the
// libvirt way of writing what parts() puts on qemu's command line:
// libvirt adds the virtio-serial controller for the channels and the
// usb-ccid reader for the smartcard itself, and numbers every id.
func (s *channelSet) addToDomain(devs *libvirtxml.DomainDeviceList, spice *libvirtxml.DomainGraphicSpice) {
	if s.usb() {
		ports := uint(libvirtUSBPorts)
		for i, c := range devs.Controllers {
			if c.Type == "usb" {
				devs.Controllers[i] = libvirtxml.DomainController{Type: "usb", Model: "qemu-xhci", USB: &libvirtxml.DomainControllerUSB{Port: &ports}}
			}
		}
	}
	vmc := func() *libvirtxml.DomainChardevSource {
		return &libvirtxml.DomainChardevSource{SpiceVMC: &libvirtxml.DomainChardevSourceSpiceVMC{}}
	}
	port := func(name string) libvirtxml.DomainChannel {
		return libvirtxml.DomainChannel{
			Source: &libvirtxml.DomainChardevSource{SpicePort: &libvirtxml.DomainChardevSourceSpicePort{Channel: name}},
			Target: &libvirtxml.DomainChannelTarget{VirtIO: &libvirtxml.DomainChannelTargetVirtIO{Name: name}},
		}
	}
	if s.agent {
		devs.Channels = append(devs.Channels, libvirtxml.DomainChannel{
			Source: vmc(),
			Target: &libvirtxml.DomainChannelTarget{VirtIO: &libvirtxml.DomainChannelTargetVirtIO{Name: AgentPortName}},
		})
	}
	if s.webdav {
		devs.Channels = append(devs.Channels, port(WebDAVPortName))
	}
	for _, name := range s.ports {
		devs.Channels = append(devs.Channels, port(name))
	}
	for range s.usbredir {
		devs.RedirDevs = append(devs.RedirDevs, libvirtxml.DomainRedirDev{Bus: "usb", Source: vmc()})
	}
	if s.smartcard {
		devs.Smartcards = append(devs.Smartcards, libvirtxml.DomainSmartcard{Passthrough: vmc()})
	}
	if s.tablet {
		devs.Inputs = append(devs.Inputs, libvirtxml.DomainInput{Type: "tablet", Bus: "usb"})
	}
	if s.audio {
		devs.Sounds = append(devs.Sounds, libvirtxml.DomainSound{
			Model: "ich6", // intel-hda
			Codec: []libvirtxml.DomainSoundCodec{{Type: "duplex"}},
			Audio: &libvirtxml.DomainSoundAudio{ID: libvirtAudioID},
		})
		devs.Audios = append(devs.Audios, libvirtxml.DomainAudio{ID: libvirtAudioID, SPICE: &libvirtxml.DomainAudioSPICE{}})
	}
	for i := 1; i < s.heads; i++ {
		devs.Videos = append(devs.Videos, libvirtxml.DomainVideo{Model: libvirtxml.DomainVideoModel{Type: "qxl"}})
	}
	if s.streaming != "" {
		spice.Streaming = &libvirtxml.DomainGraphicSpiceStreaming{Mode: s.streaming}
	}
}
