package storagetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// RunTransfer checks `fedbroker storage copy` between two backends: src
// must implement storage.Exporter and dst storage.Importer. It fills src
// with one record of every kind that is moved, copies, and checks through
// dst's Storage methods that people stay signed in and every decision
// holds; a second copy changes nothing.
func RunTransfer(t *testing.T, src, dst storage.Storage) {
	c := ctx(t)
	exp, ok := src.(storage.Exporter)
	if !ok {
		t.Fatalf("%T does not implement storage.Exporter", src)
	}
	imp, ok := dst.(storage.Importer)
	if !ok {
		t.Fatalf("%T does not implement storage.Importer", dst)
	}

	// A family rotated once: its first token is dead, its second current.
	f := family(t, "ada")
	first, second := token(t, f.ID), token(t, f.ID)
	if err := src.CreateRefresh(c, f, first); err != nil {
		t.Fatal(err)
	}
	if _, _, err := src.RotateRefresh(c, first, second, time.Now(), time.Hour, storage.Retry{}); err != nil {
		t.Fatal(err)
	}
	// A revoked family: its id is tombstoned.
	gone := family(t, "ada")
	if err := src.CreateRefresh(c, gone, token(t, gone.ID)); err != nil {
		t.Fatal(err)
	}
	if err := src.RevokeFamily(c, gone.ID, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	se := session(t, "ada")
	se.Created = time.Now().Round(0)
	se.UpstreamSID = "up-sid-ada"
	if err := src.CreateSession(c, se); err != nil {
		t.Fatal(err)
	}
	if _, err := src.MarkSeen(c, "revoked_at", "jti-1", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	link := storage.Link{Key: "email:ada@example.com", Subject: "ada", ConnectorID: "google", UpstreamSubject: "1122", Created: time.Now().Round(0)}
	if _, _, err := src.CreateLink(c, link); err != nil {
		t.Fatal(err)
	}
	if _, err := src.PutKeys(c, []byte(`{"keys":"k"}`), 0); err != nil {
		t.Fatal(err)
	}
	// A back-channel logout not yet delivered, retried once already.
	dl := storage.Delivery{ID: "dl-" + random(t), Kind: storage.DeliveryBackchannelLogout, ClientID: "app", Subject: "ada", SID: se.PublicID,
		Created: time.Now().Add(-time.Minute).Round(0), Due: time.Now().Add(-time.Second).Round(0), Attempts: 1, LastError: "503 Service Unavailable"}
	if err := src.PutDelivery(c, dl); err != nil {
		t.Fatal(err)
	}

	copyAll := func() int {
		n := 0
		if err := exp.Export(c, func(it storage.Item) error {
			n++
			return imp.Import(c, it)
		}); err != nil {
			t.Fatalf("copy: %v", err)
		}
		return n
	}
	if n := copyAll(); n < 7 {
		t.Errorf("copied %d records, want at least 7 (keys, link, family, tombstone, session, revocation, delivery)", n)
	}
	copyAll() // a second run leaves everything as it is

	// The pending delivery goes on from the destination, once.
	if n, err := dst.PendingDeliveries(c); err != nil || n != 1 {
		t.Errorf("PendingDeliveries after the copy = %d, %v; want 1", n, err)
	}
	claimed, err := dst.ClaimDeliveries(c, time.Now(), time.Minute, 10)
	if err != nil || len(claimed) != 1 {
		t.Errorf("ClaimDeliveries after the copy = %+v, %v; want the delivery", claimed, err)
	} else {
		want := dl
		want.Attempts++
		want.Due = claimed[0].Due
		if diff := cmp.Diff(want, claimed[0], cmpOpts...); diff != "" {
			t.Errorf("the delivery after the copy (-want +got):\n%s", diff)
		}
	}

	if _, _, err := dst.RotateRefresh(c, second, token(t, f.ID), time.Now(), time.Hour, storage.Retry{}); err != nil {
		t.Errorf("RotateRefresh with the current token after the copy: %v", err)
	}
	if _, _, err := dst.RotateRefresh(c, first, token(t, f.ID), time.Now(), time.Hour, storage.Retry{}); !errors.Is(err, storage.ErrReused) {
		t.Errorf("RotateRefresh with a token rotated before the copy = %v, want ErrReused", err)
	}
	if err := dst.CreateRefresh(c, gone, token(t, gone.ID)); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("CreateRefresh of a family revoked before the copy = %v, want ErrNotFound (tombstone)", err)
	}
	got, err := dst.GetSession(c, se.ID)
	if err != nil {
		t.Errorf("GetSession after the copy: %v", err)
	} else if got.PublicID != se.PublicID || got.Subject != se.Subject {
		t.Errorf("session after the copy = %+v, want %+v", got, se)
	}
	// The copy is indexed like a session created there: an upstream's
	// logout and the admin's list find it.
	if up, err := dst.UpstreamSessions(c, se.ConnectorID, "", se.UpstreamSID); err != nil || len(up) != 1 || up[0].PublicID != se.PublicID {
		t.Errorf("UpstreamSessions after the copy = %+v, %v; want the session", up, err)
	}
	if list, err := dst.ListSessions(c, se.Subject); err != nil || len(list) != 1 {
		t.Errorf("ListSessions after the copy = %+v, %v; want the session", list, err)
	}
	if fresh, err := dst.MarkSeen(c, "revoked_at", "jti-1", time.Time{}); err != nil || fresh {
		t.Errorf("revocation after the copy: recorded=%v, err %v; want recorded", !fresh, err)
	}
	if l, err := dst.GetLink(c, link.Key); err != nil || !cmp.Equal(l, link, cmpOpts...) {
		t.Errorf("GetLink after the copy = %+v, %v; want %+v", l, err, link)
	}
	if data, _, err := dst.GetKeys(c); err != nil || string(data) != `{"keys":"k"}` {
		t.Errorf("GetKeys after the copy = %s, %v", data, err)
	}
}
