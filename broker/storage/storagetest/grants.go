package storagetest

import (
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// The grants of the token endpoint in one step (storage.GrantStore). A
// store that does not implement it skips these.

const endedNS = "ended_session"

func grantStore(t *testing.T, s storage.Storage) storage.GrantStore {
	t.Helper()
	gs, ok := s.(storage.GrantStore)
	if !ok {
		t.Skip("the store does not implement storage.GrantStore")
	}
	return gs
}

// redemption asks for a family with a new id for a code of grant("…").
func redemption(t testing.TB, now time.Time) storage.Redemption {
	id := random(t)
	return storage.Redemption{
		Now: now, EndedSessions: endedNS, FamilyID: id, RefreshToken: token(t, id),
		RefreshIdle: time.Hour, RefreshAbsolute: 24 * time.Hour,
	}
}

func testRedeemCode(t *testing.T, s storage.Storage) {
	gs := grantStore(t, s)
	c := code(t)
	c.Grant.DPoPJKT = "code-key"
	cc := random(t)
	wantErr(t, "CreateCode", s.CreateCode(ctx(t), cc, c), nil)
	now := time.Now().Round(0)
	r := redemption(t, now)
	r.DPoPJKT = "family-key"
	r.Proof = storage.Mark{Namespace: "proof", ID: random(t), Until: now.Add(time.Minute)}
	got, err := gs.RedeemCode(ctx(t), cc, r)
	wantErr(t, "RedeemCode", err, nil)
	want := c
	want.FamilyID = r.FamilyID
	if diff := cmp.Diff(want, got.Code, cmpOpts...); diff != "" {
		t.Fatalf("RedeemCode() code mismatch (-want +got):\n%s", diff)
	}
	if got.SessionEnded {
		t.Fatalf("RedeemCode() SessionEnded = true, want false")
	}
	wantFam := storage.RefreshFamily{ID: r.FamilyID, Grant: c.Grant, CreatedAt: now, LastUsed: now, IdleExpiry: now.Add(time.Hour), AbsoluteExpiry: now.Add(24 * time.Hour)}
	wantFam.Grant.DPoPJKT = "family-key"
	if got.Family == nil {
		t.Fatalf("RedeemCode() Family = nil, want the family started")
	}
	if diff := cmp.Diff(wantFam, *got.Family, cmpOpts...); diff != "" {
		t.Fatalf("RedeemCode() family mismatch (-want +got):\n%s", diff)
	}
	stored, err := s.GetRefresh(ctx(t), r.RefreshToken)
	wantErr(t, "GetRefresh(first token)", err, nil)
	if diff := cmp.Diff(wantFam, stored, cmpOpts...); diff != "" {
		t.Fatalf("GetRefresh(first token) mismatch (-want +got):\n%s", diff)
	}
	if fresh, err := s.MarkSeen(ctx(t), "proof", r.Proof.ID, time.Time{}); err != nil || fresh {
		t.Fatalf("MarkSeen(proof) after RedeemCode = %v, %v; want recorded", fresh, err)
	}
	if ids, _, err := s.RevokeSubject(ctx(t), c.Grant.Subject); err != nil || ids != 1 {
		t.Fatalf("RevokeSubject() = %d families, %v; want the family started indexed under its subject", ids, err)
	}

	// A replay returns the record with the family id the first redemption
	// set, whichever call makes it.
	again := redemption(t, now)
	got, err = gs.RedeemCode(ctx(t), cc, again)
	wantErr(t, "RedeemCode(replay)", err, storage.ErrAlreadyUsed)
	if got.Code.FamilyID != r.FamilyID || got.Family != nil {
		t.Fatalf("RedeemCode(replay) = family id %q, family %v; want %q, none", got.Code.FamilyID, got.Family, r.FamilyID)
	}
	ac, err := s.ConsumeCode(ctx(t), cc)
	wantErr(t, "ConsumeCode(replay)", err, storage.ErrAlreadyUsed)
	if ac.FamilyID != r.FamilyID {
		t.Fatalf("ConsumeCode(replay) family id = %q, want %q", ac.FamilyID, r.FamilyID)
	}
	if _, err := s.GetRefresh(ctx(t), again.RefreshToken); err == nil {
		t.Fatalf("GetRefresh(replay's token) = nil error, want no family")
	}

	// A proof seen before: nothing done, the code still unused.
	c2, cc2 := code(t), random(t)
	wantErr(t, "CreateCode", s.CreateCode(ctx(t), cc2, c2), nil)
	r2 := redemption(t, now)
	r2.Proof = r.Proof
	_, err = gs.RedeemCode(ctx(t), cc2, r2)
	wantErr(t, "RedeemCode(proof seen)", err, storage.ErrSeen)
	if _, err := s.ConsumeCode(ctx(t), cc2); err != nil {
		t.Fatalf("ConsumeCode after a refused proof = %v, want nil (the code unused)", err)
	}

	_, err = gs.RedeemCode(ctx(t), random(t), redemption(t, now))
	wantErr(t, "RedeemCode(unknown)", err, storage.ErrNotFound)
}

func testRedeemCodeNoFamily(t *testing.T, s storage.Storage) {
	gs := grantStore(t, s)
	now := time.Now().Round(0)
	for _, tc := range []struct {
		name   string
		change func(c *storage.AuthCode, r *storage.Redemption)
	}{
		{"no offline_access", func(c *storage.AuthCode, r *storage.Redemption) { c.Grant.Scopes = []string{"openid"} }},
		{"NoRefresh", func(c *storage.AuthCode, r *storage.Redemption) { c.Grant.NoRefresh = true }},
		{"RefreshUntil passed", func(c *storage.AuthCode, r *storage.Redemption) { c.Grant.RefreshUntil = now.Add(-time.Second) }},
		{"no token asked", func(c *storage.AuthCode, r *storage.Redemption) { r.RefreshToken = "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, cc := code(t), random(t)
			r := redemption(t, now)
			tc.change(&c, &r)
			wantErr(t, "CreateCode", s.CreateCode(ctx(t), cc, c), nil)
			got, err := gs.RedeemCode(ctx(t), cc, r)
			wantErr(t, "RedeemCode", err, nil)
			if got.Family != nil || got.Code.FamilyID != r.FamilyID {
				t.Fatalf("RedeemCode() = family %v, family id %q; want none, %q", got.Family, got.Code.FamilyID, r.FamilyID)
			}
			if r.RefreshToken != "" {
				if _, err := s.GetRefresh(ctx(t), r.RefreshToken); err == nil {
					t.Fatalf("GetRefresh() = nil error, want no family")
				}
			}
		})
	}
	t.Run("RefreshUntil", func(t *testing.T) {
		c, cc := code(t), random(t)
		c.Grant.RefreshUntil = now.Add(2 * time.Hour)
		wantErr(t, "CreateCode", s.CreateCode(ctx(t), cc, c), nil)
		r := redemption(t, now)
		got, err := gs.RedeemCode(ctx(t), cc, r)
		wantErr(t, "RedeemCode", err, nil)
		if got.Family == nil || !got.Family.AbsoluteExpiry.Equal(c.Grant.RefreshUntil) {
			t.Fatalf("RedeemCode() family = %+v, want one ending at RefreshUntil %v", got.Family, c.Grant.RefreshUntil)
		}
		f, err := s.GetRefresh(ctx(t), r.RefreshToken)
		wantErr(t, "GetRefresh", err, nil)
		if !f.AbsoluteExpiry.Equal(c.Grant.RefreshUntil) || !f.IdleExpiry.Equal(now.Add(time.Hour)) {
			t.Fatalf("GetRefresh() expiries = %v, %v; want %v, %v", f.IdleExpiry, f.AbsoluteExpiry, now.Add(time.Hour), c.Grant.RefreshUntil)
		}
	})
}

func testRedeemCodeSessionEnded(t *testing.T, s storage.Storage) {
	gs := grantStore(t, s)
	c, cc := code(t), random(t)
	c.Grant.SessionID = "sid-" + random(t)
	wantErr(t, "CreateCode", s.CreateCode(ctx(t), cc, c), nil)
	if _, err := s.MarkSeen(ctx(t), endedNS, c.Grant.SessionID, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	r := redemption(t, time.Now().Round(0))
	got, err := gs.RedeemCode(ctx(t), cc, r)
	wantErr(t, "RedeemCode", err, nil)
	if !got.SessionEnded || got.Family != nil {
		t.Fatalf("RedeemCode() = SessionEnded %v, family %v; want true, none", got.SessionEnded, got.Family)
	}
	if _, err := s.GetRefresh(ctx(t), r.RefreshToken); err == nil {
		t.Fatalf("GetRefresh() = nil error, want no family")
	}
	_, err = gs.RedeemCode(ctx(t), cc, redemption(t, time.Now()))
	wantErr(t, "RedeemCode(again)", err, storage.ErrAlreadyUsed)
}

func testRedeemCodeConcurrent(t *testing.T, s storage.Storage) {
	gs := grantStore(t, s)
	c, cc := code(t), random(t)
	wantErr(t, "CreateCode", s.CreateCode(ctx(t), cc, c), nil)
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	reds := make([]storage.Redemption, n)
	for i := range n {
		reds[i] = redemption(t, time.Now().Round(0))
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = gs.RedeemCode(ctx(t), cc, reds[i])
		}()
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won >= 0:
			t.Fatalf("RedeemCode: two callers (%d, %d) redeemed one code", won, i)
		case err == nil:
			won = i
		default:
			wantErr(t, "RedeemCode(loser)", err, storage.ErrAlreadyUsed)
		}
	}
	if won < 0 {
		t.Fatalf("RedeemCode: no caller redeemed the code: %v", errs)
	}
	for i, r := range reds {
		_, err := s.GetRefresh(ctx(t), r.RefreshToken)
		if (err == nil) != (i == won) {
			t.Fatalf("GetRefresh(token of caller %d) = %v; only the winner %d has a family", i, err, won)
		}
	}
}

