package storagetest

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// The conformance tests of storage.SessionStore and storage.Outbox.

// upstreamSession returns a session of subject signed in through connector
// as the upstream account sub in the upstream session sid, authenticated
// age ago.
func upstreamSession(t testing.TB, subject, connector, sub, sid string, age time.Duration) storage.Session {
	se := session(t, subject)
	se.ConnectorID = connector
	se.Grant.ConnectorID = connector
	se.Grant.UpstreamSubject = sub
	se.Grant.SessionID = se.PublicID
	se.UpstreamSID = sid
	se.AuthTime = time.Now().Add(-age).Round(0)
	se.Grant.AuthTime = se.AuthTime
	se.Created = time.Now().Round(0)
	return se
}

// familyOf returns a new family of subject issued from the session whose
// public id is sid.
func familyOfSession(t testing.TB, subject, sid string) storage.RefreshFamily {
	f := family(t, subject)
	f.Grant.SessionID = sid
	return f
}

// createFamily stores f and returns its first token.
func createFamily(t *testing.T, s storage.Storage, f storage.RefreshFamily) string {
	t.Helper()
	tok := token(t, f.ID)
	wantErr(t, "CreateRefresh "+f.ID, s.CreateRefresh(ctx(t), f, tok), nil)
	return tok
}

// wantFamilyWorks rotates the family's token and returns the new one.
func wantFamilyWorks(t *testing.T, s storage.Storage, what, tok string) string {
	t.Helper()
	id, _, _ := cutToken(tok)
	next := token(t, id)
	_, _, err := s.RotateRefresh(ctx(t), tok, next, time.Now(), time.Hour, storage.Retry{})
	wantErr(t, "RotateRefresh of "+what, err, nil)
	return next
}

// wantFamilyRevoked checks that the family of tok is revoked with a
// tombstone: its token is refused and the family cannot be created again.
func wantFamilyRevoked(t *testing.T, s storage.Storage, what string, f storage.RefreshFamily, tok string) {
	t.Helper()
	c := ctx(t)
	_, _, err := s.RotateRefresh(c, tok, token(t, f.ID), time.Now(), time.Hour, storage.Retry{})
	wantErr(t, "RotateRefresh of "+what, err, storage.ErrNotFound)
	_, err = s.GetRefresh(c, tok)
	wantErr(t, "GetRefresh of "+what, err, storage.ErrNotFound)
	wantErr(t, "CreateRefresh again of "+what, s.CreateRefresh(c, f, token(t, f.ID)), storage.ErrNotFound)
}

func cutToken(tok string) (string, string, bool) {
	for i := 0; i < len(tok); i++ {
		if tok[i] == '.' {
			return tok[:i], tok[i+1:], true
		}
	}
	return "", "", false
}

// publicIDs returns the sessions' public ids, failing t if one has its ID
// (the cookie secret) set.
func publicIDs(t *testing.T, what string, ss []storage.Session) []string {
	t.Helper()
	out := make([]string, len(ss))
	for i, se := range ss {
		if se.ID != "" {
			t.Fatalf("%s: session %s has ID %q, want it empty", what, se.PublicID, se.ID)
		}
		out[i] = se.PublicID
	}
	return out
}

// wantSessions checks that got are the sessions want, in that order, each
// as stored but for its ID.
func wantSessions(t *testing.T, what string, got []storage.Session, want ...storage.Session) {
	t.Helper()
	ids := publicIDs(t, what, got)
	var wantIDs []string
	for _, se := range want {
		wantIDs = append(wantIDs, se.PublicID)
	}
	if diff := cmp.Diff(wantIDs, ids, cmpOpts...); diff != "" {
		t.Fatalf("%s: public ids mismatch (-want +got):\n%s", what, diff)
	}
	for i := range want {
		w := want[i]
		w.ID = ""
		if diff := cmp.Diff(w, got[i], cmpOpts...); diff != "" {
			t.Fatalf("%s: session %s mismatch (-want +got):\n%s", what, w.PublicID, diff)
		}
	}
}

// wantSessionSet checks that got are the sessions want in any order.
func wantSessionSet(t *testing.T, what string, got []storage.Session, want ...storage.Session) {
	t.Helper()
	ids := publicIDs(t, what, got)
	var wantIDs []string
	for _, se := range want {
		wantIDs = append(wantIDs, se.PublicID)
	}
	sort.Strings(ids)
	sort.Strings(wantIDs)
	if diff := cmp.Diff(wantIDs, ids, cmpOpts...); diff != "" {
		t.Fatalf("%s: public ids mismatch (-want +got):\n%s", what, diff)
	}
}

