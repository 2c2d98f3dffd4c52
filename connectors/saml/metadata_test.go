package saml

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crewjam/saml"

	"github.com/fedbroker/fedbroker/connectors"
)

func TestSPMetadata(t *testing.T) {
	certFile, keyFile := writeKeyPair(t, spKey())
	f := newFixture(t, Config{SPCertificateFile: certFile, SPKeyFile: keyFile})
	ct, body, err := f.conn.Metadata(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if ct != "application/samlmetadata+xml" {
		t.Errorf("content type = %q", ct)
	}
	var ed saml.EntityDescriptor
	if err := xml.Unmarshal(body, &ed); err != nil {
		t.Fatalf("metadata does not parse: %v\n%s", err, body)
	}
	if ed.EntityID != testEntity {
		t.Errorf("entityID = %q, want %q", ed.EntityID, testEntity)
	}
	if len(ed.SPSSODescriptors) != 1 {
		t.Fatalf("SPSSODescriptors = %d, want 1", len(ed.SPSSODescriptors))
	}
	sp := ed.SPSSODescriptors[0]
	if len(sp.AssertionConsumerServices) != 1 || sp.AssertionConsumerServices[0].Location != testACS || sp.AssertionConsumerServices[0].Binding != saml.HTTPPostBinding {
		t.Errorf("AssertionConsumerServices = %+v, want one HTTP-POST at %s", sp.AssertionConsumerServices, testACS)
	}
	uses := map[string]bool{}
	wantCert := base64.StdEncoding.EncodeToString(spKey().cert.Raw)
	for _, kd := range sp.KeyDescriptors {
		for _, c := range kd.KeyInfo.X509Data.X509Certificates {
			if strings.Join(strings.Fields(c.Data), "") == wantCert {
				uses[kd.Use] = true
			}
		}
	}
	if !uses["signing"] || !uses["encryption"] {
		t.Errorf("key descriptors with the SP certificate: %v, want signing and encryption", uses)
	}
	if sp.AuthnRequestsSigned == nil || !*sp.AuthnRequestsSigned || sp.WantAssertionsSigned == nil || !*sp.WantAssertionsSigned {
		t.Errorf("AuthnRequestsSigned/WantAssertionsSigned not both true")
	}

	// Without a key pair: no certificates, unsigned requests.
	g := newFixture(t, Config{})
	_, body, err = g.conn.Metadata(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(body, []byte("X509Certificate")) {
		t.Errorf("metadata without an SP key pair carries a certificate:\n%s", body)
	}
}

func TestLoginRequest(t *testing.T) {
	certFile, keyFile := writeKeyPair(t, spKey())
	t.Run("redirect", func(t *testing.T) {
		f := newFixture(t, Config{SPCertificateFile: certFile, SPKeyFile: keyFile, NameIDFormat: "persistent"})
		lr, raw, err := f.conn.LoginRequest(context.Background(), connectors.Scopes{}, testACS, "state-1")
		if err != nil {
			t.Fatal(err)
		}
		if lr.PostURL != "" || lr.Fields != nil {
			t.Errorf("LoginRequest() = %+v, want a redirect only", lr)
		}
		u, err := url.Parse(lr.RedirectURL)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		if u.Host != "idp.test" || q.Get("RelayState") != "state-1" || q.Get("Signature") == "" || q.Get("SigAlg") != "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256" {
			t.Errorf("redirect URL = %s, want idp.test with RelayState, RSA-SHA256 Signature", lr.RedirectURL)
		}
		compressed, err := base64.StdEncoding.DecodeString(q.Get("SAMLRequest"))
		if err != nil {
			t.Fatal(err)
		}
		xmlReq, err := io.ReadAll(flate.NewReader(bytes.NewReader(compressed)))
		if err != nil {
			t.Fatal(err)
		}
		var req saml.AuthnRequest
		if err := xml.Unmarshal(xmlReq, &req); err != nil {
			t.Fatal(err)
		}
		st, _ := decodeConnState(raw)
		if req.ID != st.RequestID || req.AssertionConsumerServiceURL != testACS || req.Issuer.Value != testEntity ||
			req.NameIDPolicy == nil || *req.NameIDPolicy.Format != string(saml.PersistentNameIDFormat) {
			t.Errorf("AuthnRequest = %s, connState = %+v", xmlReq, st)
		}
	})
	t.Run("post", func(t *testing.T) {
		f := newFixture(t, Config{Binding: BindingPOST, SPCertificateFile: certFile, SPKeyFile: keyFile})
		lr, _, err := f.conn.LoginRequest(context.Background(), connectors.Scopes{}, testACS, "state-1")
		if err != nil {
			t.Fatal(err)
		}
		if lr.RedirectURL != "" || lr.PostURL != "https://idp.test/sso" || lr.Fields["RelayState"] != "state-1" {
			t.Fatalf("LoginRequest() = %+v, want a post to https://idp.test/sso", lr)
		}
		xmlReq, _ := base64.StdEncoding.DecodeString(lr.Fields["SAMLRequest"])
		if !bytes.Contains(xmlReq, []byte("rsa-sha256")) {
			t.Errorf("posted AuthnRequest is not signed with RSA-SHA256: %s", xmlReq)
		}
	})
	t.Run("wrong callback", func(t *testing.T) {
		f := newFixture(t, Config{})
		if _, _, err := f.conn.LoginRequest(context.Background(), connectors.Scopes{}, "https://elsewhere.test/acs", "s"); err == nil {
			t.Error("LoginRequest() with another callback URL succeeded")
		}
	})
}

// metadataServer serves IdP metadata that a test can change or break.
type metadataServer struct {
	mu     sync.Mutex
	body   string
	status int
	hits   int
	srv    *httptest.Server
}

func newMetadataServer(t *testing.T, body string) *metadataServer {
	m := &metadataServer{body: body, status: http.StatusOK}
	m.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.hits++
		w.WriteHeader(m.status)
		_, _ = io.WriteString(w, m.body)
	}))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *metadataServer) set(body string, status int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.body, m.status = body, status
}

