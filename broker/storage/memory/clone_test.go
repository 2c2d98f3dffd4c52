package memory

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// viaJSONCode is what a store keeping codes as JSON returns.
func viaJSONCode(t *testing.T, c storage.AuthCode) storage.AuthCode {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var out storage.AuthCode
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

type claimStruct struct {
	A string `json:"a"`
	B []int  `json:"b"`
}

// TestCloneIsAJSONRoundTrip: the copies the store keeps and hands out are
// what a JSON round trip gives (the other stores' behaviour), and share
// nothing with the caller's values.
func TestCloneIsAJSONRoundTrip(t *testing.T) {
	now := time.Now() // with a monotonic reading
	claims := map[string]any{
		"s": "x", "b": true, "n": nil, "f": 1.5, "i": 3, "i64": int64(1 << 60), "u": uint8(7),
		"list": []any{"a", 2, []string{"c"}}, "strs": []string{"eng", "ops"}, "empty": []string{},
		"obj": map[string]any{"k": []any{map[string]any{"deep": 1}}}, "struct": claimStruct{"a", []int{1}},
		"strmap": map[string]string{"x": "y"}, "num": json.Number("12"), "bytes": []byte("hi"), "time": now,
	}
	c := storage.AuthCode{
		ClientID: "app", RedirectURI: "https://app/cb", FamilyID: "fam", Expiry: now.Add(time.Minute), Created: now,
		Grant: storage.Grant{
			ClientID: "app", Subject: "sub", Scopes: []string{}, AuthTime: now, AMR: []string{},
			ConnectorData: []byte{}, IDTokenClaims: claims, AccessTokenClaims: map[string]any{},
			FamilyRef: "not stored", RefreshUntil: now.Add(time.Hour),
		},
	}
	got, err := cloneCode(c)
	if err != nil {
		t.Fatal(err)
	}
	want := viaJSONCode(t, c)
	if !reflect.DeepEqual(mustJSON(t, got), mustJSON(t, want)) {
		t.Fatalf("clone:\n%s\nJSON round trip:\n%s", mustJSON(t, got), mustJSON(t, want))
	}
	for _, k := range []string{"i", "i64", "u", "list", "strs", "obj", "struct", "strmap", "num", "bytes", "time"} {
		if g, w := reflect.TypeOf(got.Grant.IDTokenClaims[k]), reflect.TypeOf(want.Grant.IDTokenClaims[k]); g != w {
			t.Errorf("claim %s: clone has %v, JSON %v", k, g, w)
		}
	}
	if !reflect.DeepEqual(got.Grant.IDTokenClaims, want.Grant.IDTokenClaims) {
		t.Errorf("claims: clone %#v, JSON %#v", got.Grant.IDTokenClaims, want.Grant.IDTokenClaims)
	}
	if got.Grant.AMR != nil || got.Grant.ConnectorData != nil || got.Grant.AccessTokenClaims != nil || got.Grant.FamilyRef != "" {
		t.Errorf("omitempty fields kept: %+v", got.Grant)
	}
	if got.Grant.Scopes == nil {
		t.Error("empty scopes became nil; JSON keeps []")
	}
	if got.Expiry != got.Expiry.Round(0) || !got.Expiry.Equal(c.Expiry) {
		t.Errorf("expiry %v kept a monotonic reading or changed", got.Expiry)
	}
	// Nothing is shared: changing the copy leaves the original alone.
	got.Grant.IDTokenClaims["obj"].(map[string]any)["k"].([]any)[0].(map[string]any)["deep"] = "changed"
	if c.Grant.IDTokenClaims["obj"].(map[string]any)["k"].([]any)[0].(map[string]any)["deep"] != 1 {
		t.Error("the clone shares a nested map with the original")
	}
	// What JSON refuses, the clone refuses.
	c.Grant.IDTokenClaims = map[string]any{"nan": math.NaN()}
	if _, err := cloneCode(c); err == nil {
		t.Error("cloneCode of a NaN claim: nil error, want the JSON encoder's")
	}
	c.Grant.IDTokenClaims = map[string]any{"ch": make(chan int)}
	if _, err := cloneCode(c); err == nil {
		t.Error("cloneCode of a channel claim: nil error, want the JSON encoder's")
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestStoredCodeIsNotShared: changing the code given to CreateCode, or
// the one RedeemCode returned, changes nothing stored.
func TestStoredCodeIsNotShared(t *testing.T) {
	s := New()
	ctx := t.Context()
	now := time.Now()
	c := storage.AuthCode{ClientID: "app", FamilyID: "fam", Expiry: now.Add(time.Minute),
		Grant: storage.Grant{ClientID: "app", Subject: "sub", Scopes: []string{"openid"},
			IDTokenClaims: map[string]any{"groups": []any{"eng"}}}}
	if err := s.CreateCode(ctx, "code", c); err != nil {
		t.Fatal(err)
	}
	c.Grant.Scopes[0] = "admin"
	c.Grant.IDTokenClaims["groups"].([]any)[0] = "root"
	r, err := s.RedeemCode(ctx, "code", storage.Redemption{Now: now, FamilyID: "fam"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Code.Grant.Scopes[0] != "openid" || r.Code.Grant.IDTokenClaims["groups"].([]any)[0] != "eng" {
		t.Fatalf("the stored code changed with the caller's: %+v", r.Code.Grant)
	}
	r.Code.Grant.Scopes[0] = "admin"
	if _, err := s.RedeemCode(ctx, "code", storage.Redemption{Now: now, FamilyID: "fam"}); err == nil {
		t.Fatal("second redemption succeeded")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.codes {
		if e.val.Grant.Scopes[0] != "openid" {
			t.Fatalf("the stored code changed with the redeemed copy: %v", e.val.Grant.Scopes)
		}
	}
}