func testTouchSession(t *testing.T, s storage.Storage) {
	c := ctx(t)
	want := upstreamSession(t, "sub-"+random(t), "google", "u1", "x1", time.Minute)
	wantErr(t, "CreateSession", s.CreateSession(c, want), nil)

	t1 := time.Now().Add(time.Second).Round(0)
	wantErr(t, "TouchSession app1", s.TouchSession(c, want.ID, "app1", t1), nil)
	got, err := s.GetSession(c, want.ID)
	wantErr(t, "GetSession", err, nil)
	want.Clients, want.LastUsed = []string{"app1"}, t1
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Fatalf("session after one touch mismatch (-want +got):\n%s", diff)
	}

	t2 := t1.Add(time.Minute + 123*time.Nanosecond)
	wantErr(t, "TouchSession app1 again", s.TouchSession(c, want.ID, "app1", t2), nil)
	got, _ = s.GetSession(c, want.ID)
	want.LastUsed = t2
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Fatalf("session after touching the same client twice (-want +got):\n%s", diff)
	}

	t3 := t2.Add(time.Minute)
	wantErr(t, "TouchSession app2", s.TouchSession(c, want.ID, "app2", t3), nil)
	wantErr(t, "TouchSession app1 a third time", s.TouchSession(c, want.ID, "app1", t3), nil)
	got, _ = s.GetSession(c, want.ID)
	want.LastUsed = t3
	want.Clients = []string{"app1", "app2"}
	sort.Strings(got.Clients)
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Fatalf("session after touching two clients (-want +got):\n%s", diff)
	}
	// The touched session is what ListSessions returns too.
	list, err := s.ListSessions(c, want.Subject)
	wantErr(t, "ListSessions", err, nil)
	if len(list) == 1 {
		sort.Strings(list[0].Clients)
	}
	wantSessions(t, "ListSessions after touches", list, want)

	// Not by the hash, nor the public id; not an unknown one.
	wantErr(t, "TouchSession with the public id", s.TouchSession(c, want.PublicID, "app3", t3), storage.ErrNotFound)
	wantErr(t, "TouchSession with the id's hash", s.TouchSession(c, storage.Hash(want.ID), "app3", t3), storage.ErrNotFound)
	wantErr(t, "TouchSession of an unknown session", s.TouchSession(c, random(t), "app3", t3), storage.ErrNotFound)

	// A deleted session is not found, and touching it does not bring it back.
	wantErr(t, "DeleteSession", s.DeleteSession(c, want.ID), nil)
	wantErr(t, "TouchSession after delete", s.TouchSession(c, want.ID, "app3", t3), storage.ErrNotFound)
	_, err = s.GetSession(c, want.ID)
	wantErr(t, "GetSession after delete and touch", err, storage.ErrNotFound)
	if list, err := s.ListSessions(c, want.Subject); err != nil || len(list) != 0 {
		t.Fatalf("ListSessions after delete and touch = %v, %v; want none", publicIDs(t, "ListSessions", list), err)
	}
}

func testTouchSessionConcurrent(t *testing.T, s storage.Storage) {
	c := ctx(t)
	se := upstreamSession(t, "sub-"+random(t), "google", "u1", "", time.Minute)
	wantErr(t, "CreateSession", s.CreateSession(c, se), nil)
	const n = 8
	var all []string
	for round := range 3 {
		clients := make([]string, n)
		for i := range clients {
			clients[i] = fmt.Sprintf("app-%d-%d", round, i)
		}
		all = append(all, clients...)
		now := time.Now().Round(0)
		for i, err := range concurrently(n, func(i int) error { return s.TouchSession(c, se.ID, clients[i], now) }) {
			wantErr(t, fmt.Sprintf("TouchSession %s", clients[i]), err, nil)
		}
		got, err := s.GetSession(c, se.ID)
		wantErr(t, "GetSession", err, nil)
		sort.Strings(got.Clients)
		want := slices.Clone(all)
		sort.Strings(want)
		if diff := cmp.Diff(want, got.Clients, cmpOpts...); diff != "" {
			t.Fatalf("round %d: clients after concurrent touches (-want +got):\n%s", round, diff)
		}
		if !got.LastUsed.Equal(now) {
			t.Fatalf("round %d: LastUsed = %v, want %v", round, got.LastUsed, now)
		}
	}
}

// testTouchEndConcurrent: a touch racing the session's end never brings
// the session back.
func testTouchEndConcurrent(t *testing.T, s storage.Storage) {
	c := ctx(t)
	subject := "sub-" + random(t)
	for round := range 10 {
		se := upstreamSession(t, subject, "google", "u1", "x1", time.Minute)
		wantErr(t, "CreateSession", s.CreateSession(c, se), nil)
		var ended []storage.Session
		errs := concurrently(4, func(i int) error {
			if i == 0 {
				var err error
				ended, _, err = s.EndSessions(c, subject, se.PublicID, time.Now().Add(time.Hour))
				return err
			}
			err := s.TouchSession(c, se.ID, fmt.Sprintf("app%d", i), time.Now())
			if errors.Is(err, storage.ErrNotFound) {
				return nil
			}
			return err
		})
		for i, err := range errs {
			wantErr(t, fmt.Sprintf("round %d: call %d", round, i), err, nil)
		}
		wantSessionSet(t, fmt.Sprintf("round %d: EndSessions", round), ended, se)
		_, err := s.GetSession(c, se.ID)
		wantErr(t, fmt.Sprintf("round %d: GetSession after the end", round), err, storage.ErrNotFound)
		wantErr(t, fmt.Sprintf("round %d: TouchSession after the end", round), s.TouchSession(c, se.ID, "late", time.Now()), storage.ErrNotFound)
	}
	if list, err := s.ListSessions(c, subject); err != nil || len(list) != 0 {
		t.Fatalf("ListSessions after every session ended = %v, %v; want none", publicIDs(t, "ListSessions", list), err)
	}
}

