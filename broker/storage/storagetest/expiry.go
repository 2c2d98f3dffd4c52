package storagetest

import (
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// Each expiry test stores records living ttl and checks they are there; the
// function it returns runs after the suite slept past ttl and checks they
// are gone.

func testExpireAuthRequest(t *testing.T, s storage.Storage) func(t *testing.T) {
	c := ctx(t)
	r := authRequest(t)
	r.Expiry = time.Now().Add(ttl)
	wantErr(t, "CreateAuthRequest", s.CreateAuthRequest(c, r), nil)
	_, err := s.GetAuthRequest(c, r.ID)
	wantErr(t, "GetAuthRequest before expiry", err, nil)
	return func(t *testing.T) {
		c := ctx(t)
		_, err = s.GetAuthRequest(c, r.ID)
		wantErr(t, "GetAuthRequest after expiry", err, storage.ErrNotFound)
		wantErr(t, "UpdateAuthRequest after expiry", s.UpdateAuthRequest(c, r), storage.ErrNotFound)
		_, err = s.TakeAuthRequest(c, r.ID)
		wantErr(t, "TakeAuthRequest after expiry", err, storage.ErrNotFound)
	}
}

func testExpireCode(t *testing.T, s storage.Storage) func(t *testing.T) {
	c := ctx(t)
	cd, used := code(t), code(t)
	cd.Expiry, used.Expiry = time.Now().Add(ttl), time.Now().Add(ttl)
	a, b := random(t), random(t)
	wantErr(t, "CreateCode", s.CreateCode(c, a, cd), nil)
	wantErr(t, "CreateCode", s.CreateCode(c, b, used), nil)
	_, err := s.ConsumeCode(c, b)
	wantErr(t, "ConsumeCode", err, nil)
	return func(t *testing.T) {
		c := ctx(t)
		_, err = s.ConsumeCode(c, a)
		wantErr(t, "ConsumeCode after expiry", err, storage.ErrNotFound)
		_, err = s.ConsumeCode(c, b)
		wantErr(t, "ConsumeCode of a used code after expiry", err, storage.ErrNotFound)
	}
}

func testExpireRefresh(t *testing.T, s storage.Storage) func(t *testing.T) {
	c := ctx(t)
	idle := family(t, "sub-"+random(t))
	idle.IdleExpiry = time.Now().Add(ttl)
	abs := family(t, "sub-"+random(t))
	abs.AbsoluteExpiry = time.Now().Add(ttl)
	abs.IdleExpiry = abs.AbsoluteExpiry
	ti, ta := token(t, idle.ID), token(t, abs.ID)
	wantErr(t, "CreateRefresh", s.CreateRefresh(c, idle, ti), nil)
	wantErr(t, "CreateRefresh", s.CreateRefresh(c, abs, ta), nil)
	_, err := s.GetRefresh(c, ti)
	wantErr(t, "GetRefresh before expiry", err, nil)
	// Rotation extends the idle lifetime, not past the absolute one.
	ta2 := token(t, abs.ID)
	got, _, err := s.RotateRefresh(c, ta, ta2, time.Now(), time.Hour, storage.Retry{})
	wantErr(t, "RotateRefresh", err, nil)
	if !got.IdleExpiry.Equal(abs.AbsoluteExpiry) {
		t.Fatalf("RotateRefresh() IdleExpiry = %v, want the absolute expiry %v", got.IdleExpiry, abs.AbsoluteExpiry)
	}
	return func(t *testing.T) {
		c := ctx(t)
		_, err = s.GetRefresh(c, ti)
		wantErr(t, "GetRefresh after idle expiry", err, storage.ErrNotFound)
		_, err = s.GetRefresh(c, ta2)
		wantErr(t, "GetRefresh after absolute expiry", err, storage.ErrNotFound)
		_, _, err = s.RotateRefresh(c, ti, token(t, idle.ID), time.Now(), time.Hour, storage.Retry{})
		wantErr(t, "RotateRefresh after idle expiry", err, storage.ErrNotFound)
	}
}

func testExpireTombstone(t *testing.T, s storage.Storage) func(t *testing.T) {
	c := ctx(t)
	f := family(t, "sub-"+random(t))
	wantErr(t, "RevokeFamily", s.RevokeFamily(c, f.ID, time.Now().Add(ttl)), nil)
	wantErr(t, "CreateRefresh before the tombstone expires", s.CreateRefresh(c, f, token(t, f.ID)), storage.ErrNotFound)
	return func(t *testing.T) {
		c := ctx(t)
		wantErr(t, "CreateRefresh after the tombstone expired", s.CreateRefresh(c, f, token(t, f.ID)), nil)
	}
}

func testExpireSession(t *testing.T, s storage.Storage) func(t *testing.T) {
	c := ctx(t)
	se := session(t, "sub-"+random(t))
	se.Expiry = time.Now().Add(ttl)
	wantErr(t, "CreateSession", s.CreateSession(c, se), nil)
	_, err := s.GetSession(c, se.ID)
	wantErr(t, "GetSession before expiry", err, nil)
	return func(t *testing.T) {
		c := ctx(t)
		_, err = s.GetSession(c, se.ID)
		wantErr(t, "GetSession after expiry", err, storage.ErrNotFound)
		fams, sess, err := s.RevokeSubject(c, se.Subject)
		wantErr(t, "RevokeSubject", err, nil)
		if fams != 0 || sess != 0 {
			t.Fatalf("RevokeSubject after expiry = %d, %d, want 0, 0", fams, sess)
		}
	}
}

func testExpireLease(t *testing.T, s storage.Storage) func(t *testing.T) {
	c := ctx(t)
	for _, step := range []struct {
		holder string
		want   bool
	}{{"a", true}, {"b", false}} {
		got, err := s.AcquireLease(c, "lease", step.holder, ttl)
		wantErr(t, "AcquireLease", err, nil)
		if got != step.want {
			t.Fatalf("AcquireLease(%s) = %v, want %v", step.holder, got, step.want)
		}
	}
	return func(t *testing.T) {
		c := ctx(t)
		got, err := s.AcquireLease(c, "lease", "b", time.Minute)
		wantErr(t, "AcquireLease after expiry", err, nil)
		if !got {
			t.Fatalf("AcquireLease(b) after a's lease expired = false, want true")
		}
		if got, _ := s.AcquireLease(c, "lease", "a", time.Minute); got {
			t.Fatalf("AcquireLease(a) while b holds the lease = true, want false")
		}
	}
}

func testExpireSeen(t *testing.T, s storage.Storage) func(t *testing.T) {
	c := ctx(t)
	id := random(t)
	for i, want := range []bool{true, false} {
		got, err := s.MarkSeen(c, "ns", id, time.Now().Add(ttl))
		wantErr(t, "MarkSeen", err, nil)
		if got != want {
			t.Fatalf("MarkSeen call %d = %v, want %v", i+1, got, want)
		}
	}
	return func(t *testing.T) {
		c := ctx(t)
		got, err := s.MarkSeen(c, "ns", id, time.Now().Add(ttl))
		wantErr(t, "MarkSeen after expiry", err, nil)
		if !got {
			t.Fatalf("MarkSeen after expiry = false, want true")
		}
	}
}

func testExpireReplica(t *testing.T, s storage.Storage) func(t *testing.T) {
	soon, hour := time.Now().Add(ttl), time.Now().Add(time.Hour)
	// A record living ttl; one renewed, as a heartbeat does, to live an
	// hour; one replaced by a record living ttl.
	ends, renewed, shortened := replica("replica-ends"), replica("replica-renewed"), replica("replica-shortened")
	putReplica(t, s, ends, soon)
	putReplica(t, s, renewed, soon)
	putReplica(t, s, shortened, hour)
	renewed.Seen = renewed.Seen.Add(time.Second)
	putReplica(t, s, renewed, hour)
	shortened.Status = "stopped"
	putReplica(t, s, shortened, soon)
	wantReplicas(t, "before expiry", s, ends, renewed, shortened)
	return func(t *testing.T) {
		wantReplicas(t, "after expiry", s, renewed)
	}
}
