package keys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/google/go-cmp/cmp"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// flakyStore fails the key-set operations while down is set.
type flakyStore struct {
	storage.Storage
	down atomic.Bool
}

func (s *flakyStore) err() error {
	return fmt.Errorf("flaky: connection refused: %w", storage.ErrUnavailable)
}

func (s *flakyStore) GetKeys(ctx context.Context) ([]byte, int64, error) {
	if s.down.Load() {
		return nil, 0, s.err()
	}
	return s.Storage.GetKeys(ctx)
}

func (s *flakyStore) PutKeys(ctx context.Context, data []byte, expect int64) (int64, error) {
	if s.down.Load() {
		return 0, s.err()
	}
	return s.Storage.PutKeys(ctx, data, expect)
}

func (s *flakyStore) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if s.down.Load() {
		return false, s.err()
	}
	return s.Storage.AcquireLease(ctx, name, holder, ttl)
}

func activeKid(t testing.TB, m *Manager, alg string) string {
	t.Helper()
	tok, err := m.Sign(alg, []byte(`{}`), "JWT")
	if err != nil {
		t.Fatalf("Sign(%s): %v", alg, err)
	}
	return header(t, tok).KeyID
}

func TestRotationPublishesNextAndRetires(t *testing.T) {
	clk := newClock()
	const rot, life = 24 * time.Hour, 2 * time.Hour
	ctx := context.Background()
	m := newManager(t, newStore(clk), clk, Options{RotationPeriod: rot, MaxTokenLifetime: life})

	k0 := kids(t, m, "ES256") // [active, next]
	if len(k0) != 2 || activeKid(t, m, "ES256") != k0[0] {
		t.Fatalf("after New kids = %v and token kid %s, want [active next] signing with active", k0, activeKid(t, m, "ES256"))
	}
	oldTok, _ := m.Sign("", claims(t, clk.Now()), "JWT")

	// Not due yet: nothing changes.
	clk.Advance(rot - time.Second)
	if err := m.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if got := kids(t, m, "ES256"); !cmp.Equal(got, k0) {
		t.Fatalf("kids before the rotation is due = %v, want %v", got, k0)
	}

	// Due: the published Next key becomes Active, a new Next appears and
	// the old Active stays published.
	clk.Advance(time.Second)
	if err := m.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	k1 := kids(t, m, "ES256")
	if len(k1) != 3 || k1[0] != k0[1] || k1[2] != k0[0] || slices.Contains(k0, k1[1]) {
		t.Fatalf("kids after rotation = %v, want [%s <new> %s]", k1, k0[1], k0[0])
	}
	if got := activeKid(t, m, "ES256"); got != k0[1] {
		t.Errorf("signing kid after rotation = %s, want the former next %s", got, k0[1])
	}
	if _, _, err := m.Verify(oldTok); err != nil {
		t.Errorf("token signed before rotation rejected: %v", err)
	}

	// The retired key stays until MaxTokenLifetime plus the leeway passes.
	clk.Advance(life + retireLeeway - time.Second)
	if err := m.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if got := kids(t, m, "ES256"); !slices.Contains(got, k0[0]) {
		t.Errorf("kids just before retirement = %v, want %s still there", got, k0[0])
	}
	clk.Advance(time.Second)
	if err := m.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if got, want := kids(t, m, "ES256"), k1[:2]; !cmp.Equal(got, want) {
		t.Errorf("kids after retirement = %v, want %v", got, want)
	}
	if _, _, err := m.Verify(oldTok); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Verify(token of a dropped key) = %v, want ErrUnknownKey", err)
	}

	// The next rotation drops the expired key from storage too.
	clk.Advance(rot)
	if err := m.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	st := m.state.Load()
	if got := st.set.Algs["ES256"].Retired; len(got) != 1 || got[0].KID != k1[0] || got[0].Private != nil {
		t.Errorf("stored retired keys = %+v, want only %s without private key", got, k1[0])
	}
}

