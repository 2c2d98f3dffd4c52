package storagetest

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fedbroker/fedbroker/broker/storage"
)

func testRefresh(t *testing.T, s storage.Storage) {
	c := ctx(t)
	f := family(t, "sub-"+random(t))
	first := token(t, f.ID)
	wantErr(t, "CreateRefresh", s.CreateRefresh(c, f, first), nil)
	wantErr(t, "CreateRefresh same family", s.CreateRefresh(c, f, token(t, f.ID)), storage.ErrAlreadyExists)
	if err := s.CreateRefresh(c, family(t, "x"), token(t, f.ID)); err == nil {
		t.Fatalf("CreateRefresh with a token of another family = nil, want an error")
	}

	got, err := s.GetRefresh(c, first)
	wantErr(t, "GetRefresh", err, nil)
	if diff := cmp.Diff(f, got, cmpOpts...); diff != "" {
		t.Fatalf("GetRefresh() mismatch (-want +got):\n%s", diff)
	}
	got.Grant.Scopes[0] = "changed"

	now := time.Now().Add(time.Minute).Round(0)
	second := token(t, f.ID)
	if _, _, err := s.RotateRefresh(c, first, token(t, "other"), now, time.Hour, storage.Retry{}); err == nil {
		t.Fatalf("RotateRefresh to a token of another family = nil, want an error")
	}
	got, _, err = s.RotateRefresh(c, first, second, now, time.Hour, storage.Retry{})
	wantErr(t, "RotateRefresh", err, nil)
	want := f
	want.LastUsed, want.IdleExpiry = now, now.Add(time.Hour)
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Fatalf("RotateRefresh() mismatch (-want +got):\n%s", diff)
	}
	_, err = s.GetRefresh(c, first)
	wantErr(t, "GetRefresh of the rotated token", err, storage.ErrNotFound)
	got, err = s.GetRefresh(c, second)
	wantErr(t, "GetRefresh of the new token", err, nil)
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Fatalf("GetRefresh() after rotation mismatch (-want +got):\n%s", diff)
	}

	// Idle lifetime is capped at the absolute expiry.
	third := token(t, f.ID)
	later := now.Add(time.Hour / 2)
	got, _, err = s.RotateRefresh(c, second, third, later, 1000*time.Hour, storage.Retry{})
	wantErr(t, "RotateRefresh with a long idle lifetime", err, nil)
	if !got.IdleExpiry.Equal(f.AbsoluteExpiry) || !got.LastUsed.Equal(later) {
		t.Fatalf("RotateRefresh() LastUsed, IdleExpiry = %v, %v, want %v, %v", got.LastUsed, got.IdleExpiry, later, f.AbsoluteExpiry)
	}

	wantErr(t, "RevokeFamily", s.RevokeFamily(c, f.ID, f.AbsoluteExpiry), nil)
	_, err = s.GetRefresh(c, third)
	wantErr(t, "GetRefresh after revoke", err, storage.ErrNotFound)
	_, _, err = s.RotateRefresh(c, third, token(t, f.ID), later, time.Hour, storage.Retry{})
	wantErr(t, "RotateRefresh after revoke", err, storage.ErrNotFound)
	wantErr(t, "CreateRefresh after revoke", s.CreateRefresh(c, f, token(t, f.ID)), storage.ErrNotFound)
	wantErr(t, "RevokeFamily of an unknown family", s.RevokeFamily(c, random(t), time.Now().Add(time.Hour)), nil)
}

