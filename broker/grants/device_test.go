package grants_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/grants"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/storage"
)

// deviceClients lets app (public) and svc (confidential) use the device
// grant.
func deviceClients(c *config.Config) {
	for i := range c.Clients {
		c.Clients[i].GrantTypes = append(c.Clients[i].GrantTypes, config.GrantDeviceCode)
	}
}

var deviceSettings = grants.DeviceSettings{Lifetime: 10 * time.Minute, Interval: 5 * time.Second, VerificationURI: "https://sso.example.com/device"}

// approve records the person's approval of user code uc, as the
// verification page does.
func (f fixture) approve(t *testing.T, uc string, denied bool) {
	t.Helper()
	ctx := context.Background()
	rec, err := f.Store.GetAuthRequest(ctx, storage.DeviceRecordID(uc))
	if err != nil {
		t.Fatal(err)
	}
	res := storage.AuthRequest{ID: storage.DeviceResultID(uc), ClientID: rec.ClientID, Scopes: rec.Scopes, Expiry: rec.Expiry,
		Device: &storage.DeviceState{UserCode: uc, CodeHash: rec.Device.CodeHash, Denied: denied}}
	if !denied {
		res.Device.Grant = &storage.Grant{ClientID: rec.ClientID, Subject: "sub-alice", Scopes: rec.Scopes, ConnectorID: "local", AuthTime: f.Clock.Now()}
	}
	if err := f.Store.CreateAuthRequest(ctx, res); err != nil {
		t.Fatal(err)
	}
}

func TestDeviceAuthorize(t *testing.T) {
	f := newFixtureWith(t, "", deviceClients)
	ctx := context.Background()
	app := f.Client(t, "app")
	da, err := f.g.DeviceAuthorize(ctx, f.Runtime, app, "openid offline_access openid", deviceSettings)
	if err != nil {
		t.Fatal(err)
	}
	if len(da.UserCode) != 9 || da.UserCode[4] != '-' {
		t.Errorf("user_code %q is not XXXX-XXXX", da.UserCode)
	}
	for _, r := range strings.ReplaceAll(da.UserCode, "-", "") {
		if !strings.ContainsRune(storage.DeviceUserCodeAlphabet, r) {
			t.Errorf("user_code %q has %q outside the alphabet", da.UserCode, r)
		}
	}
	if len(da.DeviceCode) < 40 || da.ExpiresIn != 600 || da.Interval != 5 {
		t.Errorf("authorization = %+v", da)
	}
	if da.VerificationURI != deviceSettings.VerificationURI || da.VerificationURIComplete != deviceSettings.VerificationURI+"?user_code="+da.UserCode {
		t.Errorf("verification URIs = %q %q", da.VerificationURI, da.VerificationURIComplete)
	}
	rec, err := f.Store.GetAuthRequest(ctx, storage.DeviceRecordID(strings.ReplaceAll(da.UserCode, "-", "")))
	if err != nil || rec.Device == nil || rec.Device.CodeHash != storage.Hash(da.DeviceCode) || strings.Join(rec.Scopes, " ") != "openid offline_access" {
		t.Fatalf("device record = %+v, %v", rec, err)
	}
	if strings.Contains(string(mustJSON(t, rec)), da.DeviceCode) {
		t.Error("the device record holds the device code in clear")
	}
	// Two authorizations never share codes.
	db, _ := f.g.DeviceAuthorize(ctx, f.Runtime, app, "", deviceSettings)
	if db.UserCode == da.UserCode || db.DeviceCode == da.DeviceCode {
		t.Error("two authorizations share a code")
	}

	for _, tc := range []struct {
		name, client, scope, want string
	}{
		{"scope not allowed", "app", "openid admin", oauth.ErrInvalidScope},
		{"scope too long", "app", strings.Repeat("a", 2000), oauth.ErrInvalidScope},
		{"too many scopes", "app", strings.Repeat("openid ", 40), oauth.ErrInvalidScope},
	} {
		if _, err := f.g.DeviceAuthorize(ctx, f.Runtime, f.Client(t, tc.client), tc.scope, deviceSettings); oauthCode(err) != tc.want {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.want)
		}
	}
	// A client without the grant.
	plain := newFixture(t)
	if _, err := plain.g.DeviceAuthorize(ctx, plain.Runtime, plain.Client(t, "app"), "openid", deviceSettings); oauthCode(err) != oauth.ErrUnauthorizedClient {
		t.Errorf("client without the grant: %v", err)
	}
}

