package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage/sqlstore/pgtest"
)

// TestPostgresReplicas runs three replicas on one PostgreSQL: each step of
// a login on another replica, a replica killed mid-login, every replica
// SIGKILLed under load and started again (nothing lost), and PostgreSQL
// restarted under load (503 while it is down, nothing lost or resurrected
// after, no broker restart).
func TestPostgresReplicas(t *testing.T) {
	pg := pgtest.StartServer(t)
	cl := startClusterWith(t, 3, brokerConfig{PostgresURL: pg.URL(), SignInBurst: 100000})

	t.Run("each step on another replica", func(t *testing.T) {
		var ls loginSteps
		cl.use(0)
		if err := ls.authorize(cl.Issuer); err != nil {
			t.Fatal(err)
		}
		cl.use(1)
		code, err := ls.submit(alicePassword)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := redeem(cl.Replicas[2].URL, code, ls.p)
		if err != nil || tr.status != http.StatusOK {
			t.Fatalf("redeem at replica 2 = %+v, %v", tr, err)
		}
		if again, err := refresh(cl.Replicas[0].URL, tr.RefreshToken); err != nil || again.status != http.StatusOK {
			t.Errorf("refresh at replica 0 = %+v, %v", again, err)
		}
	})

	t.Run("replica killed mid-login", func(t *testing.T) {
		var ls loginSteps
		cl.use(0)
		if err := ls.authorize(cl.Issuer); err != nil {
			t.Fatal(err)
		}
		code, err := ls.submitWith(alicePassword, func() {
			cl.Replicas[0].Kill()
			cl.use(1)
		})
		if err != nil {
			t.Fatalf("login after the replica that served the form was killed: %v", err)
		}
		if tr, err := redeem(cl.Replicas[1].URL, code, ls.p); err != nil || tr.status != http.StatusOK {
			t.Fatalf("redeem on a survivor = %+v, %v", tr, err)
		}
		if err := cl.Replicas[0].startReady(20 * time.Second); err != nil {
			t.Fatalf("restart replica 0: %v", err)
		}
	})

	t.Run("every replica SIGKILLed under load", func(t *testing.T) {
		cl.use(0)
		st := makeDurableState(t, cl.Issuer)
		var urls []string
		for _, r := range cl.Replicas {
			urls = append(urls, r.URL)
		}
		wait := loadInBackground(t, strings.Join(urls, ","))
		time.Sleep(1500 * time.Millisecond)
		for _, r := range cl.Replicas {
			r.Kill()
		}
		wait()
		for i, r := range cl.Replicas {
			if err := r.startReady(20 * time.Second); err != nil {
				t.Fatalf("restart replica %d: %v\n%s", i, err, r.log())
			}
		}
		cl.use(2)
		checkDurableState(t, cl.Issuer, st)
	})

	t.Run("PostgreSQL restarted under load", func(t *testing.T) {
		cl.use(1)
		st := makeDurableState(t, cl.Issuer)
		r := cl.Replicas[1]
		load := startRefreshLoad(t, r.URL, 4)
		time.Sleep(300 * time.Millisecond)
		pg.Stop()
		load.storageDown()
		status, body, err := postForm(context.Background(), r.URL+"/token", map[string][]string{"grant_type": {"refresh_token"}, "refresh_token": {st.current}, "client_id": {"app"}}, "", "")
		if err != nil {
			t.Fatal(err)
		}
		wantUnavailable(t, "refresh with PostgreSQL down", status, body)
		if code, m, err := introspect(r.URL, st.revokedAT); err != nil || code != http.StatusServiceUnavailable || m["active"] == true {
			t.Errorf("introspect with PostgreSQL down = %d %v, %v; want 503, never active", code, m, err)
		}
		if code, _ := get(t, r.URL+"/readyz"); code != http.StatusServiceUnavailable {
			t.Errorf("/readyz with PostgreSQL down = %d, want 503", code)
		}
		if code, _ := get(t, r.URL+"/keys"); code != http.StatusOK {
			t.Errorf("JWKS with PostgreSQL down = %d, want 200", code)
		}
		load.wantNoLateOK(t, "PostgreSQL")
		pg.Restart()
		for i, rep := range cl.Replicas {
			if err := rep.waitReady(20 * time.Second); err != nil {
				t.Fatalf("replica %d not ready after PostgreSQL came back: %v", i, err)
			}
		}
		load.finish(t, "PostgreSQL")
		checkDurableState(t, cl.Issuer, st)
	})
}
