package verify

import (
	"syscall"
	"time"
)

// rusageThread is RUSAGE_THREAD: the calling thread's usage only.
const rusageThread = 1

// threadClock returns the CPU time the calling OS thread has used: time
// waiting for a CPU on a busy machine does not count. The caller locks
// its goroutine to its thread.
func threadClock() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// threadClockName names what threadClock measures.
const threadClockName = "thread CPU time"
