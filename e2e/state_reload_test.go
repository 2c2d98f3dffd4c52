package e2e

// Scenario 9 (a reload reports what it applied and what needs a restart,
// and really runs accordingly) and scenario 11's JSON-only logs (go-redis
// lines included) of issue 13.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
)

// extraClient is a confidential client_credentials client named id with
// the secret svcSecret.
func extraClient(id string) string {
	_, sh := hashes()
	return fmt.Sprintf(`  - id: %s
    name: Extra %s
    secret_hash: %q
    grant_types: [client_credentials]
    audiences: [api.acme.com]
`, id, id, sh)
}

func clientCredentialsAs(base, id string) (tokenResp, error) {
	return callToken(base, url.Values{"grant_type": {"client_credentials"}}, id, svcSecret)
}

// reloadReport is the answer of POST /admin/reload, and the attributes of
// the reload's log line.
type reloadReport struct {
	Status          string `json:"status"`
	Applied         []struct{ Path, Change string }
	RestartRequired []struct{ Path, Change string } `json:"restart_required"`
}

func (rep reloadReport) paths() (applied, restart []string) {
	for _, c := range rep.Applied {
		applied = append(applied, c.Path)
	}
	for _, c := range rep.RestartRequired {
		restart = append(restart, c.Path)
	}
	return applied, restart
}

// checkReport checks that wantApplied are listed as applied and
// wantRestart (prefixes) as needing a restart, and nothing in both.
func checkReport(t *testing.T, what string, rep reloadReport, wantApplied, wantRestart []string) {
	t.Helper()
	applied, restart := rep.paths()
	if rep.Status != "restart required" {
		t.Errorf("%s: status %q, want \"restart required\"", what, rep.Status)
	}
	for _, p := range wantApplied {
		if !slices.Contains(applied, p) {
			t.Errorf("%s: applied %v lacks %s", what, applied, p)
		}
	}
	for _, p := range wantRestart {
		if !slices.ContainsFunc(restart, func(s string) bool { return strings.HasPrefix(s, p) }) {
			t.Errorf("%s: restart_required %v lacks %s", what, restart, p)
		}
		if slices.ContainsFunc(applied, func(s string) bool { return strings.HasPrefix(s, p) }) {
			t.Errorf("%s: %s is listed as applied (%v)", what, p, applied)
		}
	}
}