func TestSecondReplicaPicksUpRotation(t *testing.T) {
	clk := newClock()
	store := newStore(clk)
	ctx := context.Background()
	a := newManager(t, store, clk, Options{Algorithms: []string{"EdDSA"}})
	b := newManager(t, store, clk, Options{Algorithms: []string{"EdDSA"}})
	if err := a.RotateNow(ctx); err != nil {
		t.Fatalf("RotateNow: %v", err)
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	for _, alg := range []string{"ES256", "EdDSA"} {
		if ka, kb := activeKid(t, a, alg), activeKid(t, b, alg); ka != kb {
			t.Errorf("%s: after Sync replica signs with %s, rotating replica with %s", alg, kb, ka)
		}
		if got, want := kids(t, b, alg), kids(t, a, alg); !cmp.Equal(got, want) {
			t.Errorf("%s kids: replica %v, rotating replica %v", alg, got, want)
		}
	}
	_, etagA := a.JWKS()
	_, etagB := b.JWKS()
	if etagA != etagB || etagA == "" {
		t.Errorf("ETags %q and %q, want equal and non-empty", etagA, etagB)
	}
}

// TestConcurrentRotationMakesOneKey races replicas whose rotation is due,
// and replicas asked to rotate at the same moment: either way exactly one
// new key results.
func TestConcurrentRotationMakesOneKey(t *testing.T) {
	ctx := context.Background()
	for i := range 20 {
		clk := newClock()
		store := newStore(clk)
		const n = 3
		ms := make([]*Manager, n)
		for j := range ms {
			ms[j] = newManager(t, store, clk, Options{RotationPeriod: time.Hour, HolderID: fmt.Sprintf("replica-%d", j)})
		}
		before := kids(t, ms[0], "ES256")
		clk.Advance(time.Hour)
		var wg sync.WaitGroup
		errs := make([]error, n)
		for j, m := range ms {
			wg.Go(func() {
				if i%2 == 0 {
					errs[j] = m.Sync(ctx)
				} else {
					errs[j] = m.RotateNow(ctx)
				}
			})
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			if err == nil {
				ok++
			} else if !errors.Is(err, ErrBusy) && !errors.Is(err, ErrAlreadyRotated) {
				t.Fatalf("round %d: %v", i, err)
			}
		}
		if i%2 == 1 && ok != 1 {
			t.Fatalf("round %d: %d RotateNow calls reported a rotation, want exactly 1: %v", i, ok, errs)
		}
		if ok == 0 {
			t.Fatalf("round %d: every replica failed: %v", i, errs)
		}
		for _, m := range ms {
			if err := m.Sync(ctx); err != nil {
				t.Fatalf("Sync: %v", err)
			}
		}
		after := kids(t, ms[0], "ES256")
		var fresh []string
		for _, k := range after {
			if !slices.Contains(before, k) {
				fresh = append(fresh, k)
			}
		}
		if len(fresh) != 1 || len(after) != 3 {
			t.Fatalf("round %d: kids %v after %v, want exactly one new key", i, after, before)
		}
		for j, m := range ms[1:] {
			if got := kids(t, m, "ES256"); !cmp.Equal(got, after) {
				t.Fatalf("round %d: replica %d kids %v, want %v", i, j+1, got, after)
			}
		}
	}
}

func TestRotateNowTwiceRotatesTwice(t *testing.T) {
	clk := newClock()
	ctx := context.Background()
	m := newManager(t, newStore(clk), clk, Options{})
	k0 := kids(t, m, "ES256")
	for range 2 {
		if err := m.RotateNow(ctx); err != nil {
			t.Fatalf("RotateNow: %v", err)
		}
	}
	k2 := kids(t, m, "ES256")
	// active, next, then retired newest first.
	if len(k2) != 4 || k2[2] != k0[1] || k2[3] != k0[0] {
		t.Errorf("kids after two rotations = %v, want [new new %s %s]", k2, k0[1], k0[0])
	}
}

func TestRotateNowBusyWhileLeaseHeld(t *testing.T) {
	clk := newClock()
	store := newStore(clk)
	m := newManager(t, store, clk, Options{})
	if ok, err := store.AcquireLease(context.Background(), leaseName, "someone-else", time.Minute); !ok || err != nil {
		t.Fatalf("AcquireLease = %v, %v", ok, err)
	}
	before := kids(t, m, "ES256")
	if err := m.RotateNow(context.Background()); !errors.Is(err, ErrBusy) {
		t.Errorf("RotateNow while another replica holds the lease = %v, want ErrBusy", err)
	}
	if got := kids(t, m, "ES256"); !cmp.Equal(got, before) {
		t.Errorf("kids = %v after a refused rotation, want %v", got, before)
	}
}

func TestSyncKeepsServingOnStorageErrors(t *testing.T) {
	clk := newClock()
	store := &flakyStore{Storage: newStore(clk)}
	ctx := context.Background()
	m := newManager(t, store, clk, Options{RotationPeriod: time.Hour})
	kid := activeKid(t, m, "ES256")
	body, etag := m.JWKS()

	store.down.Store(true)
	clk.Advance(2 * time.Hour) // due, but storage is down
	if err := m.Sync(ctx); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Sync with storage down = %v, want ErrUnavailable", err)
	}
	if err := m.RotateNow(ctx); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("RotateNow with storage down = %v, want ErrUnavailable", err)
	}
	if got := activeKid(t, m, "ES256"); got != kid {
		t.Errorf("signing kid with storage down = %s, want %s", got, kid)
	}
	tok, _ := m.Sign("", []byte(`{}`), "JWT")
	if _, _, err := m.Verify(tok); err != nil {
		t.Errorf("Verify with storage down: %v", err)
	}
	if gotBody, gotTag := m.JWKS(); string(gotBody) != string(body) || gotTag != etag {
		t.Errorf("JWKS changed while storage was down")
	}
	if !m.Ready() {
		t.Error("Ready() = false while serving from memory")
	}

	// Back up: the overdue rotation happens.
	store.down.Store(false)
	if err := m.Sync(ctx); err != nil {
		t.Fatalf("Sync after recovery: %v", err)
	}
	if got := activeKid(t, m, "ES256"); got == kid {
		t.Errorf("signing kid after recovery = %s, want a rotated key", got)
	}
}