func testRefreshReuse(t *testing.T, s storage.Storage) {
	c := ctx(t)
	f := family(t, "sub-"+random(t))
	first, second, third := token(t, f.ID), token(t, f.ID), token(t, f.ID)
	wantErr(t, "CreateRefresh", s.CreateRefresh(c, f, first), nil)
	now := time.Now()
	_, _, err := s.RotateRefresh(c, first, second, now, time.Hour, storage.Retry{})
	wantErr(t, "RotateRefresh", err, nil)
	_, _, err = s.RotateRefresh(c, second, third, now, time.Hour, storage.Retry{})
	wantErr(t, "RotateRefresh again", err, nil)

	// An attacker replays the first token: the family dies.
	_, _, err = s.RotateRefresh(c, first, token(t, f.ID), now, time.Hour, storage.Retry{})
	wantErr(t, "RotateRefresh of a rotated token", err, storage.ErrReused)
	_, err = s.GetRefresh(c, third)
	wantErr(t, "GetRefresh of the current token after reuse", err, storage.ErrNotFound)
	_, _, err = s.RotateRefresh(c, third, token(t, f.ID), now, time.Hour, storage.Retry{})
	wantErr(t, "RotateRefresh of the current token after reuse", err, storage.ErrNotFound)
	wantErr(t, "CreateRefresh of a family revoked by reuse", s.CreateRefresh(c, f, token(t, f.ID)), storage.ErrNotFound)
}

// testRefreshUnknownSecret: a token naming a live family with a secret
// that is not the current one is treated as reuse, whether it was rotated
// away or never issued. Backends remember only the current token of a
// family (its state is O(1) in the number of rotations), so they cannot
// tell the two apart; the family id is the first half of a secret token
// and never leaves the broker otherwise (access tokens carry only a hash
// of it), so whoever presents it held a token of the family.
func testRefreshUnknownSecret(t *testing.T, s storage.Storage) {
	c := ctx(t)
	f := family(t, "sub-"+random(t))
	first := token(t, f.ID)
	wantErr(t, "CreateRefresh", s.CreateRefresh(c, f, first), nil)
	_, _, err := s.RotateRefresh(c, token(t, f.ID), token(t, f.ID), time.Now(), time.Hour, storage.Retry{})
	wantErr(t, "RotateRefresh of a secret the store never issued", err, storage.ErrReused)
	_, err = s.GetRefresh(c, first)
	wantErr(t, "GetRefresh of the current token after reuse", err, storage.ErrNotFound)
	wantErr(t, "CreateRefresh of a family revoked by reuse", s.CreateRefresh(c, f, token(t, f.ID)), storage.ErrNotFound)
}

// testRefreshManyRotations: after many rotations every earlier token of
// the family, the very first included, is still recognised as reuse.
func testRefreshManyRotations(t *testing.T, s storage.Storage) {
	for name, pick := range map[string]func(toks []string) string{
		"first":          func(toks []string) string { return toks[0] },
		"middle":         func(toks []string) string { return toks[len(toks)/2] },
		"before_current": func(toks []string) string { return toks[len(toks)-2] },
	} {
		t.Run(name, func(t *testing.T) {
			c := ctx(t)
			f, toks := RotateMany(t, s, 200)
			_, _, err := s.RotateRefresh(c, pick(toks), token(t, f.ID), time.Now(), time.Hour, storage.Retry{})
			wantErr(t, "RotateRefresh of the "+name+" token", err, storage.ErrReused)
			_, err = s.GetRefresh(c, toks[len(toks)-1])
			wantErr(t, "GetRefresh of the current token after reuse", err, storage.ErrNotFound)
		})
	}
}

// RotateMany creates a family and rotates its token n times, each time
// keeping a sealed successor for a retry (see retryOf) as the broker does;
// it returns the family and its n+1 tokens in order (the last is current).
func RotateMany(t testing.TB, s storage.Storage, n int) (storage.RefreshFamily, []string) {
	t.Helper()
	c := ctx(t)
	f := family(t, "sub-"+random(t))
	toks := []string{token(t, f.ID)}
	wantErr(t, "CreateRefresh", s.CreateRefresh(c, f, toks[0]), nil)
	now := time.Now()
	for i := 0; i < n; i++ {
		next := token(t, f.ID)
		// As the broker rotates: keeping the sealed successor for a retry.
		if _, _, err := s.RotateRefresh(c, toks[len(toks)-1], next, now, time.Hour, retryOf(t, next)); err != nil {
			t.Fatalf("RotateRefresh #%d: %v", i+1, err)
		}
		toks = append(toks, next)
	}
	return f, toks
}

