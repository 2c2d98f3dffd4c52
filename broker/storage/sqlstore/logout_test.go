package sqlstore

import (
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/storage/storagetest"
)

// migrationNames returns the names of the dialect's migrations, in order.
func migrationNames(t testing.TB, d *dialect) []string {
	t.Helper()
	all, err := d.migrations()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range all {
		out = append(out, m.name)
	}
	return out
}

// TestLogoutEpoch: after an operator's new epoch, sessions and families
// from before are not listed, found, touched or ended.
func TestLogoutEpoch(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		a := be.fresh(t, Options{})
		defer a.Close()
		fx := storagetest.NewLogoutEpochFixture(t, a)
		b := be.again(t, a, Options{})
		defer b.Close()
		time.Sleep(2 * time.Millisecond)
		if _, err := b.StartEpoch(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		fx.WantForgotten(t, b)
	})
}

// TestMigrateLogoutBackfill: migration 0002 fills the upstream columns of
// the sessions stored before it, and a row that is not JSON does not stop
// it.
func TestMigrateLogoutBackfill(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := testCtx(t)
		s := be.fresh(t, Options{NoMigrate: true})
		defer s.Close()
		all, err := s.d.migrations()
		if err != nil {
			t.Fatal(err)
		}
		if err := s.migrate(ctx, all[:1]); err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		se := storage.Session{
			PublicID: "p1", Subject: "alice", ConnectorID: "google", UpstreamSID: "x1",
			Grant:    storage.Grant{Subject: "alice", ConnectorID: "google", UpstreamSubject: "u1", SessionID: "p1"},
			AuthTime: now, Expiry: now.Add(time.Hour),
		}
		data, err := encode(se)
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range []struct {
			hash string
			data []byte
		}{{storage.Hash("s1"), data}, {storage.Hash("s2"), []byte("not json")}, {storage.Hash("s3"), []byte(`[1, 2]`)}} {
			if _, err := s.w.ExecContext(ctx, `INSERT INTO sessions (hash, subject, data, expiry) VALUES ($1, $2, $3, $4)`,
				row.hash, "alice", row.data, ns(se.Expiry)); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Migrate(ctx); err != nil {
			t.Fatalf("Migrate over sessions stored before 0002: %v", err)
		}
		for _, q := range [][2]string{{"u1", ""}, {"", "x1"}, {"u1", "x1"}} {
			got, err := s.UpstreamSessions(ctx, "google", q[0], q[1])
			if err != nil || len(got) != 1 || got[0].PublicID != "p1" {
				t.Errorf("UpstreamSessions(google, %q, %q) of a session stored before 0002 = %v, %v; want p1", q[0], q[1], got, err)
			}
		}
		if got, err := s.UpstreamSessions(ctx, "okta", "u1", ""); err != nil || len(got) != 0 {
			t.Errorf("UpstreamSessions(okta, u1) = %v, %v; want none", got, err)
		}
		if err := s.TouchSession(ctx, "s1", "app", now); err != nil {
			t.Errorf("TouchSession of a session stored before 0002 = %v", err)
		}
	})
}
