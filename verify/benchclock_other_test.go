//go:build !linux

package verify

import "time"

var start = time.Now()

// threadClock returns the wall-clock time elapsed: elsewhere than on
// Linux there is no portable per-thread CPU clock.
func threadClock() time.Duration { return time.Since(start) }

// threadClockName names what threadClock measures.
const threadClockName = "wall time"