func testRefreshConcurrent(t *testing.T, s storage.Storage) {
	c := ctx(t)
	f := family(t, "sub-"+random(t))
	first := token(t, f.ID)
	wantErr(t, "CreateRefresh", s.CreateRefresh(c, f, first), nil)
	next := make([]string, 50)
	for i := range next {
		next[i] = token(t, f.ID)
	}
	now := time.Now()
	errs := concurrently(50, func(i int) error {
		_, _, err := s.RotateRefresh(c, first, next[i], now, time.Hour, storage.Retry{})
		return err
	})
	ok, reused := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, storage.ErrReused):
			reused++
		case !errors.Is(err, storage.ErrNotFound): // the family is gone once reuse was seen
			t.Errorf("concurrent RotateRefresh: error = %v, want nil, ErrReused or ErrNotFound", err)
		}
	}
	if ok != 1 || reused == 0 {
		t.Fatalf("concurrent RotateRefresh: %d succeeded and %d saw reuse, want 1 and at least 1", ok, reused)
	}
	for _, n := range next {
		if _, err := s.GetRefresh(c, n); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("GetRefresh after concurrent reuse: error = %v, want ErrNotFound", err)
		}
	}
}

func testRevokeBeforeCreate(t *testing.T, s storage.Storage) {
	c := ctx(t)
	f := family(t, "sub-"+random(t))
	wantErr(t, "RevokeFamily", s.RevokeFamily(c, f.ID, time.Now().Add(time.Hour)), nil)
	tok := token(t, f.ID)
	wantErr(t, "CreateRefresh of a revoked family", s.CreateRefresh(c, f, tok), storage.ErrNotFound)
	_, err := s.GetRefresh(c, tok)
	wantErr(t, "GetRefresh", err, storage.ErrNotFound)
	other := family(t, f.Grant.Subject)
	wantErr(t, "CreateRefresh of another family", s.CreateRefresh(c, other, token(t, other.ID)), nil)
}

func testRefreshExpiry(t *testing.T, s storage.Storage) {
	c := ctx(t)
	f := family(t, "sub-"+random(t))
	tok := token(t, f.ID)
	wantErr(t, "CreateRefresh", s.CreateRefresh(c, f, tok), nil)
	for _, tc := range []struct {
		name string
		now  time.Time
	}{
		{"idle", f.IdleExpiry.Add(time.Second)},
		{"absolute", f.AbsoluteExpiry.Add(time.Second)},
	} {
		_, _, err := s.RotateRefresh(c, tok, token(t, f.ID), tc.now, time.Hour, storage.Retry{})
		wantErr(t, "RotateRefresh past the "+tc.name+" expiry", err, storage.ErrNotFound)
	}
	// Renewing keeps the family alive past the first idle expiry, but never
	// past the absolute one.
	now, next := f.IdleExpiry.Add(-time.Second), token(t, f.ID)
	got, _, err := s.RotateRefresh(c, tok, next, now, time.Hour, storage.Retry{})
	wantErr(t, "RotateRefresh before idle expiry", err, nil)
	if want := now.Add(time.Hour); !got.IdleExpiry.Equal(want) {
		t.Fatalf("RotateRefresh() IdleExpiry = %v, want %v", got.IdleExpiry, want)
	}
	_, _, err = s.RotateRefresh(c, next, token(t, f.ID), f.AbsoluteExpiry, time.Hour, storage.Retry{})
	wantErr(t, "RotateRefresh at the absolute expiry", err, storage.ErrNotFound)
}

