package broker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/storage"
	redisstore "github.com/fedbroker/fedbroker/broker/storage/redis"
	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
	"github.com/fedbroker/fedbroker/dpop"
)

// roundTrips counts the network round trips to Redis made on behalf of
// contexts marked with countKey (n: one per command sent alone, one per
// pipeline) and the commands Redis ran for them (cmds: each command of a
// pipeline counts).
type roundTrips struct{ n, cmds atomic.Int64 }

type countKey struct{}

func (c *roundTrips) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (c *roundTrips) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		if ctx.Value(countKey{}) != nil {
			c.n.Add(1)
			c.cmds.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (c *roundTrips) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		if ctx.Value(countKey{}) != nil {
			c.n.Add(1)
			c.cmds.Add(int64(len(cmds)))
		}
		return next(ctx, cmds)
	}
}

// TestRedisRoundTripsPerGrant counts the round trips to Redis of each
// grant at the token endpoint, and the commands Redis runs for it: one
// each (one script, which also ticks the storage epoch), so that a
// regression is caught. Scripts are loaded and
// connections opened before counting (the first use of a script costs one
// more round trip, once per Redis server).
func TestRedisRoundTripsPerGrant(t *testing.T) {
	u, err := url.Parse(redistest.Start(t))
	if err != nil {
		t.Fatal(err)
	}
	counter := &roundTrips{}
	client := goredis.NewClient(&goredis.Options{Addr: u.Host, DB: 0})
	client.AddHook(counter)
	if db := strings.TrimPrefix(u.Path, "/"); db != "" && db != "0" {
		t.Skipf("REDIS_URL names database %s; this test uses database 0", db)
	}
	st := redisstore.New(client, redisstore.Options{KeyPrefix: "rt"})
	t.Cleanup(func() { _ = st.Close() })
	if err := st.Heartbeat(context.Background()); err != nil {
		t.Fatal(err)
	}
	kek := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))
	clk := newClock()
	h := newHarness(t, st, clk, func(c *config.Config) { c.Signing.KeyEncryptionKey = kek })
	handler := h.b.Handler()
	signer := newDPoPSigner(t)
	ctx := context.Background()

	newCode := func(scopes ...string) string {
		code := oauth.RandomToken(32)
		g := benchGrant("sub-1", clk.Now())
		g.Scopes = scopes
		ac := storage.AuthCode{ClientID: "svc", RedirectURI: svcRedirect, FamilyID: oauth.RandomToken(16), Grant: g, Expiry: clk.Now().Add(time.Hour)}
		if err := h.store.CreateCode(ctx, code, ac); err != nil {
			t.Fatal(err)
		}
		return code
	}
	// post sends one token request, counting its round trips.
	post := func(form url.Values, withProof bool) (trips, cmds int64, body tokenResponseBody) {
		t.Helper()
		req := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("svc", svcSecret)
		if withProof {
			req.Header.Set(dpop.Header, mustProof(t, signer, http.MethodPost, h.issuer+"/token", "", ""))
		}
		req = req.WithContext(context.WithValue(req.Context(), countKey{}, true))
		rec := httptest.NewRecorder()
		before, beforeCmds := counter.n.Load(), counter.cmds.Load()
		handler.ServeHTTP(rec, req)
		trips, cmds = counter.n.Load()-before, counter.cmds.Load()-beforeCmds
		if rec.Code != http.StatusOK {
			t.Fatalf("POST /token %v = %d %s", form, rec.Code, rec.Body)
		}
		return trips, cmds, decodeTokenBody(t, rec.Body.String())
	}
	redeem := func(code string) url.Values {
		return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {svcRedirect}}
	}
	refresh := func(tok string) url.Values {
		return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok}}
	}
	offline := []string{"openid", "profile", "email", "offline_access"}

	// Warm up: every script loaded, a connection open.
	_, _, tr := post(redeem(newCode(offline...)), true)
	_, _, tr = post(refresh(tr.RefreshToken), true)
	post(refresh(tr.RefreshToken), false)

	_, _, first := post(redeem(newCode(offline...)), false)
	_, _, rotated := post(refresh(first.RefreshToken), false)
	_, _, other := post(redeem(newCode(offline...)), false)
	for _, tc := range []struct {
		name  string
		form  url.Values
		proof bool
		check func(tokenResponseBody) bool
	}{
		{"authorization_code", redeem(newCode("openid", "email")), false, func(r tokenResponseBody) bool { return r.RefreshToken == "" }},
		{"authorization_code+offline_access", redeem(newCode(offline...)), false, func(r tokenResponseBody) bool { return r.RefreshToken != "" }},
		{"authorization_code+offline_access+DPoP", redeem(newCode(offline...)), true, func(r tokenResponseBody) bool { return r.TokenType == "DPoP" && r.RefreshToken != "" }},
		{"refresh_token", refresh(other.RefreshToken), false, func(r tokenResponseBody) bool { return r.RefreshToken != "" }},
		{"refresh_token retried within the window", refresh(first.RefreshToken), false, func(r tokenResponseBody) bool { return r.RefreshToken == rotated.RefreshToken }},
	} {
		n, cmds, got := post(tc.form, tc.proof)
		if !tc.check(got) {
			t.Errorf("%s: response %+v is not the expected one", tc.name, got)
		}
		t.Logf("%s: %d round trip(s), %d command(s)", tc.name, n, cmds)
		if n != 1 || cmds != 1 {
			t.Errorf("%s: %d round trips to Redis with %d commands, want 1 with 1", tc.name, n, cmds)
		}
	}
	// A refresh with a DPoP proof (of a family not bound: svc is
	// confidential).
	_, _, fam := post(redeem(newCode(offline...)), false)
	if n, cmds, _ := post(refresh(fam.RefreshToken), true); n != 1 || cmds != 1 {
		t.Errorf("refresh_token+DPoP: %d round trips to Redis with %d commands, want 1 with 1", n, cmds)
	} else {
		t.Logf("refresh_token+DPoP: %d round trip(s), %d command(s)", n, cmds)
	}
}

type tokenResponseBody struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
}

func decodeTokenBody(t *testing.T, body string) tokenResponseBody {
	t.Helper()
	var r tokenResponseBody
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("token response %q: %v", body, err)
	}
	return r
}
