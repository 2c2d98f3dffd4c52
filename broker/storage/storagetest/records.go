package storagetest

import (
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fedbroker/fedbroker/broker/storage"
)

func authRequest(t testing.TB) storage.AuthRequest {
	return storage.AuthRequest{
		ID:                  random(t),
		ClientID:            "app",
		RedirectURI:         "https://app.example.com/cb",
		Scopes:              []string{"openid", "profile"},
		State:               "st",
		Nonce:               "nn",
		CodeChallenge:       "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		CodeChallengeMethod: "S256",
		Prompt:              "login",
		MaxAge:              -1,
		LoginHint:           "ada@example.com",
		ConnectorID:         "google",
		ConnectorState:      []byte("opaque\x00state"),
		BrowserBinding:      "bb",
		Expiry:              time.Now().Add(10 * time.Minute).Round(0),
	}
}

func testAuthRequest(t *testing.T, s storage.Storage) {
	c := ctx(t)
	r := authRequest(t)
	wantErr(t, "CreateAuthRequest", s.CreateAuthRequest(c, r), nil)
	wantErr(t, "CreateAuthRequest twice", s.CreateAuthRequest(c, r), storage.ErrAlreadyExists)
	got, err := s.GetAuthRequest(c, r.ID)
	wantErr(t, "GetAuthRequest", err, nil)
	if diff := cmp.Diff(r, got, cmpOpts...); diff != "" {
		t.Fatalf("GetAuthRequest() mismatch (-want +got):\n%s", diff)
	}
	// Callers must not be able to change the stored record through a result.
	got.Scopes[0] = "changed"
	got.ConnectorState[0] = 'X'
	again, _ := s.GetAuthRequest(c, r.ID)
	if diff := cmp.Diff(r, again, cmpOpts...); diff != "" {
		t.Fatalf("stored request changed through a returned value (-want +got):\n%s", diff)
	}

	r.ConnectorState = []byte("after callback")
	r.Scopes = append(r.Scopes, "email")
	wantErr(t, "UpdateAuthRequest", s.UpdateAuthRequest(c, r), nil)
	got, err = s.GetAuthRequest(c, r.ID)
	wantErr(t, "GetAuthRequest after update", err, nil)
	if diff := cmp.Diff(r, got, cmpOpts...); diff != "" {
		t.Fatalf("GetAuthRequest() after update mismatch (-want +got):\n%s", diff)
	}
	missing := authRequest(t)
	wantErr(t, "UpdateAuthRequest unknown", s.UpdateAuthRequest(c, missing), storage.ErrNotFound)
	_, err = s.GetAuthRequest(c, missing.ID)
	wantErr(t, "GetAuthRequest after update of unknown", err, storage.ErrNotFound)

	got, err = s.TakeAuthRequest(c, r.ID)
	wantErr(t, "TakeAuthRequest", err, nil)
	if diff := cmp.Diff(r, got, cmpOpts...); diff != "" {
		t.Fatalf("TakeAuthRequest() mismatch (-want +got):\n%s", diff)
	}
	_, err = s.TakeAuthRequest(c, r.ID)
	wantErr(t, "TakeAuthRequest twice", err, storage.ErrNotFound)
	_, err = s.GetAuthRequest(c, r.ID)
	wantErr(t, "GetAuthRequest after take", err, storage.ErrNotFound)
	wantErr(t, "UpdateAuthRequest after take", s.UpdateAuthRequest(c, r), storage.ErrNotFound)

	past := authRequest(t)
	past.Expiry = time.Now().Add(-time.Second)
	if err := s.CreateAuthRequest(c, past); err == nil {
		_, err = s.GetAuthRequest(c, past.ID)
		wantErr(t, "GetAuthRequest of an already expired request", err, storage.ErrNotFound)
	}
}

func testAuthRequestTakeConcurrent(t *testing.T, s storage.Storage) {
	c := ctx(t)
	r := authRequest(t)
	wantErr(t, "CreateAuthRequest", s.CreateAuthRequest(c, r), nil)
	errs := concurrently(20, func(int) error { _, err := s.TakeAuthRequest(c, r.ID); return err })
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, storage.ErrNotFound):
			t.Errorf("concurrent TakeAuthRequest: error = %v, want nil or ErrNotFound", err)
		}
	}
	if ok != 1 {
		t.Fatalf("concurrent TakeAuthRequest succeeded %d times, want 1", ok)
	}
}