func testRefreshMalformed(t *testing.T, s storage.Storage) {
	c := ctx(t)
	f := family(t, "sub-"+random(t))
	tok := token(t, f.ID)
	wantErr(t, "CreateRefresh", s.CreateRefresh(c, f, tok), nil)
	for _, bad := range []string{"", ".", "nodot", "." + random(t), f.ID + ".", f.ID, "." + f.ID, storage.Hash(tok), f.ID + ".." + random(t)} {
		_, err := s.GetRefresh(c, bad)
		wantErr(t, "GetRefresh("+bad+")", err, storage.ErrNotFound)
		_, _, err = s.RotateRefresh(c, bad, token(t, f.ID), time.Now(), time.Hour, storage.Retry{})
		wantErr(t, "RotateRefresh("+bad+")", err, storage.ErrNotFound)
	}
	if _, err := s.GetRefresh(c, tok); err != nil {
		t.Fatalf("GetRefresh after malformed tokens: %v, want the family intact", err)
	}
	if err := s.CreateRefresh(c, family(t, "x"), "no-dot-token"); err == nil {
		t.Fatalf("CreateRefresh with a malformed token = nil, want an error")
	}
}

func testRevokeSubject(t *testing.T, s storage.Storage) {
	c := ctx(t)
	alice, bob := "alice-"+random(t), "bob-"+random(t)
	type fam struct {
		f   storage.RefreshFamily
		tok string
	}
	var aliceFams, bobFams []fam
	for i := 0; i < 3; i++ {
		for _, who := range []string{alice, bob} {
			f := family(t, who)
			tok := token(t, f.ID)
			wantErr(t, "CreateRefresh", s.CreateRefresh(c, f, tok), nil)
			if who == alice {
				aliceFams = append(aliceFams, fam{f, tok})
			} else {
				bobFams = append(bobFams, fam{f, tok})
			}
		}
	}
	// One of Alice's families is already revoked; it is not counted again.
	wantErr(t, "RevokeFamily", s.RevokeFamily(c, aliceFams[2].f.ID, time.Now().Add(time.Hour)), nil)
	aliceSess := []storage.Session{session(t, alice), session(t, alice)}
	bobSess := session(t, bob)
	for _, se := range append(aliceSess, bobSess) {
		wantErr(t, "CreateSession", s.CreateSession(c, se), nil)
	}
	wantErr(t, "DeleteSession", s.DeleteSession(c, aliceSess[1].ID), nil)
	aliceSess = append(aliceSess, session(t, alice))
	wantErr(t, "CreateSession", s.CreateSession(c, aliceSess[2]), nil)

	fams, sess, err := s.RevokeSubject(c, alice)
	wantErr(t, "RevokeSubject", err, nil)
	if fams != 2 || sess != 2 {
		t.Fatalf("RevokeSubject(alice) = %d families, %d sessions, want 2, 2", fams, sess)
	}
	for _, a := range aliceFams {
		_, err := s.GetRefresh(c, a.tok)
		wantErr(t, "GetRefresh of a revoked subject", err, storage.ErrNotFound)
		wantErr(t, "CreateRefresh of a revoked subject's family", s.CreateRefresh(c, a.f, token(t, a.f.ID)), storage.ErrNotFound)
	}
	for _, se := range aliceSess {
		_, err := s.GetSession(c, se.ID)
		wantErr(t, "GetSession of a revoked subject", err, storage.ErrNotFound)
	}
	for _, b := range bobFams {
		_, err := s.GetRefresh(c, b.tok)
		wantErr(t, "GetRefresh of another subject", err, nil)
	}
	_, err = s.GetSession(c, bobSess.ID)
	wantErr(t, "GetSession of another subject", err, nil)

	fams, sess, err = s.RevokeSubject(c, alice)
	wantErr(t, "RevokeSubject again", err, nil)
	if fams != 0 || sess != 0 {
		t.Fatalf("RevokeSubject(alice) again = %d, %d, want 0, 0", fams, sess)
	}
	fams, sess, err = s.RevokeSubject(c, "nobody-"+random(t))
	wantErr(t, "RevokeSubject unknown", err, nil)
	if fams != 0 || sess != 0 {
		t.Fatalf("RevokeSubject(unknown) = %d, %d, want 0, 0", fams, sess)
	}
	// New sign-ins after the revocation work.
	f := family(t, alice)
	wantErr(t, "CreateRefresh after RevokeSubject", s.CreateRefresh(c, f, token(t, f.ID)), nil)
}