func testListSessions(t *testing.T, s storage.Storage) {
	c := ctx(t)
	alice, bob := "alice-"+random(t), "bob-"+random(t)
	middle := upstreamSession(t, alice, "google", "u1", "x2", 2*time.Hour)
	newest := upstreamSession(t, alice, "okta", "u9", "", time.Hour)
	oldest := upstreamSession(t, alice, "google", "u1", "x1", 3*time.Hour)
	deleted := upstreamSession(t, alice, "google", "u1", "x3", 4*time.Hour)
	other := upstreamSession(t, bob, "google", "u1", "x1", 5*time.Hour)
	for _, se := range []storage.Session{middle, newest, oldest, deleted, other} {
		wantErr(t, "CreateSession", s.CreateSession(c, se), nil)
	}
	wantErr(t, "DeleteSession", s.DeleteSession(c, deleted.ID), nil)

	got, err := s.ListSessions(c, alice)
	wantErr(t, "ListSessions", err, nil)
	wantSessions(t, "ListSessions(alice)", got, oldest, middle, newest)
	got, err = s.ListSessions(c, bob)
	wantErr(t, "ListSessions", err, nil)
	wantSessions(t, "ListSessions(bob)", got, other)
	got, err = s.ListSessions(c, "nobody-"+random(t))
	wantErr(t, "ListSessions of a subject without sessions", err, nil)
	wantSessions(t, "ListSessions(nobody)", got)
	// A prefix of a subject is another subject.
	got, err = s.ListSessions(c, alice[:len(alice)-1])
	wantErr(t, "ListSessions of a prefix", err, nil)
	wantSessions(t, "ListSessions(prefix of alice)", got)

	// Results are copies.
	got, _ = s.ListSessions(c, alice)
	got[0].Clients = append(got[0].Clients, "changed")
	got[0].Extra["acr"] = "changed"
	again, _ := s.ListSessions(c, alice)
	wantSessions(t, "ListSessions after changing a result", again, oldest, middle, newest)
}

func testUpstreamSessions(t *testing.T, s storage.Storage) {
	c := ctx(t)
	alice, bob := "alice-"+random(t), "bob-"+random(t)
	// Upstream values unique to this test, so that stores sharing a
	// database cannot meet.
	u1, u2, x1, x2, x3 := "u1-"+random(t), "u2-"+random(t), "x1-"+random(t), "x2-"+random(t), "x3-"+random(t)
	s1 := upstreamSession(t, alice, "google", u1, x1, 6*time.Hour)
	s2 := upstreamSession(t, alice, "google", u1, x2, 5*time.Hour)
	s3 := upstreamSession(t, bob, "google", u2, x1, 4*time.Hour)
	s4 := upstreamSession(t, alice, "okta", u1, x1, 3*time.Hour)
	s5 := upstreamSession(t, alice, "google", u1, "", 2*time.Hour)
	s6 := upstreamSession(t, bob, "google", "", x3, time.Hour)
	// The grant's connector is not what counts: the session's is.
	s7 := upstreamSession(t, bob, "saml", u1, x1, time.Minute)
	s7.Grant.ConnectorID = "google"
	for _, se := range []storage.Session{s1, s2, s3, s4, s5, s6, s7} {
		wantErr(t, "CreateSession", s.CreateSession(c, se), nil)
	}
	for _, tc := range []struct {
		connector, sub, sid string
		want                []storage.Session
	}{
		{"google", u1, "", []storage.Session{s1, s2, s5}},
		{"google", "", x1, []storage.Session{s1, s3}},
		{"google", u1, x1, []storage.Session{s1}},
		{"google", u1, x2, []storage.Session{s2}},
		{"google", u2, x2, nil},
		{"google", u2, "", []storage.Session{s3}},
		{"google", "", x3, []storage.Session{s6}},
		{"google", "", "", nil},
		{"okta", u1, "", []storage.Session{s4}},
		{"okta", "", x1, []storage.Session{s4}},
		{"okta", "", x2, nil},
		{"okta", u2, "", nil},
		{"saml", u1, x1, []storage.Session{s7}},
		{"other", u1, "", nil},
		{"other", "", x1, nil},
		{"", u1, "", nil},
		{"", "", "", nil},
		// The connector and the value are not one string.
		{"googl", "e" + u1, "", nil},
		{"google" + u1[:1], u1[1:], "", nil},
	} {
		what := fmt.Sprintf("UpstreamSessions(%q, %q, %q)", tc.connector, tc.sub, tc.sid)
		got, err := s.UpstreamSessions(c, tc.connector, tc.sub, tc.sid)
		wantErr(t, what, err, nil)
		wantSessionSet(t, what, got, tc.want...)
		for _, g := range got {
			for _, w := range tc.want {
				if g.PublicID == w.PublicID {
					w.ID = ""
					if diff := cmp.Diff(w, g, cmpOpts...); diff != "" {
						t.Fatalf("%s: session mismatch (-want +got):\n%s", what, diff)
					}
				}
			}
		}
	}

	// Deleted and ended sessions are not found any more; the others are.
	wantErr(t, "DeleteSession s1", s.DeleteSession(c, s1.ID), nil)
	got, err := s.UpstreamSessions(c, "google", u1, "")
	wantErr(t, "UpstreamSessions after delete", err, nil)
	wantSessionSet(t, "UpstreamSessions by account after deleting s1", got, s2, s5)
	got, err = s.UpstreamSessions(c, "google", "", x1)
	wantErr(t, "UpstreamSessions after delete", err, nil)
	wantSessionSet(t, "UpstreamSessions by session after deleting s1", got, s3)
	if _, _, err := s.EndSessions(c, alice, s2.PublicID, time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("EndSessions: %v", err)
	}
	got, err = s.UpstreamSessions(c, "google", u1, "")
	wantErr(t, "UpstreamSessions after end", err, nil)
	wantSessionSet(t, "UpstreamSessions by account after ending s2", got, s5)
	got, err = s.UpstreamSessions(c, "google", "", x2)
	wantErr(t, "UpstreamSessions after end", err, nil)
	wantSessionSet(t, "UpstreamSessions by session after ending s2", got)
	// A new session of the same upstream session is found again.
	s8 := upstreamSession(t, alice, "google", u1, x2, 0)
	wantErr(t, "CreateSession s8", s.CreateSession(c, s8), nil)
	got, err = s.UpstreamSessions(c, "google", u1, x2)
	wantErr(t, "UpstreamSessions of a new session", err, nil)
	wantSessionSet(t, "UpstreamSessions after a new sign-in", got, s8)
	// Touching keeps a session findable.
	wantErr(t, "TouchSession s8", s.TouchSession(c, s8.ID, "app", time.Now()), nil)
	got, err = s.UpstreamSessions(c, "google", "", x2)
	wantErr(t, "UpstreamSessions of a touched session", err, nil)
	wantSessionSet(t, "UpstreamSessions after a touch", got, s8)
	if len(got) == 1 && !slices.Equal(got[0].Clients, []string{"app"}) {
		t.Fatalf("UpstreamSessions of a touched session: Clients = %q, want [app]", got[0].Clients)
	}
}