func testCode(t *testing.T, s storage.Storage) {
	c := ctx(t)
	want := code(t)
	clear := random(t)
	wantErr(t, "CreateCode", s.CreateCode(c, clear, want), nil)
	wantErr(t, "CreateCode twice", s.CreateCode(c, clear, want), storage.ErrAlreadyExists)

	got, err := s.ConsumeCode(c, clear)
	wantErr(t, "ConsumeCode", err, nil)
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Fatalf("ConsumeCode() mismatch (-want +got):\n%s", diff)
	}
	got.Grant.Scopes[0] = "changed"
	got.Grant.IDTokenClaims["email"] = "mallory@example.com"
	got, err = s.ConsumeCode(c, clear)
	wantErr(t, "ConsumeCode replayed", err, storage.ErrAlreadyUsed)
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Fatalf("ConsumeCode() replayed: record mismatch (-want +got):\n%s", diff)
	}

	_, err = s.ConsumeCode(c, random(t))
	wantErr(t, "ConsumeCode unknown", err, storage.ErrNotFound)
	_, err = s.ConsumeCode(c, "")
	wantErr(t, "ConsumeCode empty", err, storage.ErrNotFound)
	// The hash of a code is not the code.
	_, err = s.ConsumeCode(c, storage.Hash(clear))
	wantErr(t, "ConsumeCode with the code's hash", err, storage.ErrNotFound)

	expired := code(t)
	expired.Expiry = time.Now().Add(-time.Second)
	exp := random(t)
	if err := s.CreateCode(c, exp, expired); err == nil {
		_, err = s.ConsumeCode(c, exp)
		wantErr(t, "ConsumeCode of an expired code", err, storage.ErrNotFound)
	}
}

func testCodeConcurrent(t *testing.T, s storage.Storage) {
	c := ctx(t)
	want := code(t)
	clear := random(t)
	wantErr(t, "CreateCode", s.CreateCode(c, clear, want), nil)
	got := make([]storage.AuthCode, 50)
	errs := concurrently(50, func(i int) error {
		var err error
		got[i], err = s.ConsumeCode(c, clear)
		return err
	})
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, storage.ErrAlreadyUsed):
			t.Errorf("concurrent ConsumeCode: error = %v, want nil or ErrAlreadyUsed", err)
			continue
		}
		if diff := cmp.Diff(want, got[i], cmpOpts...); diff != "" {
			t.Errorf("concurrent ConsumeCode (err %v): record mismatch (-want +got):\n%s", err, diff)
		}
	}
	if ok != 1 {
		t.Fatalf("concurrent ConsumeCode succeeded %d times, want exactly 1", ok)
	}
}

func testSession(t *testing.T, s storage.Storage) {
	c := ctx(t)
	want := session(t, "sub-"+random(t))
	wantErr(t, "CreateSession", s.CreateSession(c, want), nil)
	wantErr(t, "CreateSession twice", s.CreateSession(c, want), storage.ErrAlreadyExists)
	got, err := s.GetSession(c, want.ID)
	wantErr(t, "GetSession", err, nil)
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Fatalf("GetSession() mismatch (-want +got):\n%s", diff)
	}
	_, err = s.GetSession(c, storage.Hash(want.ID))
	wantErr(t, "GetSession with the id's hash", err, storage.ErrNotFound)
	_, err = s.GetSession(c, want.PublicID)
	wantErr(t, "GetSession with the public id", err, storage.ErrNotFound)
	wantErr(t, "DeleteSession", s.DeleteSession(c, want.ID), nil)
	_, err = s.GetSession(c, want.ID)
	wantErr(t, "GetSession after delete", err, storage.ErrNotFound)
	wantErr(t, "DeleteSession twice", s.DeleteSession(c, want.ID), storage.ErrNotFound)
}