// TestStateReload (scenario 9): the configuration file changes
// signing.algorithm, storage.redis.key_prefix and http.addr, which need a
// restart, and adds a client, which a reload applies. POST /admin/reload
// lists each field as applied or restart_required, and the replica then
// runs exactly that: the new client works, while it still signs ES256,
// still listens where it did and still uses the same keys in Redis. A
// later change reloaded by SIGHUP is logged the same way.
func TestStateReload(t *testing.T) {
	rs := redistest.StartServer(t)
	r := startStateReplica(t, "", rs.URL(), fleetNode())
	before := fullLogin(t, r.URL)
	if tr, err := clientCredentialsAs(r.URL, "svc2"); err != nil || tr.status == http.StatusOK {
		t.Fatalf("client svc2 before the reload = %+v, %v; want refused", tr, err)
	}

	oldAddr := r.cfg.Addr
	newAddr := freeAddr(t)
	r.cfg.Addr = newAddr
	r.node.Algorithm, r.node.StoragePrefix = "RS256", "other"
	r.node.ExtraClients = extraClient("svc2")
	r.writeConfig()
	r.cfg.Addr = oldAddr // the replica keeps running where it listens

	code, body, err := r.adminDo(http.MethodPost, "/admin/reload", nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("POST /admin/reload = %d %s, %v; want 200", code, body, err)
	}
	var rep reloadReport
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatalf("reload answer %s: %v", body, err)
	}
	t.Logf("reload answered %s", body)
	checkReport(t, "POST /admin/reload", rep, []string{"clients[svc2]"}, []string{"signing.algorithm", "storage", "http.addr"})

	// What was applied runs ...
	if tr, err := clientCredentialsAs(r.URL, "svc2"); err != nil || tr.status != http.StatusOK {
		t.Errorf("client svc2 after the reload = %d %s %s (%v), want 200 (applied)", tr.status, tr.Error, tr.Description, err)
	}
	// ... and what needs a restart does not.
	if _, alg := header(t, mustAccessToken(t, r.URL)); alg != "ES256" {
		t.Errorf("after the reload the replica signs with %s, want still ES256 (signing.algorithm needs a restart)", alg)
	}
	if listening(newAddr) {
		t.Errorf("the replica listens on the new http.addr %s before a restart", newAddr)
	}
	if tr, err := refresh(r.URL, before.RefreshToken); err != nil || tr.status != http.StatusOK {
		t.Errorf("a refresh token from before the reload = %d %s %s (%v), want 200 (the storage prefix is still the old one)", tr.status, tr.Error, tr.Description, err)
	}
	if code, _ := readyStatus(r.URL); code != http.StatusOK {
		t.Errorf("/readyz after the reload = %d, want 200", code)
	}
	logged := reloadLogs(r)
	if len(logged) != 1 {
		t.Fatalf("%d reload log lines after one reload, want 1", len(logged))
	}
	checkReport(t, "the reload's log line", logged[0], []string{"clients[svc2]"}, []string{"signing.algorithm", "storage", "http.addr"})

	// SIGHUP reloads the same way.
	r.cfg.Addr = newAddr
	r.node.ExtraClients = extraClient("svc2") + extraClient("svc3")
	r.writeConfig()
	r.cfg.Addr = oldAddr
	r.signal(t, syscall.SIGHUP)
	err = eventually(10*time.Second, func() error {
		if n := len(reloadLogs(r)); n != 2 {
			return fmt.Errorf("%d reload log lines", n)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("SIGHUP: %v\n%s", err, r.log())
	}
	checkReport(t, "the SIGHUP reload's log line", reloadLogs(r)[1], []string{"clients[svc3]"}, []string{"signing.algorithm", "storage", "http.addr"})
	if tr, err := clientCredentialsAs(r.URL, "svc3"); err != nil || tr.status != http.StatusOK {
		t.Errorf("client svc3 after SIGHUP = %d %s (%v), want 200", tr.status, tr.Error, err)
	}
	if _, alg := header(t, mustAccessToken(t, r.URL)); alg != "ES256" {
		t.Errorf("after SIGHUP the replica signs with %s, want still ES256", alg)
	}
}

// reloadLogs returns the reload log lines of r (not the audit lines),
// decoded as reports.
func reloadLogs(r *stateReplica) []reloadReport {
	var out []reloadReport
	for _, rec := range r.find(func(rec logRecord) bool {
		return strings.HasPrefix(rec.str("msg"), "reload applied") && rec["audit"] == nil
	}) {
		b, _ := json.Marshal(rec)
		var rep reloadReport
		_ = json.Unmarshal(b, &rep)
		rep.Status = "restart required"
		if len(rep.RestartRequired) == 0 {
			rep.Status = "reloaded"
		}
		out = append(out, rep)
	}
	return out
}

// TestStateRedisLogsJSON (scenario 11): while Redis is down go-redis logs
// its own lines (a pool that cannot dial, a subscription that reconnects);
// they go through the broker's JSON logger, so every line a replica writes
// is one JSON object.
func TestStateRedisLogsJSON(t *testing.T) {
	rs := redistest.StartServer(t)
	r := startStateReplica(t, "", rs.URL(), fleetNode())
	tr := fullLogin(t, r.URL)

	rs.Stop()
	err := eventually(15*time.Second, func() error {
		_, _ = refresh(r.URL, tr.RefreshToken)
		readyStatus(r.URL)
		if len(r.find(func(rec logRecord) bool { return rec.str("component") == "redis" })) == 0 {
			return fmt.Errorf("no go-redis line (component redis) in the log yet")
		}
		return nil
	})
	if err != nil {
		t.Errorf("Redis down: %v", err)
	}
	rs.Restart()
	if err := r.waitReady(20 * time.Second); err != nil {
		t.Fatalf("not ready after Redis came back: %v", err)
	}
	fullLogin(t, r.URL)

	recs, bad := r.records()
	for _, line := range bad {
		t.Errorf("log line is not a JSON object: %q", line)
	}
	for _, rec := range recs {
		if rec.str("level") == "" || rec.str("msg") == "" {
			t.Errorf("log record without level or msg: %v", rec)
		}
	}
	t.Logf("%d log lines, all JSON; go-redis lines: %d", len(recs), len(r.find(func(rec logRecord) bool { return rec.str("component") == "redis" })))
}
