package oauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/templates"
)

func newWriter(t *testing.T) *Writer {
	tmpl, err := templates.New()
	if err != nil {
		t.Fatal(err)
	}
	return &Writer{Issuer: "https://broker.test", Templates: tmpl, Log: slog.New(slog.DiscardHandler)}
}

func TestWriteNeverLeaksInternalErrors(t *testing.T) {
	w := newWriter(t)
	internal := fmt.Errorf("dial tcp 10.1.2.3:6379: secret-host: %w", errors.New("boom"))
	for _, machine := range []bool{true, false} {
		rec := httptest.NewRecorder()
		w.Write(rec, httptest.NewRequest(http.MethodPost, "/token", nil), internal, machine)
		if rec.Code != http.StatusInternalServerError {
			t.Errorf("machine=%v: status %d, want 500", machine, rec.Code)
		}
		if body := rec.Body.String(); strings.Contains(body, "secret-host") || strings.Contains(body, "10.1.2.3") || strings.Contains(body, "goroutine") {
			t.Errorf("machine=%v: body leaks the internal error: %s", machine, body)
		}
	}
}

func TestWriteStorageOutage(t *testing.T) {
	w := newWriter(t)
	rec := httptest.NewRecorder()
	down := w.Write(rec, httptest.NewRequest(http.MethodPost, "/token", nil), fmt.Errorf("get: %w", storage.ErrUnavailable), true)
	if !down || rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), ErrTemporarilyUnavailable) {
		t.Fatalf("storage outage = %v %d %v %s", down, rec.Code, rec.Header(), rec.Body)
	}
}

func TestWriteJSONError(t *testing.T) {
	w := newWriter(t)
	rec := httptest.NewRecorder()
	w.Write(rec, httptest.NewRequest(http.MethodPost, "/token", nil), InvalidClient("unknown client"), true)
	if rec.Code != 401 || rec.Header().Get("WWW-Authenticate") == "" || rec.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("invalid_client = %d %v", rec.Code, rec.Header())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
}

func TestWriteRedirectCarriesStateAndIss(t *testing.T) {
	w := newWriter(t)
	rec := httptest.NewRecorder()
	w.Write(rec, httptest.NewRequest(http.MethodGet, "/authorize", nil), &RedirectError{RedirectURI: "https://app.example/cb?x=1", State: "s t", Code: ErrAccessDenied}, false)
	u, err := url.Parse(rec.Header().Get("Location"))
	if rec.Code != http.StatusFound || err != nil {
		t.Fatalf("redirect = %d %v", rec.Code, rec.Header())
	}
	q := u.Query()
	if q.Get("error") != ErrAccessDenied || q.Get("state") != "s t" || q.Get("iss") != "https://broker.test" || q.Get("x") != "1" {
		t.Fatalf("redirect query = %v", q)
	}
}

func TestClientGoneWritesNothing(t *testing.T) {
	w := newWriter(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := httptest.NewRecorder()
	if w.Write(rec, httptest.NewRequest(http.MethodPost, "/token", nil).WithContext(ctx), context.Canceled, true) || rec.Body.Len() != 0 {
		t.Fatalf("cancelled request: wrote %q", rec.Body)
	}
}

func TestPKCE(t *testing.T) {
	v := "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	c := "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM" // RFC 7636 Appendix B
	if !ValidVerifier(v) || !ValidChallenge(c) || !VerifierMatches(v, c) {
		t.Fatal("RFC 7636 Appendix B example does not verify")
	}
	for _, bad := range []string{"", "short", strings.Repeat("a", 129), strings.Repeat("a", 42) + "!"} {
		if ValidVerifier(bad) {
			t.Errorf("ValidVerifier(%q) = true", bad)
		}
	}
	if VerifierMatches(v+"x", c) {
		t.Error("another verifier matches")
	}
}

// TestNoStoreSharesNothingWritable: handlers adding to the headers
// NoStore set on their responses never see each other's values.
func TestNoStoreSharesNothingWritable(t *testing.T) {
	a, b, c := http.Header{}, http.Header{}, http.Header{}
	NoStore(a)
	NoStore(b)
	a.Add("Cache-Control", "private")
	b.Add("Cache-Control", "public")
	a.Add("Pragma", "a")
	b.Add("Pragma", "b")
	NoStore(c)
	for _, tc := range []struct {
		h         http.Header
		cc, pragm []string
	}{
		{a, []string{"no-store", "private"}, []string{"no-cache", "a"}},
		{b, []string{"no-store", "public"}, []string{"no-cache", "b"}},
		{c, []string{"no-store"}, []string{"no-cache"}},
	} {
		if got := tc.h.Values("Cache-Control"); !slices.Equal(got, tc.cc) {
			t.Errorf("Cache-Control = %q, want %q", got, tc.cc)
		}
		if got := tc.h.Values("Pragma"); !slices.Equal(got, tc.pragm) {
			t.Errorf("Pragma = %q, want %q", got, tc.pragm)
		}
	}
}
