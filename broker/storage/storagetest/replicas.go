package storagetest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// The conformance tests of storage.ReplicaRegistry. Expiry with real time
// is tested in expiry.go (testExpireReplica).

// replica returns a heartbeat record of id, seen now.
func replica(id string) storage.Replica {
	now := time.Now().Round(0)
	return storage.Replica{
		ID:       id,
		Host:     "host-" + id,
		Version:  "v1.2.3",
		Started:  now.Add(-time.Hour),
		Seen:     now,
		Status:   "ready",
		Activity: []byte(`{"series":[{"name":"logins","total":3}]}`),
	}
}

// putReplica stores r until `until` and fails t on an error.
func putReplica(t testing.TB, s storage.Storage, r storage.Replica, until time.Time) {
	t.Helper()
	wantErr(t, fmt.Sprintf("PutReplica(%s)", r.ID), s.PutReplica(ctx(t), r, until), nil)
}

// wantReplicas fails t unless ListReplicas returns want, in that order,
// every field equal.
func wantReplicas(t testing.TB, what string, s storage.Storage, want ...storage.Replica) {
	t.Helper()
	got, err := s.ListReplicas(ctx(t))
	wantErr(t, what+": ListReplicas", err, nil)
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Fatalf("%s: ListReplicas() mismatch (-want +got):\n%s", what, diff)
	}
}

// wantRefused fails t unless err is an error that is not the backend's
// failure (a caller must not retry it).
func wantRefused(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil || errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("%s: error = %v, want an error refusing the record (not %v)", what, err, storage.ErrUnavailable)
	}
}

func testReplicas(t *testing.T, s storage.Storage) {
	c := ctx(t)
	hour := time.Now().Add(time.Hour)
	wantReplicas(t, "empty store", s)

	// Bytewise, "replica-B" sorts before "replica-a" (a case-insensitive
	// or locale collation would put it after).
	a, b := replica("replica-a"), replica("replica-B")
	a.Activity = []byte{0, 1, 2, 0xff, '"', '\\'} // opaque: not JSON, not UTF-8
	b.Activity = nil
	b.Status = "draining"
	b.Started = b.Started.In(time.FixedZone("UTC+5", 5*3600)).Add(123456789 * time.Nanosecond)
	putReplica(t, s, a, hour)
	putReplica(t, s, b, hour)
	wantReplicas(t, "two replicas", s, b, a)

	// The same ID replaces the record.
	a2 := a
	a2.Seen = a.Seen.Add(15 * time.Second)
	a2.Status = "not ready: storage unavailable"
	a2.Activity = []byte(`{"series":[]}`)
	putReplica(t, s, a2, hour)
	wantReplicas(t, "after replacing replica-a", s, b, a2)

	// An until that has passed: the record is absent, replacing one or not.
	putReplica(t, s, b, time.Now().Add(-time.Second))
	putReplica(t, s, replica("replica-c"), time.Now().Add(-time.Second))
	wantReplicas(t, "after putting records that ended in the past", s, a2)

	// Refused records change nothing.
	noID := replica("")
	wantRefused(t, "PutReplica with an empty ID", s.PutReplica(c, noID, hour))
	big := a2
	big.Activity = make([]byte, storage.MaxReplicaActivity+1)
	wantRefused(t, fmt.Sprintf("PutReplica with %d bytes of activity", len(big.Activity)), s.PutReplica(c, big, hour))
	big.ID = "replica-big"
	wantRefused(t, fmt.Sprintf("PutReplica(%s) with %d bytes of activity", big.ID, len(big.Activity)), s.PutReplica(c, big, hour))
	wantReplicas(t, "after refused records", s, a2)

	// Exactly MaxReplicaActivity bytes are accepted, and kept intact.
	full := replica("replica-max")
	full.Activity = make([]byte, storage.MaxReplicaActivity)
	if _, err := rand.Read(full.Activity); err != nil {
		t.Fatal(err)
	}
	putReplica(t, s, full, hour)
	wantReplicas(t, fmt.Sprintf("with %d bytes of activity", len(full.Activity)), s, a2, full)

	// Concurrent writers of distinct IDs are all listed.
	want := []storage.Replica{a2, full}
	for i := range 8 {
		want = append(want, replica(fmt.Sprintf("%c-concurrent-%d", "Zz"[i%2], i)))
	}
	errs := concurrently(8, func(i int) error { return s.PutReplica(c, want[2+i], hour) })
	for i, err := range errs {
		wantErr(t, fmt.Sprintf("concurrent PutReplica(%s)", want[2+i].ID), err, nil)
	}
	slices.SortFunc(want, func(x, y storage.Replica) int { return strings.Compare(x.ID, y.ID) })
	wantReplicas(t, "after concurrent writers", s, want...)
}
