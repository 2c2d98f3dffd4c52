package keys

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
)

// foreignSet returns the key set a replica with opts writes to an empty
// store: the stored form another replica would find.
func foreignSet(t *testing.T, clk *clock, opts Options) []byte {
	t.Helper()
	other := newStore(clk)
	newManager(t, other, clk, opts)
	blob, _, err := other.GetKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return blob
}

// replaceSet overwrites the stored key set with blob, as another replica's
// write would.
func replaceSet(t *testing.T, store storage.Storage, blob []byte) {
	t.Helper()
	ctx := context.Background()
	_, v, err := store.GetKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutKeys(ctx, blob, v); err != nil {
		t.Fatal(err)
	}
}

// TestNewRefusesUndecryptableSet: a stored set that the configured
// key-encryption key (or its absence) cannot open stops New with an error
// naming signing.key_encryption_key, and leaves the stored set alone.
func TestNewRefusesUndecryptableSet(t *testing.T) {
	clk := newClock()
	store := newStore(clk)
	newManager(t, store, clk, Options{KEK: bytes.Repeat([]byte{1}, 32)})
	blob, _, _ := store.GetKeys(context.Background())
	for _, tc := range []struct {
		name string
		kek  []byte
		want string
	}{
		{"wrong KEK", bytes.Repeat([]byte{2}, 32), "wrong key-encryption key"},
		{"no KEK", nil, "no key-encryption key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(context.Background(), store, Options{KEK: tc.kek, Now: clk.Now})
			if err == nil || !strings.Contains(err.Error(), "signing.key_encryption_key") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error naming signing.key_encryption_key and %q", err, tc.want)
			}
		})
	}
	if after, _, _ := store.GetKeys(context.Background()); !bytes.Equal(after, blob) {
		t.Error("a refused New changed the stored key set")
	}
}

// TestUndecryptableSetRefusesSigning: a running replica that finds a stored
// set it cannot decrypt stops signing (an error the token endpoint answers
// 503), reports not ready with the reason, logs one ERROR however many
// syncs see it, and signs again once the stored set opens.
func TestUndecryptableSetRefusesSigning(t *testing.T) {
	for _, tc := range []struct {
		name string
		kek  []byte // of the replica that rewrites the set
	}{
		{"other KEK", bytes.Repeat([]byte{9}, 32)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			ctx := context.Background()
			store := newStore(clk)
			log, buf := logBuffer()
			m := newManager(t, store, clk, Options{Logger: log})
			good, _, _ := store.GetKeys(ctx)

			replaceSet(t, store, foreignSet(t, clk, Options{KEK: tc.kek}))
			for range 3 {
				_ = m.Refresh(ctx)
			}
			_, err := m.Sign("", claims(t, clk.Now()), "JWT")
			if err == nil {
				t.Fatal("Sign succeeded with a stored key set this replica cannot decrypt")
			}
			if !errors.Is(err, storage.ErrUnavailable) {
				t.Errorf("Sign error %v does not map to 503 (storage.ErrUnavailable)", err)
			}
			if err := m.Readiness(); err == nil || !strings.Contains(err.Error(), "signing.key_encryption_key") {
				t.Errorf("Readiness = %v, want a reason naming signing.key_encryption_key", err)
			}
			if m.Ready() {
				t.Error("Ready() = true while refusing")
			}
			if n := strings.Count(buf.String(), "level=ERROR"); n != 1 {
				t.Errorf("%d ERROR lines over three syncs, want 1:\n%s", n, buf)
			}
			if _, err := m.Rotate(ctx); err == nil {
				t.Error("Rotate succeeded while refusing")
			}

			// The record is rewritten with keys this replica can open.
			replaceSet(t, store, good)
			if err := m.Refresh(ctx); err != nil {
				t.Fatalf("Refresh after the fix: %v", err)
			}
			if err := m.Readiness(); err != nil {
				t.Errorf("Readiness after the fix = %v", err)
			}
			if _, err := m.Sign("", claims(t, clk.Now()), "JWT"); err != nil {
				t.Errorf("Sign after the fix: %v", err)
			}
			if !strings.Contains(buf.String(), "signing resumes") {
				t.Errorf("log lacks the recovery:\n%s", buf)
			}
		})
	}
}

