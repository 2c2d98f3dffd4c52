package saml

import (
	"bytes"
	"compress/flate"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/connectors"
)

func TestReplay(t *testing.T) {
	f := newFixture(t, Config{})
	st, raw := f.start(t, "state-1")
	resp := f.build(t, defaultSpec(st.RequestID))
	if _, err := f.post(t, raw, resp, "state-1"); err != nil {
		t.Fatalf("first HandlePOST() error = %v", err)
	}
	_, err := f.post(t, raw, resp, "state-1")
	wantCode(t, err, CodeReplayed)

	// The same response against a new sign-in in the same browser.
	_, raw2 := f.start(t, "state-2")
	_, err = f.post(t, raw2, resp, "state-2")
	wantCode(t, err, CodeRequestMismatch)

	for k, v := range f.replay.seen {
		if min := f.now.Add(5 * time.Minute); v.Before(min) {
			t.Errorf("replay entry %q kept until %s, want at least %s", k, v, min)
		}
	}
}

func TestReplayCacheFailsClosed(t *testing.T) {
	f := newFixture(t, Config{})
	st, raw := f.start(t, "state-1")
	f.conn.replay = &memReplay{err: errTest}
	if _, err := f.post(t, raw, f.build(t, defaultSpec(st.RequestID)), "state-1"); err == nil {
		t.Fatal("HandlePOST() with a failing replay cache succeeded")
	}
}

func TestUnsolicited(t *testing.T) {
	f := newFixture(t, Config{})
	_, err := f.post(t, nil, f.build(t, defaultSpec("")), "")
	wantCode(t, err, CodeUnsolicited)

	g := newFixture(t, Config{IDPInitiated: &IDPInitiated{ClientID: "app", RedirectURI: "https://app.test/cb"}})
	if _, err := g.post(t, nil, g.build(t, defaultSpec("")), ""); err != nil {
		t.Fatalf("IdP-initiated HandlePOST() with idp_initiated error = %v", err)
	}
	// A response answering some request is not an IdP-initiated one.
	_, err = g.post(t, nil, g.build(t, defaultSpec("id-some-request")), "")
	wantCode(t, err, CodeRequestMismatch)
}

func TestRelayStateMismatch(t *testing.T) {
	f := newFixture(t, Config{})
	st, raw := f.start(t, "state-1")
	_, err := f.post(t, raw, f.build(t, defaultSpec(st.RequestID)), "state-2")
	wantCode(t, err, CodeRequestMismatch)
}

func TestMalformedAndOversized(t *testing.T) {
	var bomb bytes.Buffer
	w, _ := flate.NewWriter(&bomb, flate.BestCompression)
	zeros := make([]byte, 1<<20)
	for range 64 {
		_, _ = w.Write(zeros)
	}
	_ = w.Close()
	bomb64 := base64.StdEncoding.EncodeToString(bomb.Bytes())

	laughs := `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>` +
		`<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">&lol2;</samlp:Response>`

	tests := []struct {
		name string
		form url.Values
		code string
	}{
		{"oversized SAMLResponse", url.Values{"SAMLResponse": {strings.Repeat("QUFB", 200<<10)}}, CodeResponseTooLarge},
		{"deflate bomb as SAMLResponse", url.Values{"SAMLResponse": {bomb64}}, CodeInvalidResponse},
		{"deflate bomb as SAMLRequest", url.Values{"SAMLRequest": {bomb64}}, CodeInvalidResponse},
		{"SAMLRequest beside SAMLResponse", url.Values{"SAMLRequest": {"eA=="}, "SAMLResponse": {"eA=="}}, CodeInvalidResponse},
		{"no SAMLResponse", url.Values{"RelayState": {"state-1"}}, CodeInvalidResponse},
		{"two SAMLResponse", url.Values{"SAMLResponse": {"eA==", "eA=="}}, CodeInvalidResponse},
		{"not base64", url.Values{"SAMLResponse": {"%%%"}}, CodeInvalidResponse},
		{"not XML", url.Values{"SAMLResponse": {base64.StdEncoding.EncodeToString([]byte("hello"))}}, CodeInvalidResponse},
		{"entity expansion", url.Values{"SAMLResponse": {base64.StdEncoding.EncodeToString([]byte(laughs))}}, CodeInvalidResponse},
		{"not a Response", url.Values{"SAMLResponse": {base64.StdEncoding.EncodeToString([]byte(`<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"/>`))}}, CodeInvalidResponse},
		{"artifact", url.Values{"SAMLart": {"AAQAAA=="}}, CodeInvalidResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Config{MaxResponseBytes: 64 << 10})
			_, raw := f.start(t, "state-1")
			tt.form.Set("RelayState", "state-1")
			_, err := f.postForm(t, raw, tt.form)
			wantCode(t, err, tt.code)
		})
	}

	t.Run("oversized body before parsing", func(t *testing.T) {
		f := newFixture(t, Config{MaxResponseBytes: 64 << 10})
		_, raw := f.start(t, "state-1")
		body := "RelayState=state-1&SAMLResponse=" + strings.Repeat("A", 1<<20)
		r := newPost(body)
		_, err := f.conn.HandlePOST(t.Context(), scopes(), raw, r)
		wantCode(t, err, CodeResponseTooLarge)
	})
	t.Run("oversized decoded response in a parsed form", func(t *testing.T) {
		f := newFixture(t, Config{MaxResponseBytes: 64 << 10})
		_, raw := f.start(t, "state-1")
		r := newPost(url.Values{"RelayState": {"state-1"}, "SAMLResponse": {base64.StdEncoding.EncodeToString(make([]byte, 65<<10))}}.Encode())
		if err := r.ParseForm(); err != nil {
			t.Fatal(err)
		}
		_, err := f.conn.HandlePOST(t.Context(), scopes(), raw, r)
		wantCode(t, err, CodeResponseTooLarge)
	})
	t.Run("GET", func(t *testing.T) {
		f := newFixture(t, Config{})
		_, raw := f.start(t, "state-1")
		r := newPost("")
		r.Method = "GET"
		_, err := f.conn.HandlePOST(t.Context(), scopes(), raw, r)
		wantCode(t, err, CodeInvalidResponse)
	})
}

var errTest = errors.New("test failure")

func newPost(body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, testACS, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}

func scopes() connectors.Scopes { return connectors.Scopes{} }