func testEndSessionsOne(t *testing.T, s storage.Storage) {
	c := ctx(t)
	alice, bob := "alice-"+random(t), "bob-"+random(t)
	a1 := upstreamSession(t, alice, "google", "u1", "x1", 2*time.Hour)
	a2 := upstreamSession(t, alice, "google", "u1", "x2", time.Hour)
	// Bob's session has the same public id as a1: only alice's is ended.
	b1 := upstreamSession(t, bob, "google", "u2", "x1", time.Hour)
	b1.PublicID = a1.PublicID
	b1.Grant.SessionID = a1.PublicID
	for _, se := range []storage.Session{a1, a2, b1} {
		wantErr(t, "CreateSession", s.CreateSession(c, se), nil)
	}
	fa1, fa1b := familyOfSession(t, alice, a1.PublicID), familyOfSession(t, alice, a1.PublicID)
	fa2, fa0 := familyOfSession(t, alice, a2.PublicID), familyOfSession(t, alice, "")
	fb1 := familyOfSession(t, bob, a1.PublicID)
	ta1, ta1b, ta2, ta0, tb1 := createFamily(t, s, fa1), createFamily(t, s, fa1b), createFamily(t, s, fa2), createFamily(t, s, fa0), createFamily(t, s, fb1)
	ta1b = wantFamilyWorks(t, s, "a rotated family of a1", ta1b)

	until := time.Now().Add(time.Hour)
	ended, n, err := s.EndSessions(c, alice, a1.PublicID, until)
	wantErr(t, "EndSessions(alice, a1)", err, nil)
	wantSessions(t, "EndSessions(alice, a1)", ended, a1)
	if n != 2 {
		t.Fatalf("EndSessions(alice, a1) revoked %d families, want 2", n)
	}
	_, err = s.GetSession(c, a1.ID)
	wantErr(t, "GetSession of the ended session", err, storage.ErrNotFound)
	for _, se := range []storage.Session{a2, b1} {
		_, err := s.GetSession(c, se.ID)
		wantErr(t, "GetSession of another session", err, nil)
	}
	wantFamilyRevoked(t, s, "a family of a1", fa1, ta1)
	wantFamilyRevoked(t, s, "a rotated family of a1", fa1b, ta1b)
	ta2 = wantFamilyWorks(t, s, "a family of a2", ta2)
	ta0 = wantFamilyWorks(t, s, "a family of no session", ta0)
	tb1 = wantFamilyWorks(t, s, "bob's family with the same sid", tb1)
	list, err := s.ListSessions(c, alice)
	wantErr(t, "ListSessions", err, nil)
	wantSessions(t, "ListSessions(alice) after ending a1", list, a2)

	// Again, and unknown sessions: nothing, and no error.
	for _, sid := range []string{a1.PublicID, random(t), a2.PublicID[:len(a2.PublicID)-1]} {
		ended, n, err = s.EndSessions(c, alice, sid, until)
		wantErr(t, "EndSessions of a session that is not there", err, nil)
		if len(ended) != 0 || n != 0 {
			t.Fatalf("EndSessions(alice, %s) = %v, %d; want none", sid, publicIDs(t, "EndSessions", ended), n)
		}
	}
	// Bob's sid ended through another subject: nothing.
	ended, n, err = s.EndSessions(c, "carol-"+random(t), b1.PublicID, until)
	wantErr(t, "EndSessions of another subject's session", err, nil)
	if len(ended) != 0 || n != 0 {
		t.Fatalf("EndSessions(carol, b1) = %v, %d; want none", publicIDs(t, "EndSessions", ended), n)
	}
	_, err = s.GetSession(c, b1.ID)
	wantErr(t, "GetSession(b1)", err, nil)
	// What remains still works.
	wantFamilyWorks(t, s, "a family of a2", ta2)
	wantFamilyWorks(t, s, "a family of no session", ta0)
	wantFamilyWorks(t, s, "bob's family", tb1)
}