// waitRefreshed waits for a background refresh to finish.
func waitRefreshed(t *testing.T, src *metadataSource) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		src.mu.Lock()
		busy := src.refreshing
		src.mu.Unlock()
		if !busy {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("metadata refresh did not finish")
}

func signingCertOf(t *testing.T, ed *saml.EntityDescriptor) string {
	t.Helper()
	return strings.Join(strings.Fields(ed.IDPSSODescriptors[0].KeyDescriptors[0].KeyInfo.X509Data.X509Certificates[0].Data), "")
}

func TestIDPMetadataURLRefresh(t *testing.T) {
	first, second := idpMetadataXML(t, idpKey()), idpMetadataXML(t, rolloverKey())
	ms := newMetadataServer(t, first)
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	cfg := Config{IDPMetadataURL: ms.srv.URL, MetadataRefresh: time.Hour}
	impl, err := cfg.Open(context.Background(), testID, connectors.Options{HTTPClient: ms.srv.Client(), CallbackURL: testACS, BaseURL: testBaseURL, Now: clock, ReplayCache: &memReplay{}})
	if err != nil {
		t.Fatal(err)
	}
	src := impl.(*Connector).idp
	ctx := context.Background()
	ed, err := src.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	firstCert := signingCertOf(t, ed)

	// Fresh: no fetch.
	ms.set(second, http.StatusOK)
	if ed, _ = src.get(ctx); signingCertOf(t, ed) != firstCert {
		t.Error("metadata changed before the refresh interval")
	}

	// Stale, refresh fails: the last good copy stays.
	ms.set("oops", http.StatusInternalServerError)
	advance(2 * time.Hour)
	if ed, err = src.get(ctx); err != nil || signingCertOf(t, ed) != firstCert {
		t.Fatalf("get() during refresh = %v, want the last good copy", err)
	}
	waitRefreshed(t, src)
	if ed, err = src.get(ctx); err != nil || signingCertOf(t, ed) != firstCert {
		t.Fatalf("get() after a failed refresh = %v, want the last good copy", err)
	}
	waitRefreshed(t, src)

	// A bad document is also not taken.
	ms.set("<EntityDescriptor/>", http.StatusOK)
	advance(time.Minute)
	_, _ = src.get(ctx)
	waitRefreshed(t, src)
	if ed, _ = src.get(ctx); signingCertOf(t, ed) != firstCert {
		t.Fatal("invalid metadata replaced the last good copy")
	}
	waitRefreshed(t, src)

	// Refresh succeeds: the new copy is used.
	ms.set(second, http.StatusOK)
	advance(time.Minute)
	_, _ = src.get(ctx)
	waitRefreshed(t, src)
	if ed, _ = src.get(ctx); signingCertOf(t, ed) == firstCert {
		t.Fatal("metadata not refreshed")
	}
}

func TestIDPMetadataURLUnavailableAtOpen(t *testing.T) {
	ms := newMetadataServer(t, "down")
	ms.set("down", http.StatusServiceUnavailable)
	now := time.Now()
	cfg := Config{IDPMetadataURL: ms.srv.URL}
	impl, err := cfg.Open(context.Background(), testID, connectors.Options{HTTPClient: ms.srv.Client(), CallbackURL: testACS, BaseURL: testBaseURL, Now: func() time.Time { return now }, ReplayCache: &memReplay{}})
	if err != nil {
		t.Fatalf("Open() with the IdP down error = %v, want a connector that retries", err)
	}
	conn := impl.(*Connector)
	_, _, err = conn.LoginRequest(context.Background(), connectors.Scopes{}, testACS, "s")
	wantCode(t, err, "upstream_error")
	if !errorsIsUnavailable(err) {
		t.Errorf("LoginRequest() error = %v, want connectors.ErrUnavailable", err)
	}

	ms.set(idpMetadataXML(t, idpKey()), http.StatusOK)
	now = now.Add(time.Minute)
	if _, _, err := conn.LoginRequest(context.Background(), connectors.Scopes{}, testACS, "s"); err != nil {
		t.Fatalf("LoginRequest() once the IdP is back: %v", err)
	}
}

func TestIDPMetadataFetchTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	src := &metadataSource{url: srv.URL, client: srv.Client(), refresh: time.Hour, timeout: 50 * time.Millisecond, now: time.Now}
	start := time.Now()
	if _, err := src.get(context.Background()); err == nil {
		t.Fatal("get() from a hanging server succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("get() took %s, want the fetch timeout", d)
	}
}

func errorsIsUnavailable(err error) bool { return errors.Is(err, connectors.ErrUnavailable) }
