package spice

import (
	"context"
	"io"
	"sync"
)

// streamBuf collects the payloads a channel's tap takes off its reader
// (spicevmc DATA, playback PCM) for a consumer that reads them as bytes.
// It never blocks the reader: what the peer sends is bounded by the test
// that makes it send.
type streamBuf struct {
	mu      sync.Mutex
	buf     []byte
	total   uint64
	end     error         // set when the channel ended
	changed chan struct{} // closed and replaced when data or end arrive
}

func newStreamBuf() *streamBuf { return &streamBuf{changed: make(chan struct{})} }

func (b *streamBuf) write(p []byte) {
	b.mu.Lock()
	b.buf = append(b.buf, p...)
	b.total += uint64(len(p))
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

func (b *streamBuf) finish(err error) {
	b.mu.Lock()
	if err == nil {
		err = io.EOF
	}
	b.end = err
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

// read copies what is buffered into p, waiting for at least one byte.
func (b *streamBuf) read(ctx context.Context, p []byte) (int, error) {
	for {
		b.mu.Lock()
		if len(b.buf) > 0 {
			n := copy(p, b.buf)
			b.buf = b.buf[n:]
			if len(b.buf) == 0 {
				b.buf = nil
			}
			b.mu.Unlock()
			return n, nil
		}
		if b.end != nil {
			err := b.end
			b.mu.Unlock()
			return 0, err
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// readFull reads exactly n bytes.
func (b *streamBuf) readFull(ctx context.Context, n int) ([]byte, error) {
	out := make([]byte, n)
	for got := 0; got < n; {
		m, err := b.read(ctx, out[got:])
		got += m
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return out[:got], err
		}
	}
	return out, nil
}

// buffered is how many bytes wait to be read.
func (b *streamBuf) buffered() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.buf)
}

// received is how many bytes arrived in all.
func (b *streamBuf) received() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.total
}
