package memory

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Storage { return New() })
}

func TestClosedIsUnavailable(t *testing.T) {
	s := New()
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	storagetest.RunUnavailable(t, s)
}

// dump renders every key and value the store holds.
func (s *Store) dump() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for k, v := range s.authReqs {
		fmt.Fprintf(&b, "%s=%s\n", k, v.data)
	}
	for k, v := range s.codes {
		j, _ := json.Marshal(v.val)
		fmt.Fprintf(&b, "%s=%s %s\n", k, j, v.familyID)
	}
	for k, v := range s.families {
		j, _ := json.Marshal(v.val)
		fmt.Fprintf(&b, "%s=%s %s %d %s %q\n", k, j, v.current, v.generation, v.retry.previous, v.retry.sealedNext)
	}
	for k, v := range s.sessions {
		fmt.Fprintf(&b, "%s=%s\n", k, v.data)
	}
	for k := range s.tombstones {
		fmt.Fprintf(&b, "%s\n", k)
	}
	for k := range s.seen {
		fmt.Fprintf(&b, "%v\n", k)
	}
	for k, v := range s.links {
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	return b.String()
}

func TestNoClearSecrets(t *testing.T) {
	s := New()
	secrets := storagetest.WriteSecrets(t, s)
	dump := s.dump()
	if !strings.Contains(dump, storage.Hash(secrets[0])) {
		t.Fatalf("dump does not contain the code's hash; the inspection sees nothing:\n%s", dump)
	}
	for _, sec := range secrets {
		if strings.Contains(dump, sec) {
			t.Errorf("stored form contains the clear secret %q", sec)
		}
	}
}

// fakeClock is a settable clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestClockAndSweep(t *testing.T) {
	clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := New(WithClock(clock.now), WithSweepInterval(time.Minute))
	ctx := context.Background()
	exp := clock.t.Add(30 * time.Second)
	for i := 0; i < 100; i++ {
		id := fmt.Sprint(i)
		if err := s.CreateAuthRequest(ctx, storage.AuthRequest{ID: id, Expiry: exp}); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateCode(ctx, "code"+id, storage.AuthCode{Expiry: exp}); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateSession(ctx, storage.Session{ID: "s" + id, Subject: "x", Expiry: exp}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.MarkSeen(ctx, "ns", id, exp); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AcquireLease(ctx, id, "h", 30*time.Second); err != nil {
			t.Fatal(err)
		}
		f := storage.RefreshFamily{ID: "f" + id, IdleExpiry: exp, AbsoluteExpiry: exp.Add(time.Hour)}
		if err := s.CreateRefresh(ctx, f, f.ID+".tok"); err != nil {
			t.Fatal(err)
		}
		if err := s.RevokeFamily(ctx, "t"+id, exp); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := s.Len(), 700; got != want {
		t.Fatalf("Len() = %d, want %d", got, want)
	}
	if _, err := s.GetAuthRequest(ctx, "1"); err != nil {
		t.Fatalf("GetAuthRequest before expiry: %v", err)
	}
	clock.t = exp // expiry is exclusive: at Expiry the record is gone
	if _, err := s.GetAuthRequest(ctx, "1"); err == nil {
		t.Fatalf("GetAuthRequest at expiry = nil error, want ErrNotFound")
	}
	if _, err := s.GetRefresh(ctx, "f1.tok"); err == nil {
		t.Fatalf("GetRefresh at idle expiry = nil error, want ErrNotFound")
	}
	if got, want := s.Len(), 700; got != want {
		t.Fatalf("Len() before the sweep interval = %d, want %d (nothing swept yet)", got, want)
	}
	clock.t = clock.t.Add(time.Minute)
	if _, err := s.MarkSeen(ctx, "ns", "new", clock.t.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, want := s.Len(), 1; got != want {
		t.Fatalf("Len() after the sweep = %d, want %d", got, want)
	}
}

func BenchmarkStore(b *testing.B) {
	storagetest.Bench(b, func(*testing.B) storage.Storage { return New() })
}

// familySize is what the store holds for family id, in bytes of stored
// values (the record as JSON, current token hash and any per-token state).
func (s *Store) familySize(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.families[id]
	if !ok {
		return -1
	}
	b, err := json.Marshal(f.val)
	if err != nil {
		return -1
	}
	return len(b) + len(f.current) + len(f.retry.previous) + len(f.retry.sealedNext) + 8 // + generation
}

// TestRefreshFamilySizeConstant: 1,000 rotations leave a family's stored
// size where one rotation left it; reuse detection keeps no per-token set.
func TestRefreshFamilySizeConstant(t *testing.T) {
	s := New()
	f1, _ := storagetest.RotateMany(t, s, 1)
	f1000, _ := storagetest.RotateMany(t, s, 1000)
	one, many := s.familySize(f1.ID), s.familySize(f1000.ID)
	t.Logf("memory: bytes per refresh family after 1 rotation: %d, after 1000: %d", one, many)
	// The stored JSON differs by a byte or two between families (times).
	if one <= 0 || many > one+16 {
		t.Fatalf("family size after 1 rotation = %d, after 1000 = %d; want the same", one, many)
	}
}

// TestAuthRequestCap: past the cap, creating a request evicts the one that
// expires first (an abandoned login), never refuses the new one.
func TestAuthRequestCap(t *testing.T) {
	clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := New(WithClock(clock.now), WithMaxAuthRequests(3))
	ctx := context.Background()
	// Expiries out of creation order: "b" expires first, then "a", "c".
	for _, r := range []struct {
		id  string
		exp time.Duration
	}{{"a", 2 * time.Minute}, {"b", time.Minute}, {"c", 3 * time.Minute}, {"d", 10 * time.Minute}, {"e", 10 * time.Minute}} {
		if err := s.CreateAuthRequest(ctx, storage.AuthRequest{ID: r.id, Expiry: clock.t.Add(r.exp)}); err != nil {
			t.Fatalf("CreateAuthRequest(%s) = %v", r.id, err)
		}
	}
	for id, want := range map[string]bool{"a": false, "b": false, "c": true, "d": true, "e": true} {
		_, err := s.GetAuthRequest(ctx, id)
		if got := err == nil; got != want {
			t.Errorf("GetAuthRequest(%s) after the cap: present = %v, want %v (err %v)", id, got, want, err)
		}
	}
	if got := s.Len(); got != 3 {
		t.Errorf("Len() = %d, want 3", got)
	}
	// Taking one frees a slot: the next create evicts nothing.
	if _, err := s.TakeAuthRequest(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAuthRequest(ctx, storage.AuthRequest{ID: "f", Expiry: clock.t.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"d", "e", "f"} {
		if _, err := s.GetAuthRequest(ctx, id); err != nil {
			t.Errorf("GetAuthRequest(%s) = %v, want present", id, err)
		}
	}
	// Expired requests are dropped before anything live is evicted.
	clock.t = clock.t.Add(2 * time.Second) // "f" expired
	if err := s.CreateAuthRequest(ctx, storage.AuthRequest{ID: "g", Expiry: clock.t.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"d", "e", "g"} {
		if _, err := s.GetAuthRequest(ctx, id); err != nil {
			t.Errorf("GetAuthRequest(%s) = %v, want present", id, err)
		}
	}
	// Many more than the cap stay bounded.
	for i := 0; i < 1000; i++ {
		if err := s.CreateAuthRequest(ctx, storage.AuthRequest{ID: fmt.Sprint("x", i), Expiry: clock.t.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Len(); got != 3 {
		t.Errorf("Len() after 1000 more = %d, want 3", got)
	}
}