func testEndSessionsAll(t *testing.T, s storage.Storage) {
	c := ctx(t)
	alice, bob := "alice-"+random(t), "bob-"+random(t)
	a1 := upstreamSession(t, alice, "google", "u1", "x1", time.Hour)
	a2 := upstreamSession(t, alice, "okta", "u1", "", 2*time.Hour)
	b1 := upstreamSession(t, bob, "google", "u2", "x1", time.Hour)
	for _, se := range []storage.Session{a1, a2, b1} {
		wantErr(t, "CreateSession", s.CreateSession(c, se), nil)
	}
	wantErr(t, "TouchSession", s.TouchSession(c, a1.ID, "app", a1.AuthTime.Add(time.Second)), nil)
	a1.Clients, a1.LastUsed = []string{"app"}, a1.AuthTime.Add(time.Second)
	fa1, fa2 := familyOfSession(t, alice, a1.PublicID), familyOfSession(t, alice, a2.PublicID)
	fa0, fgone := familyOfSession(t, alice, "other-sid"), familyOfSession(t, alice, a1.PublicID)
	fb1 := familyOfSession(t, bob, b1.PublicID)
	ta1, ta2, ta0, tgone, tb1 := createFamily(t, s, fa1), createFamily(t, s, fa2), createFamily(t, s, fa0), createFamily(t, s, fgone), createFamily(t, s, fb1)
	ta1 = wantFamilyWorks(t, s, "a1's family", ta1)
	// A family revoked before is not counted again.
	wantErr(t, "RevokeFamily", s.RevokeFamily(c, fgone.ID, time.Now().Add(time.Hour)), nil)

	ended, n, err := s.EndSessions(c, alice, "", time.Now().Add(time.Hour))
	wantErr(t, "EndSessions(alice, all)", err, nil)
	wantSessions(t, "EndSessions(alice, all)", ended, a2, a1)
	if n != 3 {
		t.Fatalf("EndSessions(alice, all) revoked %d families, want 3", n)
	}
	for _, se := range []storage.Session{a1, a2} {
		_, err := s.GetSession(c, se.ID)
		wantErr(t, "GetSession of an ended session", err, storage.ErrNotFound)
		wantErr(t, "TouchSession of an ended session", s.TouchSession(c, se.ID, "app", time.Now()), storage.ErrNotFound)
	}
	wantFamilyRevoked(t, s, "a1's family", fa1, ta1)
	wantFamilyRevoked(t, s, "a2's family", fa2, ta2)
	wantFamilyRevoked(t, s, "a family of another sid", fa0, ta0)
	wantFamilyRevoked(t, s, "a family revoked before", fgone, tgone)
	list, err := s.ListSessions(c, alice)
	wantErr(t, "ListSessions", err, nil)
	wantSessions(t, "ListSessions(alice) after ending all", list)
	got, err := s.UpstreamSessions(c, "okta", "u1", "")
	wantErr(t, "UpstreamSessions", err, nil)
	wantSessionSet(t, "UpstreamSessions(okta, u1) after ending all", got)

	// Bob is untouched.
	_, err = s.GetSession(c, b1.ID)
	wantErr(t, "GetSession(b1)", err, nil)
	wantFamilyWorks(t, s, "bob's family", tb1)
	list, _ = s.ListSessions(c, bob)
	wantSessions(t, "ListSessions(bob)", list, b1)

	// Again: nothing.
	ended, n, err = s.EndSessions(c, alice, "", time.Now().Add(time.Hour))
	wantErr(t, "EndSessions(alice, all) again", err, nil)
	if len(ended) != 0 || n != 0 {
		t.Fatalf("EndSessions(alice, all) again = %v, %d; want none", publicIDs(t, "EndSessions", ended), n)
	}
	// Alice signs in again: the new session and family are not revoked.
	a3 := upstreamSession(t, alice, "google", "u1", "x9", 0)
	wantErr(t, "CreateSession a3", s.CreateSession(c, a3), nil)
	ta3 := createFamily(t, s, familyOfSession(t, alice, a3.PublicID))
	wantFamilyWorks(t, s, "a new family", ta3)
	list, _ = s.ListSessions(c, alice)
	wantSessions(t, "ListSessions(alice) after signing in again", list, a3)
}