func TestDeviceCodeGrant(t *testing.T) {
	f := newFixtureWith(t, "", deviceClients)
	ctx := context.Background()
	svc := f.Client(t, "svc")
	poll := func(dc string) (string, error) {
		resp, err := f.g.Token(ctx, f.Runtime, svc, grants.Request{GrantType: config.GrantDeviceCode, DeviceCode: dc})
		if err == nil && resp.AccessToken == "" {
			t.Fatal("token response without access token")
		}
		return oauthCode(err), err
	}
	start := func(t *testing.T) (dc, uc string) {
		t.Helper()
		da, err := f.g.DeviceAuthorize(ctx, f.Runtime, svc, "openid offline_access", deviceSettings)
		if err != nil {
			t.Fatal(err)
		}
		return da.DeviceCode, strings.ReplaceAll(da.UserCode, "-", "")
	}

	t.Run("approved", func(t *testing.T) {
		dc, uc := start(t)
		if code, _ := poll(dc); code != grants.ErrAuthorizationPending {
			t.Fatalf("first poll = %s", code)
		}
		f.Clock.Advance(5 * time.Second)
		f.approve(t, uc, false)
		resp, err := f.g.Token(ctx, f.Runtime, svc, grants.Request{GrantType: config.GrantDeviceCode, DeviceCode: dc})
		if err != nil || resp.IDToken == "" || resp.RefreshToken == "" {
			t.Fatalf("poll after approval = %+v, %v", resp, err)
		}
		f.Clock.Advance(5 * time.Second)
		if code, _ := poll(dc); code != oauth.ErrInvalidGrant {
			t.Fatalf("second redemption = %s", code)
		}
	})
	t.Run("slow down", func(t *testing.T) {
		dc, _ := start(t)
		if code, _ := poll(dc); code != grants.ErrAuthorizationPending {
			t.Fatalf("first poll = %s", code)
		}
		if code, _ := poll(dc); code != grants.ErrSlowDown {
			t.Fatalf("immediate poll = %s, want slow_down", code)
		}
		// The interval is now 10 s: 5 s later is still too fast.
		f.Clock.Advance(5 * time.Second)
		if code, _ := poll(dc); code != grants.ErrSlowDown {
			t.Fatalf("poll after the old interval = %s, want slow_down", code)
		}
		// That was another slow_down: 15 s now.
		f.Clock.Advance(15 * time.Second)
		if code, _ := poll(dc); code != grants.ErrAuthorizationPending {
			t.Fatalf("poll after the new interval = %s, want pending", code)
		}
		// The interval stays 15 s.
		f.Clock.Advance(10 * time.Second)
		if code, _ := poll(dc); code != grants.ErrSlowDown {
			t.Fatalf("poll 10 s later = %s, want slow_down", code)
		}
	})
	t.Run("denied", func(t *testing.T) {
		dc, uc := start(t)
		f.approve(t, uc, true)
		if code, _ := poll(dc); code != oauth.ErrAccessDenied {
			t.Fatalf("poll after denial = %s", code)
		}
	})
	t.Run("expired", func(t *testing.T) {
		dc, uc := start(t)
		f.approve(t, uc, false)
		f.Clock.Advance(10*time.Minute + time.Second)
		if code, _ := poll(dc); code != grants.ErrExpiredToken {
			t.Fatalf("poll after expiry = %s", code)
		}
	})
	t.Run("another client", func(t *testing.T) {
		dc, uc := start(t)
		f.approve(t, uc, false)
		_, err := f.g.Token(ctx, f.Runtime, f.Client(t, "app"), grants.Request{GrantType: config.GrantDeviceCode, DeviceCode: dc})
		if oauthCode(err) != oauth.ErrInvalidGrant {
			t.Fatalf("another client's poll = %v", err)
		}
		// The rightful client still gets its tokens.
		if code, err := poll(dc); code != "" {
			t.Fatalf("own poll after another client's = %v", err)
		}
	})
	t.Run("malformed", func(t *testing.T) {
		dc, uc := start(t)
		for _, bad := range []string{"", strings.Repeat("x", 300), "nodot", uc, uc + ".", uc + ".wrong", "BCDFGHJK." + strings.SplitN(dc, ".", 2)[1], ".." + dc} {
			code, _ := poll(bad)
			if code != oauth.ErrInvalidGrant && code != oauth.ErrInvalidRequest {
				t.Errorf("device_code %q: %s", bad, code)
			}
		}
	})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDeviceCodeRedeemedOnce: many polls at once after the approval (as
// from several replicas) issue tokens exactly once.
func TestDeviceCodeRedeemedOnce(t *testing.T) {
	f := newFixtureWith(t, "", deviceClients)
	ctx := context.Background()
	svc := f.Client(t, "svc")
	da, err := f.g.DeviceAuthorize(ctx, f.Runtime, svc, "openid", deviceSettings)
	if err != nil {
		t.Fatal(err)
	}
	f.approve(t, strings.ReplaceAll(da.UserCode, "-", ""), false)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		tokens  int
		refused = map[string]int{}
	)
	for range 16 {
		wg.Go(func() {
			_, err := f.g.Token(ctx, f.Runtime, svc, grants.Request{GrantType: config.GrantDeviceCode, DeviceCode: da.DeviceCode})
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				tokens++
			} else {
				refused[oauthCode(err)]++
			}
		})
	}
	wg.Wait()
	if tokens != 1 {
		t.Fatalf("%d polls got tokens (refused: %v), want exactly 1", tokens, refused)
	}
	for code := range refused {
		if code != grants.ErrSlowDown && code != oauth.ErrInvalidGrant {
			t.Errorf("a concurrent poll got %s", code)
		}
	}
}

