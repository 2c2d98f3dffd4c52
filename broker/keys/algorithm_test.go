package keys

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// Two replicas that keep keys for the same algorithms but sign by default
// with different ones: ES256 first on A, RS256 first on B.
var (
	optsES = Options{Algorithm: "ES256", Algorithms: []string{"ES256", "RS256"}}
	optsRS = Options{Algorithm: "RS256", Algorithms: []string{"RS256", "ES256"}}
)

// wantDefaultMismatch fails unless m refuses because its signing.algorithm
// is not the fleet's, with a reason telling the operator to set want.
func wantDefaultMismatch(t *testing.T, m *Manager, want string) {
	t.Helper()
	err := m.Readiness()
	var me *MismatchError
	if !errors.As(err, &me) || me.Path != "signing.algorithm" {
		t.Fatalf("Readiness = %v, want a MismatchError on signing.algorithm", err)
	}
	if !strings.Contains(me.Reason, "set signing.algorithm to "+want) {
		t.Errorf("reason %q does not say to set signing.algorithm to %s", me.Reason, want)
	}
	if m.Ready() {
		t.Error("Ready() = true while refusing")
	}
	if _, err := m.Sign("", []byte(`{}`), "JWT"); err == nil {
		t.Error("Sign succeeded while refusing")
	}
	for _, alg := range []string{"ES256", "RS256"} {
		if _, err := m.Sign(alg, []byte(`{}`), "JWT"); err == nil {
			t.Errorf("Sign(%s) succeeded while refusing", alg)
		}
	}
}

// defaultAlg returns the algorithm of a token m signs by default.
func defaultAlg(t *testing.T, m *Manager) string {
	t.Helper()
	return header(t, signed(t, m)).Algorithm
}

// TestSwappedDefaultRefused: replica B, whose signing.algorithm is RS256,
// joins a fleet whose key set (written first by A, default ES256) has keys
// for both algorithms. B does not sign with RS256 by default while A signs
// with ES256: it starts refusing, says why, logs it once, leaves the set
// alone, and publishes the fleet's discovery order.
func TestSwappedDefaultRefused(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	store := newStore(clk)
	a := newManager(t, store, clk, optsES)
	blob, _, _ := store.GetKeys(ctx)
	if got := storedSet(t, store).Default; got != "ES256" {
		t.Fatalf("stored default = %q, want the first writer's ES256", got)
	}

	log, buf := logBuffer()
	opts := optsRS
	opts.Logger = log
	b := newManager(t, store, clk, opts)
	clk.Advance(25 * time.Hour) // a rotation is due: a refusing replica still does not write
	for range 3 {
		if err := b.Refresh(ctx); err != nil {
			t.Fatalf("Refresh: %v", err)
		}
		if err := b.Sync(ctx); err != nil {
			t.Fatalf("Sync: %v", err)
		}
	}
	wantDefaultMismatch(t, b, "ES256")
	for _, want := range []string{"RS256", "ES256", "POST /admin/keys/algorithm"} {
		if !strings.Contains(b.Readiness().Error(), want) {
			t.Errorf("reason %q does not name %s", b.Readiness(), want)
		}
	}
	if n := strings.Count(buf.String(), "level=ERROR"); n != 1 || !strings.Contains(buf.String(), "signing.algorithm") {
		t.Errorf("log has %d ERROR lines, want 1 naming signing.algorithm:\n%s", n, buf)
	}
	if after, _, _ := store.GetKeys(ctx); !bytes.Equal(after, blob) {
		t.Error("the refusing replica changed the shared key set")
	}
	if _, err := b.Rotate(ctx); !errors.Is(err, ErrNotReady) {
		t.Errorf("Rotate on the refusing replica = %v, want ErrNotReady", err)
	}
	want := []string{"ES256", "RS256"}
	for name, m := range map[string]*Manager{"A": a, "B": b} {
		if got := m.PublishedAlgorithms(); !slices.Equal(got, want) {
			t.Errorf("%s: PublishedAlgorithms = %v, want the set's default first: %v", name, got, want)
		}
	}
	if got := defaultAlg(t, a); got != "ES256" {
		t.Errorf("A signs with %s, want ES256", got)
	}
}

