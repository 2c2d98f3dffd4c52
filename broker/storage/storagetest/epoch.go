package storagetest

import (
	"errors"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// EpochFixture is what an epoch test keeps from before a simulated loss
// or rollback: a family (Rotated is its first token, Current the one a
// rotation will make current), a code and a session, all created before.
type EpochFixture struct {
	Rotated, Current string
	Code             string
	Session          string
}

// NewEpochFixture creates the records of an EpochFixture in s.
func NewEpochFixture(t *testing.T, s storage.Storage) EpochFixture {
	t.Helper()
	c := ctx(t)
	now := time.Now()
	fam := storage.RefreshFamily{
		ID: "fam1", CreatedAt: now, LastUsed: now,
		IdleExpiry: now.Add(time.Hour), AbsoluteExpiry: now.Add(2 * time.Hour),
		Grant: storage.Grant{ClientID: "app", Subject: "alice", AuthTime: now},
	}
	fx := EpochFixture{Rotated: "fam1.first", Current: "fam1.second", Code: "code-1", Session: "session-1"}
	if err := s.CreateRefresh(c, fam, fx.Rotated); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateCode(c, fx.Code, storage.AuthCode{ClientID: "app", FamilyID: "fam2", Created: now, Expiry: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(c, storage.Session{ID: fx.Session, Subject: "alice", AuthTime: now, Created: now, Expiry: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	return fx
}

// WantForgotten checks that nothing of fx is usable in s any more: the
// store's epoch began after fx was created.
func (fx EpochFixture) WantForgotten(t *testing.T, s storage.Storage) {
	t.Helper()
	c := ctx(t)
	// Whichever token the rolled-back family holds as current is refused
	// (ErrNotFound); the other is then reuse or not found: refused too.
	for _, tok := range []string{fx.Rotated, fx.Current} {
		_, _, err := s.RotateRefresh(c, tok, "fam1.third", time.Now(), time.Hour, storage.Retry{})
		if !errors.Is(err, storage.ErrNotFound) && !errors.Is(err, storage.ErrReused) {
			t.Errorf("RotateRefresh(%s) of a family from before the loss = %v, want ErrNotFound or ErrReused", tok, err)
		}
	}
	if _, err := s.GetRefresh(c, fx.Current); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("GetRefresh of a family from before the loss = %v, want ErrNotFound", err)
	}
	if _, err := s.ConsumeCode(c, fx.Code); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("ConsumeCode of a code from before the loss = %v, want ErrNotFound", err)
	}
	if _, err := s.GetSession(c, fx.Session); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("GetSession of a session from before the loss = %v, want ErrNotFound", err)
	}
}