// rotation rotates tok of a family of grant("…") as its own client would.
func rotation(t testing.TB, f storage.RefreshFamily, tok string) storage.Rotation {
	return storage.Rotation{
		Old: tok, Next: token(t, f.ID), Now: time.Now().Round(0), Idle: time.Hour,
		ClientID: f.Grant.ClientID, DPoPJKT: f.Grant.DPoPJKT, Connectors: []string{"other", f.Grant.ConnectorID},
	}
}

func testRefreshGrant(t *testing.T, s storage.Storage) {
	gs := grantStore(t, s)
	f := family(t, "sub-"+random(t))
	f.Grant.ConnectorData = nil
	tok := createFamily(t, s, f)

	// A family that fails a check is returned unrotated.
	for _, tc := range []struct {
		name   string
		change func(r *storage.Rotation)
	}{
		{"other client", func(r *storage.Rotation) { r.ClientID = "other" }},
		{"scope not granted", func(r *storage.Rotation) { r.Scopes = []string{"openid", "admin"} }},
		{"connector gone", func(r *storage.Rotation) { r.Connectors = []string{"other"} }},
	} {
		r := rotation(t, f, tok)
		tc.change(&r)
		got, _, err := gs.RefreshGrant(ctx(t), r)
		wantErr(t, "RefreshGrant("+tc.name+")", err, storage.ErrUnchecked)
		if diff := cmp.Diff(f, got, cmpOpts...); diff != "" {
			t.Fatalf("RefreshGrant(%s) family mismatch (-want +got):\n%s", tc.name, diff)
		}
		if _, err := s.GetRefresh(ctx(t), tok); err != nil {
			t.Fatalf("GetRefresh after RefreshGrant(%s) = %v, want the token still current", tc.name, err)
		}
	}

	r := rotation(t, f, tok)
	r.Scopes = []string{"openid"}
	r.Proof = storage.Mark{Namespace: "proof", ID: random(t), Until: time.Now().Add(time.Minute)}
	got, _, err := gs.RefreshGrant(ctx(t), r)
	wantErr(t, "RefreshGrant", err, nil)
	want := f
	want.LastUsed, want.IdleExpiry = r.Now, r.Now.Add(time.Hour)
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Fatalf("RefreshGrant() family mismatch (-want +got):\n%s", diff)
	}
	if _, err := s.GetRefresh(ctx(t), r.Next); err != nil {
		t.Fatalf("GetRefresh(next) = %v, want current", err)
	}

	// The same proof again: nothing rotated.
	r2 := rotation(t, f, r.Next)
	r2.Proof = r.Proof
	_, _, err = gs.RefreshGrant(ctx(t), r2)
	wantErr(t, "RefreshGrant(proof seen)", err, storage.ErrSeen)
	if _, err := s.GetRefresh(ctx(t), r.Next); err != nil {
		t.Fatalf("GetRefresh(next) after a refused proof = %v, want still current", err)
	}

	// The rotated token again, without a retry window: reuse.
	_, _, err = gs.RefreshGrant(ctx(t), rotation(t, f, tok))
	wantErr(t, "RefreshGrant(reuse)", err, storage.ErrReused)
	if _, err := s.GetRefresh(ctx(t), r.Next); err == nil {
		t.Fatalf("GetRefresh(next) after reuse = nil error, want the family revoked")
	}
	_, _, err = gs.RefreshGrant(ctx(t), rotation(t, f, r.Next))
	wantErr(t, "RefreshGrant(revoked)", err, storage.ErrNotFound)
	_, _, err = gs.RefreshGrant(ctx(t), rotation(t, f, "malformed"))
	wantErr(t, "RefreshGrant(malformed)", err, storage.ErrNotFound)
}