// TestLegacySetAdoptsWritersDefault: a set stored by a broker that did not
// record the fleet's default still loads, and the next writer records its
// own default; from then on a replica with another default refuses.
func TestLegacySetAdoptsWritersDefault(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	store := newStore(clk)
	newManager(t, store, clk, optsES)
	// Strip the field, as an older broker writes the set.
	data, v, err := store.GetKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	delete(raw, "default")
	if data, err = json.Marshal(raw); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(`"default"`)) {
		t.Fatal("the legacy set still records a default")
	}
	if _, err := store.PutKeys(ctx, data, v); err != nil {
		t.Fatal(err)
	}
	legacy, err := decodeSet(data)
	if err != nil || legacy.Default != "" {
		t.Fatalf("decodeSet of a set without default = %+v, %v", legacy, err)
	}

	b := newManager(t, store, clk, optsRS)
	if err := b.Readiness(); err != nil {
		t.Fatalf("first writer on a legacy set refuses: %v", err)
	}
	if got := storedSet(t, store).Default; got != "RS256" {
		t.Errorf("stored default after the first write = %q, want the writer's RS256", got)
	}
	if got := defaultAlg(t, b); got != "RS256" {
		t.Errorf("B signs with %s, want RS256", got)
	}
	a := newManager(t, store, clk, optsES)
	wantDefaultMismatch(t, a, "RS256")
}

// TestRunningReplicaRefusesChangedDefault: a running, ready replica whose
// signing.algorithm stops being the fleet's (another replica changed it)
// refuses at its next Sync; one configured with the new default, refused
// until then, becomes ready at its next Sync.
func TestRunningReplicaRefusesChangedDefault(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	store := newStore(clk)
	a := newManager(t, store, clk, optsES)
	c := newManager(t, store, clk, optsES)
	b := newManager(t, store, clk, optsRS)
	wantDefaultMismatch(t, b, "ES256")
	tok := signed(t, a)

	res, err := a.SetAlgorithm(ctx, "RS256")
	if err != nil {
		t.Fatalf("SetAlgorithm(RS256): %v", err)
	}
	if !res.Changed || res.Algorithm != "RS256" || res.Previous != "ES256" {
		t.Errorf("SetAlgorithm = %+v, want changed from ES256 to RS256", res)
	}
	if got := storedSet(t, store).Default; got != "RS256" {
		t.Errorf("stored default = %q, want RS256", got)
	}
	// The replica that made the change runs ES256: it refuses at once.
	wantDefaultMismatch(t, a, "RS256")
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	wantDefaultMismatch(t, c, "RS256")
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Readiness(); err != nil {
		t.Fatalf("B after the change = %v, want ready", err)
	}
	if got := defaultAlg(t, b); got != "RS256" {
		t.Errorf("B signs with %s, want RS256", got)
	}
	if got, want := b.PublishedAlgorithms(), []string{"RS256", "ES256"}; !slices.Equal(got, want) {
		t.Errorf("PublishedAlgorithms = %v, want %v", got, want)
	}
	if got, want := a.PublishedAlgorithms(), []string{"RS256", "ES256"}; !slices.Equal(got, want) {
		t.Errorf("refusing replica: PublishedAlgorithms = %v, want %v", got, want)
	}
	// Tokens A signed before the change still verify on B.
	if _, _, err := b.Verify(tok); err != nil {
		t.Errorf("a token signed before the change does not verify: %v", err)
	}
	res2, err := b.SetAlgorithm(ctx, "RS256")
	if err != nil || res2.Changed || res2.Algorithm != "RS256" {
		t.Errorf("SetAlgorithm(RS256) again = %+v, %v; want unchanged", res2, err)
	}
}