func testKeys(t *testing.T, s storage.Storage) {
	c := ctx(t)
	data, v, err := s.GetKeys(c)
	wantErr(t, "GetKeys on empty store", err, storage.ErrNotFound)
	if v != 0 || data != nil {
		t.Fatalf("GetKeys on empty store = %q, %d, want nil, 0", data, v)
	}
	_, err = s.PutKeys(c, []byte("one"), 1)
	wantErr(t, "PutKeys expecting 1 on empty store", err, storage.ErrConflict)
	v1, err := s.PutKeys(c, []byte("one"), 0)
	wantErr(t, "PutKeys first", err, nil)
	_, err = s.PutKeys(c, []byte("other"), 0)
	wantErr(t, "PutKeys expecting 0 again", err, storage.ErrConflict)
	v2, err := s.PutKeys(c, []byte("two"), v1)
	wantErr(t, "PutKeys second", err, nil)
	if v2 <= v1 || v1 <= 0 {
		t.Fatalf("PutKeys versions = %d then %d, want positive and increasing", v1, v2)
	}
	_, err = s.PutKeys(c, []byte("stale"), v1)
	wantErr(t, "PutKeys with a stale version", err, storage.ErrConflict)
	data, v, err = s.GetKeys(c)
	wantErr(t, "GetKeys", err, nil)
	if string(data) != "two" || v != v2 {
		t.Fatalf("GetKeys() = %q, %d, want %q, %d", data, v, "two", v2)
	}
	data[0] = 'X'
	if data, _, _ = s.GetKeys(c); string(data) != "two" {
		t.Fatalf("stored keys changed through a returned slice: %q", data)
	}
}

func testKeysConcurrent(t *testing.T, s storage.Storage) {
	c := ctx(t)
	v, err := s.PutKeys(c, []byte("base"), 0)
	wantErr(t, "PutKeys", err, nil)
	errs := concurrently(20, func(i int) error {
		_, err := s.PutKeys(c, []byte(fmt.Sprint("writer-", i)), v)
		return err
	})
	ok, winner := 0, -1
	for i, err := range errs {
		switch {
		case err == nil:
			ok, winner = ok+1, i
		case !errors.Is(err, storage.ErrConflict):
			t.Errorf("concurrent PutKeys: error = %v, want nil or ErrConflict", err)
		}
	}
	if ok != 1 {
		t.Fatalf("concurrent PutKeys succeeded %d times, want 1", ok)
	}
	data, _, err := s.GetKeys(c)
	wantErr(t, "GetKeys", err, nil)
	if want := fmt.Sprint("writer-", winner); string(data) != want {
		t.Fatalf("GetKeys() = %q, want the winner's %q", data, want)
	}
}

func testLease(t *testing.T, s storage.Storage) {
	c := ctx(t)
	name := "rotate-" + random(t)
	for _, step := range []struct {
		holder string
		want   bool
	}{
		{"replica-a", true},
		{"replica-b", false},
		{"replica-a", true}, // renewal
		{"replica-b", false},
	} {
		got, err := s.AcquireLease(c, name, step.holder, time.Minute)
		wantErr(t, "AcquireLease", err, nil)
		if got != step.want {
			t.Fatalf("AcquireLease(%s) = %v, want %v", step.holder, got, step.want)
		}
	}
	if got, err := s.AcquireLease(c, "other-"+random(t), "replica-b", time.Minute); err != nil || !got {
		t.Fatalf("AcquireLease of another name = %v, %v, want true, nil", got, err)
	}
	res := make([]bool, 10)
	errs := concurrently(10, func(i int) error {
		var err error
		res[i], err = s.AcquireLease(c, name+"-race", fmt.Sprint("h", i), time.Minute)
		return err
	})
	won := 0
	for i := range res {
		wantErr(t, "concurrent AcquireLease", errs[i], nil)
		if res[i] {
			won++
		}
	}
	if won != 1 {
		t.Fatalf("concurrent AcquireLease granted %d holders, want 1", won)
	}
}

func testMarkSeen(t *testing.T, s storage.Storage) {
	c := ctx(t)
	until := time.Now().Add(time.Hour)
	id := random(t)
	// A past until only asks, and records nothing.
	for range 2 {
		got, err := s.MarkSeen(c, "saml", id, time.Time{})
		wantErr(t, "MarkSeen (ask only)", err, nil)
		if !got {
			t.Fatal("MarkSeen (ask only) of an unseen id = false, want true")
		}
	}
	for i, want := range []bool{true, false, false} {
		got, err := s.MarkSeen(c, "saml", id, until)
		wantErr(t, "MarkSeen", err, nil)
		if got != want {
			t.Fatalf("MarkSeen call %d = %v, want %v", i+1, got, want)
		}
	}
	if got, err := s.MarkSeen(c, "saml", id, time.Time{}); err != nil || got {
		t.Fatalf("MarkSeen (ask only) of a recorded id = %v, %v; want false", got, err)
	}
	// Namespaces are separate, also when joined they would read the same.
	for _, tc := range []struct{ ns, id string }{{"jti", id}, {"sa", "ml:" + id}, {"saml:", id}} {
		got, err := s.MarkSeen(c, tc.ns, tc.id, until)
		wantErr(t, "MarkSeen", err, nil)
		if !got {
			t.Fatalf("MarkSeen(%q, %q) = false, want true", tc.ns, tc.id)
		}
	}
	res := make([]bool, 20)
	race := random(t)
	errs := concurrently(20, func(i int) error {
		var err error
		res[i], err = s.MarkSeen(c, "jti", race, until)
		return err
	})
	fresh := 0
	for i := range res {
		wantErr(t, "concurrent MarkSeen", errs[i], nil)
		if res[i] {
			fresh++
		}
	}
	if fresh != 1 {
		t.Fatalf("concurrent MarkSeen reported new %d times, want 1", fresh)
	}
}