// testUpdateRefreshGrant: the grant of a family changes only through its
// current token, and survives later rotations.
func testUpdateRefreshGrant(t *testing.T, s storage.Storage) {
	c := ctx(t)
	f := family(t, "sub-"+random(t))
	first, second, third := token(t, f.ID), token(t, f.ID), token(t, f.ID)
	wantErr(t, "CreateRefresh", s.CreateRefresh(c, f, first), nil)
	now := time.Now()
	_, _, err := s.RotateRefresh(c, first, second, now, time.Hour, storage.Retry{})
	wantErr(t, "RotateRefresh", err, nil)
	g := f.Grant
	g.ConnectorData = []byte("sealed upstream refresh token v2")
	wantErr(t, "UpdateRefreshGrant with a rotated token", s.UpdateRefreshGrant(c, first, g), storage.ErrNotFound)
	wantErr(t, "UpdateRefreshGrant with an unknown token", s.UpdateRefreshGrant(c, token(t, f.ID), g), storage.ErrNotFound)
	wantErr(t, "UpdateRefreshGrant", s.UpdateRefreshGrant(c, second, g), nil)
	got, err := s.GetRefresh(c, second)
	wantErr(t, "GetRefresh", err, nil)
	if string(got.Grant.ConnectorData) != string(g.ConnectorData) {
		t.Errorf("GetRefresh() connector data = %q, want %q", got.Grant.ConnectorData, g.ConnectorData)
	}
	rotated, _, err := s.RotateRefresh(c, second, third, now, time.Hour, storage.Retry{})
	wantErr(t, "RotateRefresh after update", err, nil)
	if string(rotated.Grant.ConnectorData) != string(g.ConnectorData) {
		t.Errorf("RotateRefresh() connector data = %q, want %q", rotated.Grant.ConnectorData, g.ConnectorData)
	}
	if !rotated.LastUsed.Equal(now) && rotated.LastUsed.Sub(now).Abs() > time.Millisecond {
		t.Errorf("RotateRefresh() LastUsed = %v, want %v", rotated.LastUsed, now)
	}
}

// retryWindow is the retry window of the retry tests.
const retryWindow = 5 * time.Second