// TestSetAlgorithmFromRefusingReplica: when every replica already runs the
// new signing.algorithm (all refusing), the change can still be made from
// one of them, which then signs at once: no deadlock.
func TestSetAlgorithmFromRefusingReplica(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	store := newStore(clk)
	a := newManager(t, store, clk, optsES)
	tok := signed(t, a)
	b := newManager(t, store, clk, optsRS)
	wantDefaultMismatch(t, b, "ES256")
	res, err := b.SetAlgorithm(ctx, "RS256")
	if err != nil || !res.Changed {
		t.Fatalf("SetAlgorithm on a refusing replica = %+v, %v; want changed", res, err)
	}
	if err := b.Readiness(); err != nil {
		t.Fatalf("B after its own change = %v, want ready", err)
	}
	if got := defaultAlg(t, b); got != "RS256" {
		t.Errorf("B signs with %s, want RS256", got)
	}
	if _, _, err := b.Verify(tok); err != nil {
		t.Errorf("a token signed before the change does not verify: %v", err)
	}
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	wantDefaultMismatch(t, a, "RS256")
}

// TestSetAlgorithmRefusals: an algorithm the set has no key for, or that
// is not supported at all, changes nothing and says why; so does a
// replica refusing for another reason than its default.
func TestSetAlgorithmRefusals(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	store := newStore(clk)
	a := newManager(t, store, clk, optsES)
	blob, _, _ := store.GetKeys(ctx)
	for _, tc := range []struct {
		alg  string
		want error
		says string
	}{
		{"EdDSA", ErrUnknownAlgorithm, "signing.algorithms"},
		{"HS256", ErrUnsupportedAlgorithm, "ES256"},
		{"", ErrUnsupportedAlgorithm, "ES256"},
		{"es256", ErrUnsupportedAlgorithm, "ES256"},
	} {
		_, err := a.SetAlgorithm(ctx, tc.alg)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("SetAlgorithm(%q) = %v, want %v naming %s", tc.alg, err, tc.want, tc.says)
		}
	}
	if after, _, _ := store.GetKeys(ctx); !bytes.Equal(after, blob) {
		t.Error("a refused SetAlgorithm changed the stored key set")
	}
	if err := a.Readiness(); err != nil {
		t.Errorf("Readiness after refused changes = %v", err)
	}

	// A replica that cannot decrypt the set must not write it.
	replaceSet(t, store, foreignSet(t, clk, Options{Algorithms: []string{"RS256"}, KEK: bytes.Repeat([]byte{9}, 32)}))
	foreign, _, _ := store.GetKeys(ctx)
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if a.Ready() {
		t.Fatal("ready with a set sealed under another KEK")
	}
	if _, err := a.SetAlgorithm(ctx, "RS256"); !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "signing.key_encryption_key") {
		t.Errorf("SetAlgorithm with the wrong KEK = %v, want ErrNotReady naming signing.key_encryption_key", err)
	}
	if after, _, _ := store.GetKeys(ctx); !bytes.Equal(after, foreign) {
		t.Error("a replica with the wrong KEK changed the stored key set")
	}
}