// delivery returns a delivery due at due.
func delivery(t testing.TB, due time.Time) storage.Delivery {
	return storage.Delivery{
		ID:       "d-" + random(t),
		Kind:     storage.DeliveryBackchannelLogout,
		ClientID: "app",
		Subject:  "sub-" + random(t),
		SID:      random(t),
		Created:  due.Add(-time.Minute),
		Due:      due,
	}
}

// claimed is d as ClaimDeliveries returns it at now with lease.
func claimed(d storage.Delivery, now time.Time, lease time.Duration) storage.Delivery {
	d.Due = now.Add(lease)
	d.Attempts++
	return d
}

func wantDeliveries(t *testing.T, what string, got []storage.Delivery, want ...storage.Delivery) {
	t.Helper()
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Fatalf("%s mismatch (-want +got):\n%s", what, diff)
	}
}

func wantDeliverySet(t *testing.T, what string, got []storage.Delivery, want ...storage.Delivery) {
	t.Helper()
	byID := cmpopts.SortSlices(func(a, b storage.Delivery) bool { return a.ID < b.ID })
	if diff := cmp.Diff(want, got, append(cmpOpts, byID)...); diff != "" {
		t.Fatalf("%s mismatch (-want +got):\n%s", what, diff)
	}
}

func wantPending(t *testing.T, s storage.Storage, want int) {
	t.Helper()
	n, err := s.PendingDeliveries(ctx(t))
	wantErr(t, "PendingDeliveries", err, nil)
	if n != want {
		t.Fatalf("PendingDeliveries = %d, want %d", n, want)
	}
}

func testOutbox(t *testing.T, s storage.Storage) {
	c := ctx(t)
	t0 := time.Now().Round(0)
	const lease = time.Minute
	wantPending(t, s, 0)
	got, err := s.ClaimDeliveries(c, t0, lease, 10)
	wantErr(t, "ClaimDeliveries on an empty outbox", err, nil)
	wantDeliveries(t, "ClaimDeliveries on an empty outbox", got)

	d1, d2, d3, d4 := delivery(t, t0.Add(-2*time.Minute)), delivery(t, t0.Add(-time.Minute)), delivery(t, t0.Add(time.Hour)), delivery(t, t0.Add(-3*time.Minute))
	d2.Attempts, d2.LastError = 2, "connection refused"
	for _, d := range []storage.Delivery{d1, d2, d3, d4} {
		wantErr(t, "PutDelivery", s.PutDelivery(c, d), nil)
	}
	wantPending(t, s, 4)

	got, err = s.ClaimDeliveries(c, t0, lease, 0)
	wantErr(t, "ClaimDeliveries with limit 0", err, nil)
	wantDeliveries(t, "ClaimDeliveries with limit 0", got)

	// Earliest due first, up to the limit.
	got, err = s.ClaimDeliveries(c, t0, lease, 2)
	wantErr(t, "ClaimDeliveries", err, nil)
	wantDeliveries(t, "first claim", got, claimed(d4, t0, lease), claimed(d1, t0, lease))
	// The claimed ones are leased; the next due one is left, not one due later.
	got, err = s.ClaimDeliveries(c, t0, lease, 10)
	wantErr(t, "ClaimDeliveries", err, nil)
	wantDeliveries(t, "second claim", got, claimed(d2, t0, lease))
	got, err = s.ClaimDeliveries(c, t0.Add(lease-time.Nanosecond), lease, 10)
	wantErr(t, "ClaimDeliveries", err, nil)
	wantDeliveries(t, "claim within the leases", got)
	wantPending(t, s, 4)

	// Once the lease ends they are claimable again, with one more attempt.
	t1 := t0.Add(lease)
	got, err = s.ClaimDeliveries(c, t1, lease, 10)
	wantErr(t, "ClaimDeliveries", err, nil)
	d4, d1, d2 = claimed(claimed(d4, t0, lease), t1, lease), claimed(claimed(d1, t0, lease), t1, lease), claimed(claimed(d2, t0, lease), t1, lease)
	wantDeliverySet(t, "claim after the leases", got, d4, d1, d2)
	if d2.Attempts != 4 {
		t.Fatalf("test bug: d2.Attempts = %d", d2.Attempts)
	}

	// Delivered: deleted; deleting again or an unknown one is no error.
	wantErr(t, "DeleteDelivery", s.DeleteDelivery(c, d4.ID), nil)
	wantErr(t, "DeleteDelivery again", s.DeleteDelivery(c, d4.ID), nil)
	wantErr(t, "DeleteDelivery of an unknown one", s.DeleteDelivery(c, "d-"+random(t)), nil)
	wantPending(t, s, 3)

	// Failed: put back with a later due (replacing it, by id).
	d1.Due, d1.LastError = t1.Add(10*time.Second), "503 Service Unavailable"
	wantErr(t, "PutDelivery again", s.PutDelivery(c, d1), nil)
	wantPending(t, s, 3)
	got, err = s.ClaimDeliveries(c, t1.Add(10*time.Second-time.Nanosecond), lease, 10)
	wantErr(t, "ClaimDeliveries", err, nil)
	wantDeliveries(t, "claim a nanosecond before the new due", got)
	t2 := t1.Add(10 * time.Second)
	got, err = s.ClaimDeliveries(c, t2, lease, 10)
	wantErr(t, "ClaimDeliveries", err, nil)
	d1 = claimed(d1, t2, lease)
	wantDeliveries(t, "claim at the new due", got, d1)
	if d1.Attempts != 3 || d1.LastError == "" {
		t.Fatalf("test bug: d1 = %+v", d1)
	}

	// Put replaces a leased delivery too: an earlier due makes it claimable.
	d2.Due, d2.Attempts = t0.Add(-time.Hour), 0
	wantErr(t, "PutDelivery of a leased one", s.PutDelivery(c, d2), nil)
	got, err = s.ClaimDeliveries(c, t2, lease, 10)
	wantErr(t, "ClaimDeliveries", err, nil)
	d2 = claimed(d2, t2, lease)
	wantDeliveries(t, "claim of a replaced delivery", got, d2)
	wantPending(t, s, 3)

	// Much later, everything, earliest due first.
	t3 := t0.Add(2 * time.Hour)
	got, err = s.ClaimDeliveries(c, t3, lease, 10)
	wantErr(t, "ClaimDeliveries", err, nil)
	wantDeliverySet(t, "claim much later", got, claimed(d1, t3, lease), claimed(d2, t3, lease), claimed(d3, t3, lease))
	if len(got) == 3 && got[2].ID != d3.ID {
		t.Fatalf("claim much later: last = %s, want the one due latest (%s)", got[2].ID, d3.ID)
	}
	for _, d := range []storage.Delivery{d1, d2, d3} {
		wantErr(t, "DeleteDelivery", s.DeleteDelivery(c, d.ID), nil)
	}
	wantPending(t, s, 0)
	got, err = s.ClaimDeliveries(c, t3.Add(24*time.Hour), lease, 10)
	wantErr(t, "ClaimDeliveries", err, nil)
	wantDeliveries(t, "claim after deleting everything", got)
}

