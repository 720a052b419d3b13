package poll_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/internal/poll"
)

func ExampleUntil() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	n := 0
	err := poll.Until(ctx, time.Millisecond, func(context.Context) error {
		if n++; n < 3 {
			return fmt.Errorf("only %d", n)
		}
		return nil
	})
	fmt.Println(n, err)
	// Output: 3 <nil>
}

func TestUntilKeepsLastError(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	tries := 0
	err := poll.Until(ctx, time.Millisecond, func(context.Context) error {
		tries++
		return fmt.Errorf("try %d: %w", tries, fs.ErrNotExist)
	})
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("want both the deadline and the check's error, got %v", err)
	}
	var pe *poll.Error
	if !errors.As(err, &pe) {
		t.Fatalf("not a *poll.Error: %T", err)
	}
	if pe.Tries != tries || pe.Last == nil || pe.Last.Error() != fmt.Sprintf("try %d: file does not exist", tries) {
		t.Errorf("unexpected *Error %+v after %d tries", pe, tries)
	}
}

func TestUntilCustomCause(t *testing.T) {
	boom := errors.New("qemu exited")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(boom)
	calls := 0
	err := poll.Until(ctx, 0, func(context.Context) error { calls++; return nil })
	if !errors.Is(err, boom) || calls != 0 {
		t.Fatalf("ended ctx: want its cause and no check, got %v after %d checks", err, calls)
	}
}