// TestChangedDefaultReachesReplicaByNotification: a replica waiting for
// the fleet's default to become its own, with an hour-long sync timer,
// becomes ready within a second of the change through the key-change
// notification.
func TestChangedDefaultReachesReplicaByNotification(t *testing.T) {
	clk := newClock()
	store := newStore(clk)
	a := newManager(t, store, clk, optsES)
	b := newManager(t, store, clk, optsRS)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.runSync(ctx, time.Hour); close(done) }()
	defer func() {
		cancel()
		<-done
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !b.subscribed() {
		if time.Now().After(deadline) {
			t.Fatal("replica did not subscribe to key notifications")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := a.SetAlgorithm(context.Background(), "RS256"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for b.Readiness() != nil {
		if time.Since(start) > time.Second {
			t.Fatalf("B still refuses a second after the change: %v", b.Readiness())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRegressionsSurviveRefusal: the regression count is the Manager's for
// its whole life; refusing the stored set does not reset it (the metric
// is a counter and must never go backwards).
func TestRegressionsSurviveRefusal(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	m := newManager(t, newStore(clk), clk, Options{})
	m.store = newStore(clk) // storage came back empty
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := m.Regressions(); got != 1 {
		t.Fatalf("Regressions() after a loss = %d, want 1", got)
	}
	replaceSet(t, m.store, foreignSet(t, clk, Options{KEK: bytes.Repeat([]byte{9}, 32)}))
	if err := m.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if m.Ready() {
		t.Fatal("Manager ready with a set it cannot decrypt")
	}
	if got := m.Regressions(); got != 1 {
		t.Errorf("Regressions() while refusing = %d, want 1 (the counter went backwards)", got)
	}
}

// TestRotateNowReportsAlreadyRotated: RotateNow on a replica that has not
// seen another's rotation yet rotates nothing and says so; asked again it
// rotates.
func TestRotateNowReportsAlreadyRotated(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	store := newStore(clk)
	a := newManager(t, store, clk, Options{})
	b := newManager(t, store, clk, Options{})
	if err := a.RotateNow(ctx); err != nil {
		t.Fatalf("first RotateNow: %v", err)
	}
	after := activeKid(t, a, "ES256")
	if err := b.RotateNow(ctx); !errors.Is(err, ErrAlreadyRotated) {
		t.Fatalf("RotateNow after another replica's rotation = %v, want ErrAlreadyRotated", err)
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := activeKid(t, b, "ES256"); got != after {
		t.Errorf("after ErrAlreadyRotated B signs with %s, want %s (one rotation)", got, after)
	}
	if err := b.RotateNow(ctx); err != nil {
		t.Errorf("RotateNow asked again = %v, want a rotation", err)
	}
	if activeKid(t, b, "ES256") == after {
		t.Error("no rotation happened on the second call")
	}
}

// stripDefault rewrites the stored set without its recorded default, as a
// broker that predates the field writes it.
func stripDefault(t *testing.T, store storage.Storage) {
	t.Helper()
	ctx := context.Background()
	data, v, err := store.GetKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	set, err := decodeSet(data)
	if err != nil {
		t.Fatal(err)
	}
	set.Default = ""
	if data, err = json.Marshal(set); err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutKeys(ctx, data, v); err != nil {
		t.Fatal(err)
	}
}

// TestLegacyWriteKeepsFleetDefault: during a rolling upgrade an older
// broker rewrites the set without the recorded default. A replica refusing
// because its signing.algorithm is not the fleet's stays refusing and does
// not record its own; the next write records the fleet's again.
func TestLegacyWriteKeepsFleetDefault(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	store := newStore(clk)
	a := newManager(t, store, clk, optsES)
	b := newManager(t, store, clk, optsRS)
	wantDefaultMismatch(t, b, "ES256")
	stripDefault(t, store)
	for range 2 {
		if err := b.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	wantDefaultMismatch(t, b, "ES256")
	if got := storedSet(t, store).Default; got != "" {
		t.Fatalf("the refusing replica recorded %q as the fleet's default", got)
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := storedSet(t, store).Default; got != "ES256" {
		t.Errorf("stored default after A's sync = %q, want ES256", got)
	}
	if !a.Ready() {
		t.Errorf("A: %v", a.Readiness())
	}
}

// TestClientAlgorithmsInSharedSet: every algorithm a replica can sign with
// (its signing.algorithm and signing.algorithms, the only ones a client's
// id_token_signed_response_alg may name) has its key in the shared set:
// a replica adds a missing one to the set before it signs with it, every
// replica publishes it, and a set that lost it gets it back.
func TestClientAlgorithmsInSharedSet(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	store := newStore(clk)
	a := newManager(t, store, clk, Options{})
	b := newManager(t, store, clk, Options{Algorithms: []string{"EdDSA"}})
	tok, err := b.Sign("EdDSA", []byte(`{}`), "JWT")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(kids(t, a, "EdDSA"), header(t, tok).KeyID) {
		t.Errorf("A does not publish B's EdDSA key %s", header(t, tok).KeyID)
	}
	if got, want := a.PublishedAlgorithms(), []string{"ES256", "EdDSA"}; !slices.Equal(got, want) {
		t.Errorf("A publishes %v, want %v", got, want)
	}
	// The set loses EdDSA (rewritten by a replica that never had it).
	replaceSet(t, store, foreignSet(t, clk, Options{}))
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	set := storedSet(t, store)
	if set.Algs["EdDSA"] == nil || set.Algs["EdDSA"].Active.KID != activeKid(t, b, "EdDSA") {
		t.Errorf("after B's sync the stored set has no EdDSA key B signs with: %v", storedKids(set, "EdDSA"))
	}
}