// testOutboxPrecision: due times are kept to the nanosecond.
func testOutboxPrecision(t *testing.T, s storage.Storage) {
	c := ctx(t)
	base := time.Now().Truncate(time.Millisecond).Add(500 * time.Microsecond)
	var ds []storage.Delivery
	for i := range 5 {
		d := delivery(t, base.Add(time.Duration(4-i)*time.Nanosecond))
		ds = append(ds, d)
		wantErr(t, "PutDelivery", s.PutDelivery(c, d), nil)
	}
	// Due at base+4ns, +3, +2, +1, +0: at base+1ns two are due, earliest first.
	now := base.Add(time.Nanosecond)
	got, err := s.ClaimDeliveries(c, now, time.Minute, 10)
	wantErr(t, "ClaimDeliveries", err, nil)
	wantDeliveries(t, "claim at base+1ns", got, claimed(ds[4], now, time.Minute), claimed(ds[3], now, time.Minute))
	now = base.Add(3 * time.Nanosecond)
	got, err = s.ClaimDeliveries(c, now, time.Minute, 1)
	wantErr(t, "ClaimDeliveries", err, nil)
	wantDeliveries(t, "claim one at base+3ns", got, claimed(ds[2], now, time.Minute))
	got, err = s.ClaimDeliveries(c, now, time.Minute, 10)
	wantErr(t, "ClaimDeliveries", err, nil)
	wantDeliveries(t, "claim the rest at base+3ns", got, claimed(ds[1], now, time.Minute))
}

func testOutboxConcurrent(t *testing.T, s storage.Storage) {
	c := ctx(t)
	now := time.Now().Round(0)
	const n = 40
	want := map[string]bool{}
	for i := range n {
		d := delivery(t, now.Add(-time.Duration(i)*time.Second))
		want[d.ID] = true
		wantErr(t, "PutDelivery", s.PutDelivery(c, d), nil)
	}
	const claimers = 4
	got := make([][]storage.Delivery, claimers)
	errs := concurrently(claimers, func(i int) error {
		// More rounds than a claimer alone would need: a store that hands
		// out leased deliveries again must not keep this loop going.
		for range n + 1 {
			ds, err := s.ClaimDeliveries(c, now, time.Hour, 3)
			if err != nil {
				return err
			}
			if len(ds) == 0 {
				return nil
			}
			got[i] = append(got[i], ds...)
		}
		return fmt.Errorf("claimer %d still claiming after %d rounds", i, n+1)
	})
	seen := map[string]int{}
	for i, err := range errs {
		wantErr(t, fmt.Sprintf("claimer %d", i), err, nil)
		for _, d := range got[i] {
			if seen[d.ID]++; seen[d.ID] > 1 {
				t.Fatalf("delivery %s claimed twice within its lease", d.ID)
			}
			if d.Attempts != 1 || !d.Due.Equal(now.Add(time.Hour)) {
				t.Fatalf("claimed delivery %s: attempts %d, due %v; want 1 and %v", d.ID, d.Attempts, d.Due, now.Add(time.Hour))
			}
		}
	}
	if len(seen) != n {
		t.Fatalf("claimed %d distinct deliveries, want %d", len(seen), n)
	}
	for id := range want {
		if seen[id] != 1 {
			t.Fatalf("delivery %s claimed %d times, want once", id, seen[id])
		}
	}
	wantPending(t, s, n)
}

