package main

import (
	"context"
	"os/signal"
	"syscall"
	"testing"
	"time"
)

// TestCancelledBySignal: a context ended by signal.NotifyContext counts as
// a signal (its cause, signal.signalError, also matches context.Canceled),
// a plain cancel or a deadline does not. Getting this wrong made serve
// take the signal's own copy on sigc for a second signal now and then,
// and end the drain at once.
func TestCancelledBySignal(t *testing.T) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGUSR1)
	defer stop()
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("NotifyContext was not cancelled by SIGUSR1")
	}
	if !cancelledBySignal(ctx) {
		t.Errorf("cancelledBySignal(signal) = false (cause %v)", context.Cause(ctx))
	}

	plain, cancel := context.WithCancel(context.Background())
	cancel()
	if cancelledBySignal(plain) {
		t.Error("cancelledBySignal(cancel()) = true")
	}
	late, cancel2 := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel2()
	<-late.Done()
	if cancelledBySignal(late) {
		t.Error("cancelledBySignal(deadline) = true")
	}
	if cancelledBySignal(context.Background()) {
		t.Error("cancelledBySignal(live context) = true")
	}
}