func testLink(t *testing.T, s storage.Storage) {
	c := ctx(t)
	links, err := s.ListLinks(c)
	wantErr(t, "ListLinks on empty store", err, nil)
	if len(links) != 0 {
		t.Fatalf("ListLinks on empty store = %v, want none", links)
	}
	_, err = s.GetLink(c, "nobody@example.com")
	wantErr(t, "GetLink unknown", err, storage.ErrNotFound)
	var want []storage.Link
	for i := 0; i < 3; i++ {
		l := storage.Link{
			Key:             fmt.Sprintf("email:user%d@example.com", i),
			Subject:         "sub-" + random(t),
			ConnectorID:     "google",
			UpstreamSubject: fmt.Sprint("upstream-", i),
			Created:         time.Now().Round(0),
		}
		got, created, err := s.CreateLink(c, l)
		wantErr(t, "CreateLink", err, nil)
		if !created {
			t.Fatalf("CreateLink(%s) created = false, want true", l.Key)
		}
		if diff := cmp.Diff(l, got, cmpOpts...); diff != "" {
			t.Fatalf("CreateLink() mismatch (-want +got):\n%s", diff)
		}
		want = append(want, l)
	}
	second := want[0]
	second.Subject, second.ConnectorID = "sub-other", "azuread"
	got, created, err := s.CreateLink(c, second)
	wantErr(t, "CreateLink existing key", err, nil)
	if created {
		t.Fatalf("CreateLink of an existing key created = true, want false")
	}
	if diff := cmp.Diff(want[0], got, cmpOpts...); diff != "" {
		t.Fatalf("CreateLink of an existing key returned (-want +got):\n%s", diff)
	}
	got, err = s.GetLink(c, want[1].Key)
	wantErr(t, "GetLink", err, nil)
	if diff := cmp.Diff(want[1], got, cmpOpts...); diff != "" {
		t.Fatalf("GetLink() mismatch (-want +got):\n%s", diff)
	}
	links, err = s.ListLinks(c)
	wantErr(t, "ListLinks", err, nil)
	sort.Slice(links, func(i, j int) bool { return links[i].Key < links[j].Key })
	if diff := cmp.Diff(want, links, cmpOpts...); diff != "" {
		t.Fatalf("ListLinks() mismatch (-want +got):\n%s", diff)
	}
	wantErr(t, "DeleteLink", s.DeleteLink(c, want[1].Key), nil)
	wantErr(t, "DeleteLink twice", s.DeleteLink(c, want[1].Key), storage.ErrNotFound)
	_, err = s.GetLink(c, want[1].Key)
	wantErr(t, "GetLink after delete", err, storage.ErrNotFound)
	links, err = s.ListLinks(c)
	wantErr(t, "ListLinks after delete", err, nil)
	if len(links) != 2 {
		t.Fatalf("ListLinks after delete returned %d links, want 2", len(links))
	}
}

func testLinkConcurrent(t *testing.T, s storage.Storage) {
	c := ctx(t)
	key := "email:" + random(t) + "@example.com"
	got := make([]storage.Link, 20)
	created := make([]bool, 20)
	errs := concurrently(20, func(i int) error {
		var err error
		got[i], created[i], err = s.CreateLink(c, storage.Link{
			Key: key, Subject: fmt.Sprint("subject-", i), ConnectorID: fmt.Sprint("conn-", i),
		})
		return err
	})
	n, winner := 0, -1
	for i := range errs {
		wantErr(t, "concurrent CreateLink", errs[i], nil)
		if created[i] {
			n, winner = n+1, i
		}
	}
	if n != 1 {
		t.Fatalf("concurrent CreateLink created %d links, want 1", n)
	}
	want := fmt.Sprint("subject-", winner)
	for i := range got {
		if got[i].Subject != want {
			t.Errorf("CreateLink caller %d saw subject %q, want %q", i, got[i].Subject, want)
		}
	}
}