func testRefreshGrantUnchecked(t *testing.T, s storage.Storage) {
	gs := grantStore(t, s)
	for _, tc := range []struct {
		name   string
		change func(f *storage.RefreshFamily, r *storage.Rotation)
	}{
		{"connector data", func(f *storage.RefreshFamily, r *storage.Rotation) {}},
		{"other DPoP key", func(f *storage.RefreshFamily, r *storage.Rotation) {
			f.Grant.ConnectorData, f.Grant.DPoPJKT = nil, "key-1"
			r.DPoPJKT = "key-2"
		}},
		{"no DPoP proof", func(f *storage.RefreshFamily, r *storage.Rotation) {
			f.Grant.ConnectorData, f.Grant.DPoPJKT = nil, "key-1"
			r.DPoPJKT = ""
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := family(t, "sub-"+random(t))
			var r storage.Rotation
			tc.change(&f, &r)
			tok := createFamily(t, s, f)
			rr := rotation(t, f, tok)
			if tc.name != "connector data" {
				rr.DPoPJKT = r.DPoPJKT
			}
			_, _, err := gs.RefreshGrant(ctx(t), rr)
			wantErr(t, "RefreshGrant", err, storage.ErrUnchecked)
			if _, err := s.GetRefresh(ctx(t), tok); err != nil {
				t.Fatalf("GetRefresh after ErrUnchecked = %v, want the token still current", err)
			}
		})
	}
	t.Run("DPoP bound, same key", func(t *testing.T) {
		f := family(t, "sub-"+random(t))
		f.Grant.ConnectorData, f.Grant.DPoPJKT = nil, "key-1"
		tok := createFamily(t, s, f)
		_, _, err := gs.RefreshGrant(ctx(t), rotation(t, f, tok))
		wantErr(t, "RefreshGrant", err, nil)
	})
	t.Run("unbound, proof of a key", func(t *testing.T) {
		f := family(t, "sub-"+random(t))
		f.Grant.ConnectorData = nil
		tok := createFamily(t, s, f)
		r := rotation(t, f, tok)
		r.DPoPJKT = "key-1"
		_, _, err := gs.RefreshGrant(ctx(t), r)
		wantErr(t, "RefreshGrant", err, nil)
	})
}

