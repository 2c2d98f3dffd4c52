package tokens_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/tokens"
)

// lostStore is a store whose current epoch began at since: it lost or
// rolled back state then.
type lostStore struct {
	storage.Storage
	since time.Time
}

func (s lostStore) Since() time.Time { return s.since }

// TestAccessTokensFromBeforeALossAreRefused: once storage has lost or
// rolled back state, a revocation of a token issued before may be among
// what it forgot, so introspection, userinfo and delegation (all through
// CheckAccessToken) refuse it; tokens of the new epoch pass.
func TestAccessTokensFromBeforeALossAreRefused(t *testing.T) {
	_, f := newAuthority(t)
	ctx := context.Background()
	issuedAt := f.Clock.Now()
	for _, tc := range []struct {
		name  string
		since time.Time
		ok    bool
	}{
		{"no epoch (memory store)", time.Time{}, true},
		{"epoch began before", issuedAt.Add(-time.Hour), true},
		{"new store: epoch began at the start of the same second", issuedAt.Truncate(time.Second), true},
		{"loss detected later in the same second", issuedAt.Truncate(time.Second).Add(time.Millisecond), false},
		{"loss detected after", issuedAt.Add(time.Minute), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := tokens.New(tokens.Deps{Issuer: "https://broker.test", Keys: f.Keys, Store: lostStore{f.Store, tc.since}, Now: f.Clock.Now})
			resp, err := a.Issue(f.Client(t, "svc"), familyGrant("svc", "famFFFFFFFFFFFFFFFFFFFFF"), issuedAt)
			if err != nil {
				t.Fatal(err)
			}
			_, err = a.CheckAccessToken(ctx, resp.AccessToken)
			switch {
			case tc.ok && err != nil:
				t.Errorf("CheckAccessToken = %v, want ok", err)
			case !tc.ok && !errors.Is(err, tokens.ErrInvalid):
				t.Errorf("CheckAccessToken = %v, want ErrInvalid", err)
			}
			got, err := a.Introspect(ctx, f.Client(t, "svc"), resp.AccessToken)
			if err != nil {
				t.Fatal(err)
			}
			if active, _ := got["active"].(bool); active != tc.ok {
				t.Errorf("introspection active = %v, want %v", active, tc.ok)
			}
		})
	}
}
