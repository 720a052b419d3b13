package spice

import (
	"context"
	"sync"
)

// queue is an unbounded FIFO between one goroutine that must never block
// (a channel reader) and one that waits. Its size is bounded by the
// protocol feeding it (agent tokens), not by the queue.
type queue[T any] struct {
	mu     sync.Mutex
	items  []T
	signal chan struct{} // has a value when items may be non-empty
	closed bool
}

func newQueue[T any]() *queue[T] { return &queue[T]{signal: make(chan struct{}, 1)} }

func (q *queue[T]) push(v T) {
	q.mu.Lock()
	if !q.closed {
		q.items = append(q.items, v)
	}
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// close makes pop return false once the queue is empty.
func (q *queue[T]) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// pop waits for the next item; false when the queue is closed and
// empty, or ctx ended.
func (q *queue[T]) pop(ctx context.Context) (T, bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			v := q.items[0]
			var zero T
			q.items[0] = zero
			q.items = q.items[1:]
			more := len(q.items) > 0
			q.mu.Unlock()
			if more {
				select {
				case q.signal <- struct{}{}:
				default:
				}
			}
			return v, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			var zero T
			return zero, false
		}
		select {
		case <-q.signal:
		case <-ctx.Done():
			var zero T
			return zero, false
		}
	}
}

// dropQueue is a bounded FIFO that drops its oldest item when full, for
// messages a test may never read.
type dropQueue[T any] struct {
	ch      chan T
	dropped uint64
	mu      sync.Mutex
}

func newDropQueue[T any](n int) *dropQueue[T] { return &dropQueue[T]{ch: make(chan T, n)} }

func (q *dropQueue[T]) push(v T) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		select {
		case q.ch <- v:
			return
		default:
		}
		select {
		case <-q.ch:
			q.dropped++
		default:
		}
	}
}

func (q *dropQueue[T]) drops() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dropped
}
