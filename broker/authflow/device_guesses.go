package authflow

import (
	"context"
	"encoding/hex"
	"strconv"
	"sync"
	"time"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/storage"
)

// wrongCodes bounds the user code lookups that found nothing, per client
// address, across every replica on the store: a bucket of Burst wrong
// lookups refilled one every Every, kept in storage as cells. Cell j of
// an address stands for the time slot [j·Every, (j+1)·Every); a wrong
// lookup takes the first free cell from the current slot's on, at most
// Burst ahead (storage.MarkSeen records each cell once, whichever replica
// asks), and a lookup is let through while one of those cells is free.
// So an address gets Burst wrong codes, then one every Every, whichever
// replicas its requests reach. Each replica's deviceLimiter still bounds
// every lookup (a right one given back), and with it how many lookups of
// one address can be in flight past this check at once.
//
// Each replica remembers, per address, the first cell it has not seen
// taken, so that it asks storage only about cells that may be free: a
// throttled address costs no round trip until the next slot.
type wrongCodes struct {
	store storage.Storage
	now   func() time.Time
	limit config.RateLimit

	mu   sync.Mutex
	next *lruTable[*int64] // address → first cell not seen taken
}

// wrongCodeNamespace is the MarkSeen namespace of the cells.
const wrongCodeNamespace = "device_wrong_code"

func newWrongCodes(store storage.Storage, now func() time.Time, limit config.RateLimit) *wrongCodes {
	if limit.Burst < 1 || limit.Every <= 0 {
		limit = config.DefaultDeviceUserCodeAttempts
	}
	return &wrongCodes{store: store, now: now, limit: limit, next: newLRUTable[*int64](maxAddrs)}
}

// window returns the cells an attempt at now may take: [first, end).
func (w *wrongCodes) window(key limitKey) (first, end int64) {
	slot := w.now().UnixNano() / int64(w.limit.Every)
	first, end = slot, slot+int64(w.limit.Burst)
	w.mu.Lock()
	defer w.mu.Unlock()
	if n, ok := w.next.peek(key); ok && *n > first {
		first = *n
	}
	return first, end
}

// seenTaken records that the cells of key before j are taken.
func (w *wrongCodes) seenTaken(key limitKey, j int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := w.next.get(key, func() *int64 { return new(int64) }); *n < j {
		*n = j
	}
}

func cellID(key limitKey, j int64) string {
	return hex.EncodeToString(key[:]) + "." + strconv.FormatInt(j, 10)
}

// allowed reports whether the address of key may look a code up: one of
// its cells is free.
func (w *wrongCodes) allowed(ctx context.Context, key limitKey) (bool, error) {
	first, end := w.window(key)
	for j := first; j < end; j++ {
		free, err := w.store.MarkSeen(ctx, wrongCodeNamespace, cellID(key, j), time.Time{}) // only asks
		if err != nil {
			return false, err
		}
		if free {
			return true, nil
		}
		w.seenTaken(key, j+1)
	}
	return false, nil
}

// charge takes a cell of key's address for a lookup that found nothing.
// With none free (lookups of other replicas took them meanwhile) it takes
// none: the lookup is done.
func (w *wrongCodes) charge(ctx context.Context, key limitKey) error {
	first, end := w.window(key)
	for j := first; j < end; j++ {
		until := time.Unix(0, (j+1)*int64(w.limit.Every))
		fresh, err := w.store.MarkSeen(ctx, wrongCodeNamespace, cellID(key, j), until)
		if err != nil {
			return err
		}
		w.seenTaken(key, j+1)
		if fresh {
			return nil
		}
	}
	return nil
}