// TestNoKEKReplicaRefusesSealedSet: a replica without a key-encryption key
// that finds the set sealed by another refuses too.
func TestNoKEKReplicaRefusesSealedSet(t *testing.T) {
	clk := newClock()
	ctx := context.Background()
	store := newStore(clk)
	m, err := New(ctx, store, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	replaceSet(t, store, foreignSet(t, clk, Options{KEK: bytes.Repeat([]byte{3}, 32)}))
	_ = m.Refresh(ctx)
	if err := m.Readiness(); err == nil || !strings.Contains(err.Error(), "signing.key_encryption_key") {
		t.Errorf("Readiness = %v, want a reason naming signing.key_encryption_key", err)
	}
	if _, err := m.Sign("", []byte(`{}`), "JWT"); err == nil {
		t.Error("Sign succeeded")
	}
}

// TestNewRefusesOtherAlgorithm: storage holding a set with no key for this
// replica's signing.algorithm stops New, naming both algorithms and the
// config path. An algorithm first added under signing.algorithms may then
// become signing.algorithm.
func TestNewRefusesOtherAlgorithm(t *testing.T) {
	clk := newClock()
	store := newStore(clk)
	newManager(t, store, clk, Options{})
	blob, _, _ := store.GetKeys(context.Background())
	_, err := New(context.Background(), store, Options{Algorithm: "RS256", KEK: bytes.Repeat([]byte{7}, 32), Now: clk.Now})
	var me *MismatchError
	if !errors.As(err, &me) || me.Path != "signing.algorithm" {
		t.Fatalf("New(RS256) on an ES256 set = %v, want a MismatchError on signing.algorithm", err)
	}
	for _, want := range []string{"signing.algorithm", "RS256", "ES256"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if after, _, _ := store.GetKeys(context.Background()); !bytes.Equal(after, blob) {
		t.Error("a refused New changed the stored key set")
	}
	// Adding RS256 as an extra algorithm is allowed; a replica with RS256
	// as its default then starts, but refuses until the fleet's default is
	// changed (SetAlgorithm), and signs RS256 after.
	es := newManager(t, store, clk, Options{Algorithms: []string{"RS256"}})
	rs := newManager(t, store, clk, Options{Algorithm: "RS256", Algorithms: []string{"ES256"}})
	if err := rs.Readiness(); !errors.As(err, &me) || me.Path != "signing.algorithm" {
		t.Fatalf("RS256 replica on an ES256 fleet: Readiness = %v, want a MismatchError on signing.algorithm", err)
	}
	if _, err := es.SetAlgorithm(context.Background(), "RS256"); err != nil {
		t.Fatal(err)
	}
	if err := rs.Refresh(context.Background()); err != nil || !rs.Ready() {
		t.Errorf("RS256 replica after the change: Refresh %v, Readiness %v", err, rs.Readiness())
	}
	if got := header(t, signed(t, rs)).Algorithm; got != "RS256" {
		t.Errorf("signs with %s, want RS256", got)
	}
}

// TestOtherAlgorithmRefusesSigning: a running replica whose
// signing.algorithm has no key in the shared set (another replica wrote a
// set for another algorithm) reports not ready and signs nothing, instead
// of adding its own algorithm and signing differently.
func TestOtherAlgorithmRefusesSigning(t *testing.T) {
	clk := newClock()
	ctx := context.Background()
	store := newStore(clk)
	log, buf := logBuffer()
	m := newManager(t, store, clk, Options{Logger: log})
	replaceSet(t, store, foreignSet(t, clk, Options{Algorithm: "RS256"}))
	foreign, _, _ := store.GetKeys(ctx)
	_ = m.Refresh(ctx)
	_ = m.Refresh(ctx)
	err := m.Readiness()
	var me *MismatchError
	if !errors.As(err, &me) || me.Path != "signing.algorithm" {
		t.Fatalf("Readiness = %v, want a MismatchError on signing.algorithm", err)
	}
	if _, err := m.Sign("", []byte(`{}`), "JWT"); err == nil {
		t.Error("Sign succeeded")
	}
	if n := strings.Count(buf.String(), "level=ERROR"); n != 1 || !strings.Contains(buf.String(), "signing.algorithm") {
		t.Errorf("log has %d ERROR lines, want 1 naming signing.algorithm:\n%s", n, buf)
	}
	if after, _, _ := store.GetKeys(ctx); !bytes.Equal(after, foreign) {
		t.Error("the refusing replica changed the shared key set")
	}
}

// TestPublishedAlgorithms: discovery's algorithms come from the shared
// set, this replica's default first, so replicas say the same thing.
func TestPublishedAlgorithms(t *testing.T) {
	clk := newClock()
	store := newStore(clk)
	newManager(t, store, clk, Options{Algorithms: []string{"RS256", "EdDSA"}})
	m := newManager(t, store, clk, Options{})
	if got, want := m.PublishedAlgorithms(), []string{"ES256", "EdDSA", "RS256"}; !slices.Equal(got, want) {
		t.Errorf("PublishedAlgorithms = %v, want %v", got, want)
	}
}

// TestRotateTwoReplicas: two rotate calls on two replicas two seconds
// apart make one rotation; the second learns it and the generation the
// first made.
func TestRotateTwoReplicas(t *testing.T) {
	clk := newClock()
	store := newStore(clk)
	testRotateTwoReplicas(t, clk, store, store)
}

// TestRedisRotateTwoReplicas is TestRotateTwoReplicas with each replica on
// its own connection to one Redis.
func TestRedisRotateTwoReplicas(t *testing.T) {
	srv := redistest.StartServer(t)
	testRotateTwoReplicas(t, newClock(), openRedis(t, srv.URL()), openRedis(t, srv.URL()))
}

func testRotateTwoReplicas(t *testing.T, clk *clock, storeA, storeB storage.Storage) {
	ctx := context.Background()
	a := newManager(t, storeA, clk, Options{})
	b := newManager(t, storeB, clk, Options{})
	before := activeKid(t, a, "ES256")
	r1, err := a.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Second)
	r2, err := b.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !r1.Rotated || r1.Generation == 0 {
		t.Errorf("first Rotate = %+v, want rotated, with a generation", r1)
	}
	if r2.Rotated || r2.Generation != r1.Generation {
		t.Errorf("second Rotate = %+v, want already rotated at generation %d", r2, r1.Generation)
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if ka, kb := activeKid(t, a, "ES256"), activeKid(t, b, "ES256"); ka == before || ka != kb {
		t.Errorf("active kids after = %s and %s (before %s), want one new key", ka, kb, before)
	}
	// The same replica asked again rotates again (a deliberate second
	// rotation after a compromise).
	r3, err := b.Rotate(ctx)
	if err != nil || !r3.Rotated || r3.Generation <= r1.Generation {
		t.Errorf("third Rotate = %+v, %v; want rotated past generation %d", r3, err, r1.Generation)
	}
}