// TestDeviceCodeDPoP: a poll with a DPoP proof gets a bound access token,
// and the public client's refresh token is bound to the key too.
func TestDeviceCodeDPoP(t *testing.T) {
	f := newFixtureWith(t, "", deviceClients)
	ctx := context.Background()
	da, err := f.g.DeviceAuthorize(ctx, f.Runtime, f.Client(t, "app"), "openid offline_access", deviceSettings)
	if err != nil {
		t.Fatal(err)
	}
	f.approve(t, strings.ReplaceAll(da.UserCode, "-", ""), false)
	key := newSigner(t)
	resp, err := f.token(t, "app", grants.Request{GrantType: config.GrantDeviceCode, DeviceCode: da.DeviceCode, DPoP: proof(t, key, "")})
	if err != nil {
		t.Fatal(err)
	}
	f.wantJKT(t, resp, key.Thumbprint())
	if resp.RefreshToken == "" {
		t.Fatal("no refresh token")
	}
	_, err = f.token(t, "app", grants.Request{GrantType: "refresh_token", RefreshToken: resp.RefreshToken})
	wantCode(t, "refresh without a proof", err, oauth.ErrInvalidDPoPProof)
	next, err := f.token(t, "app", grants.Request{GrantType: "refresh_token", RefreshToken: resp.RefreshToken, DPoP: proof(t, key, "")})
	if err != nil {
		t.Fatalf("refresh with the bound key: %v", err)
	}
	f.wantJKT(t, next, key.Thumbprint())
}