// testExpireLogout: expired sessions are not touched, listed, found or
// ended.
func testExpireLogout(t *testing.T, s storage.Storage) func(t *testing.T) {
	c := ctx(t)
	subject, u, x := "sub-"+random(t), "u-"+random(t), "x-"+random(t)
	se := upstreamSession(t, subject, "google", u, x, time.Minute)
	se.Expiry = time.Now().Add(ttl)
	wantErr(t, "CreateSession", s.CreateSession(c, se), nil)
	wantErr(t, "TouchSession before expiry", s.TouchSession(c, se.ID, "app", time.Now()), nil)
	list, err := s.ListSessions(c, subject)
	wantErr(t, "ListSessions before expiry", err, nil)
	if len(list) != 1 {
		t.Fatalf("ListSessions before expiry = %d sessions, want 1", len(list))
	}
	return func(t *testing.T) {
		c := ctx(t)
		wantErr(t, "TouchSession after expiry", s.TouchSession(c, se.ID, "app", time.Now()), storage.ErrNotFound)
		list, err := s.ListSessions(c, subject)
		wantErr(t, "ListSessions after expiry", err, nil)
		wantSessions(t, "ListSessions after expiry", list)
		for _, q := range [][2]string{{u, ""}, {"", x}, {u, x}} {
			got, err := s.UpstreamSessions(c, "google", q[0], q[1])
			wantErr(t, "UpstreamSessions after expiry", err, nil)
			wantSessions(t, "UpstreamSessions after expiry", got)
		}
		for _, sid := range []string{se.PublicID, ""} {
			ended, n, err := s.EndSessions(c, subject, sid, time.Now().Add(time.Hour))
			wantErr(t, "EndSessions after expiry", err, nil)
			if len(ended) != 0 || n != 0 {
				t.Fatalf("EndSessions(%q) after expiry = %v, %d; want none", sid, publicIDs(t, "EndSessions", ended), n)
			}
		}
	}
}

// LogoutEpochFixture is what a backend's epoch test keeps to check that
// single logout forgets state from before a loss: a session with its
// upstream account and session, and a refresh family issued from it.
type LogoutEpochFixture struct {
	Session storage.Session
	Family  storage.RefreshFamily
}

// NewLogoutEpochFixture creates the records of a LogoutEpochFixture in s.
func NewLogoutEpochFixture(t *testing.T, s storage.Storage) LogoutEpochFixture {
	t.Helper()
	fx := LogoutEpochFixture{Session: upstreamSession(t, "alice-"+random(t), "google", "u-"+random(t), "x-"+random(t), time.Minute)}
	fx.Session.Created = time.Now()
	wantErr(t, "CreateSession", s.CreateSession(ctx(t), fx.Session), nil)
	fx.Family = familyOfSession(t, fx.Session.Subject, fx.Session.PublicID)
	createFamily(t, s, fx.Family)
	return fx
}

// WantForgotten checks that s no longer finds, touches or ends what fx
// created: the store's epoch began after it.
func (fx LogoutEpochFixture) WantForgotten(t *testing.T, s storage.Storage) {
	t.Helper()
	c := ctx(t)
	se := fx.Session
	if err := s.TouchSession(c, se.ID, "app", time.Now()); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("TouchSession of a session from before the loss = %v, want ErrNotFound", err)
	}
	if list, err := s.ListSessions(c, se.Subject); err != nil || len(list) != 0 {
		t.Errorf("ListSessions after the loss = %d sessions, %v; want none", len(list), err)
	}
	for _, q := range [][2]string{{se.Grant.UpstreamSubject, ""}, {"", se.UpstreamSID}, {se.Grant.UpstreamSubject, se.UpstreamSID}} {
		if got, err := s.UpstreamSessions(c, se.ConnectorID, q[0], q[1]); err != nil || len(got) != 0 {
			t.Errorf("UpstreamSessions(%q, %q) after the loss = %d sessions, %v; want none", q[0], q[1], len(got), err)
		}
	}
	for _, sid := range []string{se.PublicID, ""} {
		if ended, n, err := s.EndSessions(c, se.Subject, sid, time.Now().Add(time.Hour)); err != nil || len(ended) != 0 || n != 0 {
			t.Errorf("EndSessions(%q) after the loss = %d sessions, %d families, %v; want none", sid, len(ended), n, err)
		}
	}
}