func testRefreshGrantRetry(t *testing.T, s storage.Storage) {
	gs := grantStore(t, s)
	f := family(t, "sub-"+random(t))
	f.Grant.ConnectorData = nil
	tok := createFamily(t, s, f)
	r := rotation(t, f, tok)
	r.Retry = storage.Retry{Window: time.Minute, SealedNext: []byte("sealed:" + r.Next)}
	_, _, err := gs.RefreshGrant(ctx(t), r)
	wantErr(t, "RefreshGrant", err, nil)
	for i := range 2 {
		again := rotation(t, f, tok)
		again.Retry = storage.Retry{Window: time.Minute, SealedNext: []byte("sealed:" + again.Next)}
		got, sealed, err := gs.RefreshGrant(ctx(t), again)
		wantErr(t, "RefreshGrant(retry)", err, storage.ErrRetry)
		if string(sealed) != "sealed:"+r.Next || got.ID != f.ID {
			t.Fatalf("RefreshGrant(retry %d) = family %q, sealed %q; want %q, %q", i, got.ID, sealed, f.ID, "sealed:"+r.Next)
		}
	}
	if _, err := s.GetRefresh(ctx(t), r.Next); err != nil {
		t.Fatalf("GetRefresh(next) after retries = %v, want current", err)
	}
}

func testRefreshGrantConcurrent(t *testing.T, s storage.Storage) {
	gs := grantStore(t, s)
	f := family(t, "sub-"+random(t))
	f.Grant.ConnectorData = nil
	tok := createFamily(t, s, f)
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		r := rotation(t, f, tok)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = gs.RefreshGrant(ctx(t), r)
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		}
	}
	if ok > 1 {
		t.Fatalf("RefreshGrant: %d callers rotated one token, want at most 1 (errors %v)", ok, errs)
	}
}
