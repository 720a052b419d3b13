package qemu

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestChannelsOptionErrors(t *testing.T) {
	tests := []struct {
		name string
		opts []Option
		want string // in the error; "" means no error
	}{
		{"every channel", []Option{AllChannels()}, ""},
		{"given twice adds up", []Option{AllChannels(), AllChannels()}, "named twice"},
		{"same bools twice", []Option{Channels(AgentChannel(), AgentChannel(), Tablet(), Tablet())}, ""},
		{"agent port as port", []Option{Channels(PortChannel(AgentPortName))}, "use AgentChannel()"},
		{"webdav port as port", []Option{Channels(PortChannel("org.spice-space.webdav.1"))}, "use WebDAVChannel()"},
		{"port with comma", []Option{Channels(PortChannel("org.a,b"))}, "[A-Za-z0-9._-]"},
		{"empty port", []Option{Channels(PortChannel(""))}, "[A-Za-z0-9._-]"},
		{"usbredir 0", []Option{Channels(USBRedirChannels(0))}, "want 1..6"},
		{"usbredir 7", []Option{Channels(USBRedirChannels(7))}, "want 1..6"},
		{"usbredir counts differ", []Option{Channels(USBRedirChannels(1)), Channels(USBRedirChannels(2))}, "USBRedirChannels(1) given already"},
		{"heads 5", []Option{Channels(DisplayHeads(5))}, "want 1..4"},
		{"heads differ", []Option{AllChannels(), Channels(DisplayHeads(3))}, "DisplayHeads(2) given already"},
		{"streaming bad", []Option{Channels(StreamingVideo("sometimes"))}, "want off, all or filter"},
		{"streaming differs", []Option{AllChannels(), Channels(StreamingVideo(StreamingOff))}, `StreamingVideo("all") given already`},
		{"zero channel", []Option{Channels(Channel{})}, "a zero Channel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newConfig(tt.opts...)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("unexpected error (-want +got):\n%s", cmp.Diff(tt.want, err))
			}
		})
	}
}

func TestChannelString(t *testing.T) {
	var got []string
	for _, ch := range EveryChannel() {
		got = append(got, ch.String())
	}
	want := []string{`AgentChannel()`, `PortChannel("org.spice-space.harness.echo")`, `WebDAVChannel()`, `USBRedirChannels(2)`,
		`SmartcardChannel()`, `AudioChannels()`, `DisplayHeads(2)`, `StreamingVideo("all")`, `Tablet()`}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("unexpected names (-want +got):\n%s", diff)
	}
}