func TestNewFailsWhenStorageDown(t *testing.T) {
	clk := newClock()
	store := &flakyStore{Storage: newStore(clk)}
	store.down.Store(true)
	_, err := New(context.Background(), store, Options{Now: clk.Now, KEK: make([]byte, 32)})
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("New with storage down = %v, want ErrUnavailable", err)
	}
}

func TestSyncRestoresLostKeySet(t *testing.T) {
	clk := newClock()
	inner := newStore(clk)
	m := newManager(t, inner, clk, Options{})
	kid := activeKid(t, m, "ES256")
	// A fresh, empty store behind the same Manager (a flushed Redis).
	m.store = newStore(clk)
	if err := m.Sync(context.Background()); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if got := activeKid(t, m, "ES256"); got != kid {
		t.Errorf("signing kid after restoring = %s, want %s", got, kid)
	}
	m2 := newManager(t, m.store, clk, Options{})
	if got := activeKid(t, m2, "ES256"); got != kid {
		t.Errorf("new Manager on the restored store signs with %s, want %s", got, kid)
	}
}

func TestRunSyncsUntilCancelled(t *testing.T) {
	clk := newClock()
	store := newStore(clk)
	// A one-minute rotation gives the minimum one-second sync interval.
	a := newManager(t, store, clk, Options{RotationPeriod: time.Minute})
	b := newManager(t, store, clk, Options{RotationPeriod: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.Run(ctx); close(done) }()
	if err := a.RotateNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := activeKid(t, a, "ES256")
	deadline := time.Now().Add(20 * time.Second)
	for activeKid(t, b, "ES256") != want {
		if time.Now().After(deadline) {
			t.Fatal("Run did not pick up the rotation within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// TestRelyingPartyCacheSurvivesRotation: a go-oidc verifier that fetched
// the JWKS once, before the rotation, verifies tokens signed after it
// without fetching again, because the new signing key was published as
// Next.
func TestRelyingPartyCacheSurvivesRotation(t *testing.T) {
	clk := newClock()
	ctx := context.Background()
	m := newManager(t, newStore(clk), clk, Options{RotationPeriod: time.Hour})
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		body, _ := m.JWKS()
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	v := oidc.NewVerifier(issuer, oidc.NewRemoteKeySet(ctx, srv.URL), &oidc.Config{ClientID: "app", SupportedSigningAlgs: []string{"ES256"}, Now: clk.Now})

	before, _ := m.Sign("", claims(t, clk.Now()), "JWT")
	if _, err := v.Verify(ctx, before); err != nil {
		t.Fatalf("Verify before rotation: %v", err)
	}
	clk.Advance(time.Hour)
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	after, _ := m.Sign("", claims(t, clk.Now()), "JWT")
	if header(t, after).KeyID == header(t, before).KeyID {
		t.Fatal("no rotation happened")
	}
	if _, err := v.Verify(ctx, after); err != nil {
		t.Fatalf("Verify after rotation: %v", err)
	}
	if got := fetches.Load(); got != 1 {
		t.Errorf("JWKS fetched %d times, want 1: the new key was not in the cached set", got)
	}
}

func TestCorruptKeySet(t *testing.T) {
	clk := newClock()
	ctx := context.Background()
	store := newStore(clk)
	m := newManager(t, store, clk, Options{})
	kid := activeKid(t, m, "ES256")
	_, v, err := store.GetKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, blob := range [][]byte{[]byte("{not json"), []byte(`{"format":99}`), []byte(`{"format":1,"algs":{"ES256":{"active":{"kid":"x","alg":"ES256","public":"AAAA"}}}}`)} {
		if v, err = store.PutKeys(ctx, blob, v); err != nil {
			t.Fatal(err)
		}
		if err := m.Sync(ctx); err == nil {
			t.Errorf("blob %d: Sync of a corrupt key set = nil error", i)
		}
		if got := activeKid(t, m, "ES256"); got != kid {
			t.Errorf("blob %d: signing kid after a corrupt Sync = %s, want %s", i, got, kid)
		}
		if _, err := New(ctx, store, Options{Now: clk.Now, KEK: bytes.Repeat([]byte{7}, 32)}); err == nil {
			t.Errorf("blob %d: New on a corrupt key set = nil error", i)
		}
	}
}