// retryOf is a storage.Retry for a rotation to next, with a stand-in for
// the broker's sealed successor: as long as a sealed token (version byte,
// 12-byte nonce, the token, 16-byte tag) and never containing the token.
func retryOf(t testing.TB, next string) storage.Retry {
	b := make([]byte, 1+12+len(next)+16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return storage.Retry{Window: retryWindow, SealedNext: b}
}

// testRefreshRetry: the token a rotation replaced, presented again within
// the window of a later call, is answered with the family and the same
// sealed successor, as often as it comes, without changing the family;
// the successor stays current.
func testRefreshRetry(t *testing.T, s storage.Storage) {
	c := ctx(t)
	f := family(t, "sub-"+random(t))
	first, second := token(t, f.ID), token(t, f.ID)
	wantErr(t, "CreateRefresh", s.CreateRefresh(c, f, first), nil)
	now := time.Now().Round(0)
	r := retryOf(t, second)
	rotated, sealed, err := s.RotateRefresh(c, first, second, now, time.Hour, r)
	wantErr(t, "RotateRefresh", err, nil)
	if sealed != nil {
		t.Errorf("RotateRefresh() sealed successor = %x, want nil on a rotation", sealed)
	}
	for i, at := range []time.Duration{0, time.Second, retryWindow - time.Millisecond} {
		got, sealed, err := s.RotateRefresh(c, first, token(t, f.ID), now.Add(at), time.Hour, storage.Retry{Window: retryWindow, SealedNext: retryOf(t, "x").SealedNext})
		wantErr(t, fmt.Sprintf("retry #%d, %s after the rotation", i+1, at), err, storage.ErrRetry)
		if !bytes.Equal(sealed, r.SealedNext) {
			t.Fatalf("retry #%d: sealed successor = %x, want %x", i+1, sealed, r.SealedNext)
		}
		if diff := cmp.Diff(rotated, got, cmpOpts...); diff != "" {
			t.Fatalf("retry #%d: family mismatch (-want +got):\n%s", i+1, diff)
		}
	}
	// The retries changed nothing: the successor is current and rotates.
	got, err := s.GetRefresh(c, second)
	wantErr(t, "GetRefresh of the successor after retries", err, nil)
	if diff := cmp.Diff(rotated, got, cmpOpts...); diff != "" {
		t.Fatalf("GetRefresh() after retries mismatch (-want +got):\n%s", diff)
	}
	// A zero window in the retrying call answers no retry: reuse.
	g := family(t, "sub-"+random(t))
	a, b := token(t, g.ID), token(t, g.ID)
	wantErr(t, "CreateRefresh", s.CreateRefresh(c, g, a), nil)
	_, _, err = s.RotateRefresh(c, a, b, now, time.Hour, retryOf(t, b))
	wantErr(t, "RotateRefresh", err, nil)
	_, _, err = s.RotateRefresh(c, a, token(t, g.ID), now, time.Hour, storage.Retry{})
	wantErr(t, "retry with a zero window", err, storage.ErrReused)
	// A rotation that kept no successor answers no retry either.
	h := family(t, "sub-"+random(t))
	a, b = token(t, h.ID), token(t, h.ID)
	wantErr(t, "CreateRefresh", s.CreateRefresh(c, h, a), nil)
	_, _, err = s.RotateRefresh(c, a, b, now, time.Hour, storage.Retry{Window: retryWindow})
	wantErr(t, "RotateRefresh without a sealed successor", err, nil)
	_, _, err = s.RotateRefresh(c, a, token(t, h.ID), now, time.Hour, storage.Retry{Window: retryWindow})
	wantErr(t, "retry of a rotation that kept nothing", err, storage.ErrReused)
	_, err = s.GetRefresh(c, b)
	wantErr(t, "GetRefresh after reuse", err, storage.ErrNotFound)
}

// testRefreshRetryAfterWindow: past the window the replaced token is
// reuse, and the family is revoked.
func testRefreshRetryAfterWindow(t *testing.T, s storage.Storage) {
	c := ctx(t)
	f := family(t, "sub-"+random(t))
	first, second := token(t, f.ID), token(t, f.ID)
	wantErr(t, "CreateRefresh", s.CreateRefresh(c, f, first), nil)
	now := time.Now().Round(0)
	_, _, err := s.RotateRefresh(c, first, second, now, time.Hour, retryOf(t, second))
	wantErr(t, "RotateRefresh", err, nil)
	_, sealed, err := s.RotateRefresh(c, first, token(t, f.ID), now.Add(retryWindow), time.Hour, retryOf(t, "x"))
	wantErr(t, "retry at the end of the window", err, storage.ErrReused)
	if sealed != nil {
		t.Errorf("reuse returned a sealed successor %x, want nil", sealed)
	}
	_, err = s.GetRefresh(c, second)
	wantErr(t, "GetRefresh of the successor after reuse", err, storage.ErrNotFound)
	_, _, err = s.RotateRefresh(c, second, token(t, f.ID), now, time.Hour, retryOf(t, "x"))
	wantErr(t, "RotateRefresh of the successor after reuse", err, storage.ErrNotFound)
	wantErr(t, "CreateRefresh of a family revoked by reuse", s.CreateRefresh(c, f, token(t, f.ID)), storage.ErrNotFound)
}

// testRefreshRetryAfterSuccessorUsed: only the token the last rotation
// replaced is a retry; once the successor was rotated in turn, the older
// token is reuse even within the window.
func testRefreshRetryAfterSuccessorUsed(t *testing.T, s storage.Storage) {
	c := ctx(t)
	f := family(t, "sub-"+random(t))
	first, second, third := token(t, f.ID), token(t, f.ID), token(t, f.ID)
	wantErr(t, "CreateRefresh", s.CreateRefresh(c, f, first), nil)
	now := time.Now().Round(0)
	_, _, err := s.RotateRefresh(c, first, second, now, time.Hour, retryOf(t, second))
	wantErr(t, "RotateRefresh", err, nil)
	r3 := retryOf(t, third)
	_, _, err = s.RotateRefresh(c, second, third, now.Add(time.Second), time.Hour, r3)
	wantErr(t, "RotateRefresh of the successor", err, nil)
	// The token just replaced is still a retry...
	_, sealed, err := s.RotateRefresh(c, second, token(t, f.ID), now.Add(2*time.Second), time.Hour, retryOf(t, "x"))
	wantErr(t, "retry of the token just replaced", err, storage.ErrRetry)
	if !bytes.Equal(sealed, r3.SealedNext) {
		t.Fatalf("retry: sealed successor = %x, want %x", sealed, r3.SealedNext)
	}
	// ...the one before it is reuse.
	_, _, err = s.RotateRefresh(c, first, token(t, f.ID), now.Add(2*time.Second), time.Hour, retryOf(t, "x"))
	wantErr(t, "retry of a token whose successor was rotated", err, storage.ErrReused)
	_, err = s.GetRefresh(c, third)
	wantErr(t, "GetRefresh of the current token after reuse", err, storage.ErrNotFound)
}

// testRefreshRetryConcurrent: 50 concurrent retries all get the same
// successor, and so do the losers of 50 concurrent rotations of one
// current token: one rotates, the others are its retries.
func testRefreshRetryConcurrent(t *testing.T, s storage.Storage) {
	c := ctx(t)
	f := family(t, "sub-"+random(t))
	first, second := token(t, f.ID), token(t, f.ID)
	wantErr(t, "CreateRefresh", s.CreateRefresh(c, f, first), nil)
	now := time.Now()
	r := retryOf(t, second)
	_, _, err := s.RotateRefresh(c, first, second, now, time.Hour, r)
	wantErr(t, "RotateRefresh", err, nil)
	sealed := make([][]byte, 50)
	errs := concurrently(50, func(i int) error {
		var err error
		_, sealed[i], err = s.RotateRefresh(c, first, token(t, f.ID), now, time.Hour, retryOf(t, "x"))
		return err
	})
	for i, err := range errs {
		if !errors.Is(err, storage.ErrRetry) || !bytes.Equal(sealed[i], r.SealedNext) {
			t.Fatalf("concurrent retry #%d = %x, %v; want %x, ErrRetry", i, sealed[i], err, r.SealedNext)
		}
	}
	if _, err := s.GetRefresh(c, second); err != nil {
		t.Fatalf("GetRefresh of the successor after concurrent retries: %v", err)
	}

	// 50 concurrent rotations of the (now) current token.
	next := make([]string, 50)
	retries := make([]storage.Retry, 50)
	for i := range next {
		next[i] = token(t, f.ID)
		retries[i] = retryOf(t, next[i])
	}
	errs = concurrently(50, func(i int) error {
		var err error
		_, sealed[i], err = s.RotateRefresh(c, second, next[i], now, time.Hour, retries[i])
		return err
	})
	winner := -1
	for i, err := range errs {
		if err == nil {
			if winner >= 0 {
				t.Fatalf("concurrent rotations: #%d and #%d both rotated", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatalf("concurrent rotations: none rotated: %v", errs)
	}
	for i, err := range errs {
		if i != winner && (!errors.Is(err, storage.ErrRetry) || !bytes.Equal(sealed[i], retries[winner].SealedNext)) {
			t.Fatalf("concurrent rotation #%d = %x, %v; want the winner's successor %x, ErrRetry", i, sealed[i], err, retries[winner].SealedNext)
		}
	}
	if _, err := s.GetRefresh(c, next[winner]); err != nil {
		t.Fatalf("GetRefresh of the winner's token: %v", err)
	}
}
