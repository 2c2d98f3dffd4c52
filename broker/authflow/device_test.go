package authflow

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime/runtimetest"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/templates"
)

func TestNormalizeUserCode(t *testing.T) {
	for in, want := range map[string]string{
		"BCDF-GHJK":                           "BCDFGHJK",
		"bcdf-ghjk":                           "BCDFGHJK",
		" bcdf ghjk ":                         "BCDFGHJK",
		"b-c-d-f-g-h-j-k":                     "BCDFGHJK",
		"BcDfGhJk":                            "BCDFGHJK",
		"\tBCDF-GHJK":                         "BCDFGHJK",
		"":                                    "",
		"BCDF-GHJ":                            "",
		"BCDF-GHJKL":                          "",
		"ABCD-EFGH":                           "", // vowels are not in the alphabet
		"BCDF-GHJ1":                           "",
		"BCDF_GHJK":                           "",
		"bcdf-ghj\u017f":                      "", // long s, which upper-cases to S in Unicode
		"ＢCDF-GHJK":                           "", // fullwidth B
		strings.Repeat("-", 100) + "BCDFGHJK": "",
	} {
		got, ok := normalizeUserCode(in)
		if got != want || ok != (want != "") {
			t.Errorf("normalizeUserCode(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestDeviceLimiter(t *testing.T) {
	clk := runtimetest.NewClock(time.Unix(1_700_000_000, 0))
	l := newDeviceLimiter(clk.Now, config.RateLimit{Burst: 3, Every: time.Minute})
	// One browser from many addresses: its own budget.
	for i := range 3 {
		if l.reserve("browser-1", "192.0.2."+string(rune('1'+i))) == nil {
			t.Fatalf("lookup %d refused", i)
		}
	}
	if l.reserve("browser-1", "192.0.2.9") != nil {
		t.Fatal("the browser's fourth lookup was allowed")
	}
	// Without cookies, one address: its own budget; an IPv6 /64 is one.
	for i := range 3 {
		if l.reserve("", "2001:db8::"+string(rune('1'+i))) == nil {
			t.Fatalf("address lookup %d refused", i)
		}
	}
	if l.reserve("fresh-browser", "2001:db8::ffff") != nil {
		t.Fatal("a fresh browser in a spent /64 was allowed")
	}
	// A lookup of a live code gives its tokens back.
	for range 10 {
		a := l.reserve("browser-2", "198.51.100.1")
		if a == nil {
			t.Fatal("lookups that were given back ran out")
		}
		a.cancel()
	}
	// The budget refills.
	clk.Advance(time.Minute)
	if l.reserve("browser-1", "192.0.2.10") == nil {
		t.Fatal("no lookup a minute later")
	}
}

// deviceRecord stores a device record for client app as the device
// authorization endpoint does, and returns its user code.
func (f limitFixture) deviceRecord(t *testing.T, uc string) storage.AuthRequest {
	t.Helper()
	now := f.Clock.Now()
	rec := storage.AuthRequest{ID: storage.DeviceRecordID(uc), ClientID: "app", Scopes: []string{"openid", "email"}, Expiry: now.Add(20 * time.Minute),
		Device: &storage.DeviceState{UserCode: uc, CodeHash: storage.Hash(uc + ".secret"), Interval: 5, CodeExpiry: now.Add(10 * time.Minute)}}
	if err := f.Store.CreateAuthRequest(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestDeviceVerification(t *testing.T) {
	f := newLimitFixture(t)
	ctx := context.Background()
	d := NewDevice(f.flow, config.DefaultDeviceUserCodeAttempts)
	rec := f.deviceRecord(t, "BCDFGHJK")

	// GET prefills, normalized, and looks nothing up.
	if res := d.Page("bcdf ghjk", Browser{}); res.Template != "device.html" || res.Data.(templates.DeviceData).UserCode != "BCDF-GHJK" || res.BrowserID == "" {
		t.Fatalf("Page = %+v", res)
	}
	b := Browser{BrowserID: strings.Repeat("b", 32), RemoteIP: "192.0.2.1"}
	res, err := d.Submit(ctx, f.Runtime, DeviceForm{UserCode: "bcdf-ghjk", RemoteIP: b.RemoteIP}, b)
	if err != nil || res.Template != "device.html" {
		t.Fatalf("lookup = %+v, %v", res, err)
	}
	data := res.Data.(templates.DeviceData)
	if !data.Confirm || data.ClientName != "Example App" || strings.Join(data.Scopes, " ") != "openid email" || data.CSRF == "" {
		t.Fatalf("confirm page = %+v", data)
	}
	// The confirmation token is this browser's.
	other := Browser{BrowserID: strings.Repeat("o", 32)}
	if _, err := d.Submit(ctx, f.Runtime, DeviceForm{UserCode: "BCDFGHJK", Action: "confirm", CSRF: data.CSRF}, other); !errors.Is(err, errDeviceForm) {
		t.Fatalf("confirm from another browser = %v", err)
	}
	if _, err := d.Submit(ctx, f.Runtime, DeviceForm{UserCode: "BCDFGHJK", Action: "steal", CSRF: data.CSRF}, b); err == nil {
		t.Fatal("unknown action accepted")
	}
	res, err = d.Submit(ctx, f.Runtime, DeviceForm{UserCode: "BCDFGHJK", Action: "confirm", CSRF: data.CSRF}, b)
	if err != nil || !strings.HasPrefix(res.Redirect, "/login/local?req=device.") {
		t.Fatalf("confirm = %+v, %v", res, err)
	}
	u, _ := url.Parse(res.Redirect)
	reqID := u.Query().Get("req")
	res, err = f.flow.StartLogin(ctx, f.Runtime, "local", reqID, b)
	if err != nil || res.Template != "password.html" {
		t.Fatalf("StartLogin = %+v, %v", res, err)
	}
	res, err = f.flow.PasswordLogin(ctx, f.Runtime, "local", PasswordForm{RequestID: reqID, CSRF: res.Data.(templates.PasswordData).CSRF,
		Username: "alice", Password: runtimetest.AlicePassword, RemoteIP: b.RemoteIP}, b)
	if err != nil || res.Template != "device_done.html" || !res.Data.(templates.DeviceDoneData).Approved || res.Session == nil || res.Redirect != "" {
		t.Fatalf("finish = %+v, %v", res, err)
	}
	got, err := f.Store.GetAuthRequest(ctx, storage.DeviceResultID("BCDFGHJK"))
	if err != nil || got.Device.Grant == nil || got.Device.Grant.Subject == "" || got.Device.CodeHash != rec.Device.CodeHash || got.Device.Grant.ClientID != "app" {
		t.Fatalf("result record = %+v, %v", got, err)
	}
	// Decided: neither a lookup nor a denial changes it.
	if _, err := d.Submit(ctx, f.Runtime, DeviceForm{UserCode: "BCDFGHJK"}, b); !errors.Is(err, errDeviceUsed) {
		t.Fatalf("lookup after approval = %v", err)
	}
	if err := f.flow.decideDevice(ctx, rec, nil); !errors.Is(err, errDeviceUsed) {
		t.Fatalf("denial after approval = %v", err)
	}
}

// TestDeviceExpiresDuringSignIn: a device code that expires while the
// person signs in records nothing.
func TestDeviceExpiresDuringSignIn(t *testing.T) {
	f := newLimitFixture(t)
	ctx := context.Background()
	d := NewDevice(f.flow, config.DefaultDeviceUserCodeAttempts)
	f.deviceRecord(t, "ZZZZXXXX")
	b := Browser{BrowserID: strings.Repeat("b", 32)}
	csrf := deviceToken(b.BrowserID, "ZZZZXXXX")
	res, err := d.Submit(ctx, f.Runtime, DeviceForm{UserCode: "ZZZZ-XXXX", Action: "confirm", CSRF: csrf}, b)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(res.Redirect)
	reqID := u.Query().Get("req")
	page, err := f.flow.StartLogin(ctx, f.Runtime, "local", reqID, b)
	if err != nil {
		t.Fatal(err)
	}
	f.Clock.Advance(9*time.Minute + 59*time.Second)
	if _, err := f.flow.Chooser(ctx, f.Runtime, reqID, b); err != nil {
		t.Fatalf("the sign-in lives as long as the code: %v", err)
	}
	f.Clock.Advance(2 * time.Second)
	_, err = f.flow.PasswordLogin(ctx, f.Runtime, "local", PasswordForm{RequestID: reqID, CSRF: page.Data.(templates.PasswordData).CSRF,
		Username: "alice", Password: runtimetest.AlicePassword}, b)
	var pe *oauth.PageError
	if !errors.As(err, &pe) {
		t.Fatalf("sign-in after the code expired = %v, want an error page", err)
	}
	if _, err := f.Store.GetAuthRequest(ctx, storage.DeviceResultID("ZZZZXXXX")); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a result was recorded for an expired code: %v", err)
	}
}
