package saml

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/connectors"
)

// TestIDPMetadataURLLoopbackHTTP: idp_metadata_url may be plain http to a
// loopback host; the connector fetches it and signs in with it.
func TestIDPMetadataURLLoopbackHTTP(t *testing.T) {
	md := idpMetadataXML(t, idpKey())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(md)) }))
	t.Cleanup(srv.Close)
	for _, u := range []string{srv.URL, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)} {
		cfg := Config{IDPMetadataURL: u + "/metadata"}
		impl, err := cfg.Open(context.Background(), testID, connectors.Options{HTTPClient: srv.Client(), CallbackURL: testACS, BaseURL: testBaseURL, ReplayCache: &memReplay{}})
		if err != nil {
			t.Fatalf("Open(%s) error = %v", u, err)
		}
		if _, _, err := impl.(*Connector).LoginRequest(context.Background(), connectors.Scopes{}, testACS, "s"); err != nil {
			t.Errorf("LoginRequest() with metadata from %s error = %v", u, err)
		}
	}
	cfg := Config{IDPMetadataURL: "http://idp.test/metadata"}
	if _, err := cfg.Open(context.Background(), testID, connectors.Options{CallbackURL: testACS, BaseURL: testBaseURL, ReplayCache: &memReplay{}}); err == nil || !strings.Contains(err.Error(), "https") {
		t.Errorf("Open() with http to a remote host error = %v, want one asking for https", err)
	}
}

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func openURL(t *testing.T, ms *metadataServer, clk *clock, refresh time.Duration) *Connector {
	t.Helper()
	cfg := Config{IDPMetadataURL: ms.srv.URL, MetadataRefresh: refresh}
	impl, err := cfg.Open(context.Background(), testID, connectors.Options{HTTPClient: ms.srv.Client(), CallbackURL: testACS, BaseURL: testBaseURL, Now: clk.Now, ReplayCache: &memReplay{}})
	if err != nil {
		t.Fatal(err)
	}
	return impl.(*Connector)
}

func (m *metadataServer) hitCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hits
}

// TestIDPMetadataExpired: metadata past its validUntil is refused when
// fetched, and a copy that expires is no longer used: it is fetched again
// at once, and while that fails sign-ins fail with a clear error.
func TestIDPMetadataExpired(t *testing.T) {
	clk := &clock{now: time.Now()}
	ms := newMetadataServer(t, idpMetadataXMLAt(t, idpKey(), clk.now.Add(-3*time.Hour), time.Hour))
	conn := openURL(t, ms, clk, 24*time.Hour)
	ctx := context.Background()
	_, _, err := conn.LoginRequest(ctx, connectors.Scopes{}, testACS, "s")
	wantCode(t, err, "upstream_error")
	if err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("LoginRequest() with expired metadata error = %v, want one saying it expired", err)
	}
	if w := conn.Warnings(); len(w) != 1 || !strings.Contains(w[0], "expired") {
		t.Errorf("Warnings() = %q, want one saying the metadata expired", w)
	}

	// Valid for 2h from now: taken.
	ms.set(idpMetadataXMLAt(t, idpKey(), clk.Now(), 2*time.Hour), http.StatusOK)
	clk.advance(time.Minute)
	if _, _, err := conn.LoginRequest(ctx, connectors.Scopes{}, testACS, "s"); err != nil {
		t.Fatalf("LoginRequest() with valid metadata error = %v", err)
	}
	if w := conn.Warnings(); len(w) != 0 {
		t.Errorf("Warnings() = %q, want none", w)
	}

	// Past its validUntil with the IdP failing: no sign-in, a clear error.
	ms.set("down", http.StatusServiceUnavailable)
	clk.advance(3 * time.Hour)
	_, _, err = conn.LoginRequest(ctx, connectors.Scopes{}, testACS, "s")
	wantCode(t, err, "upstream_error")
	if err == nil || !strings.Contains(err.Error(), "expired at") || !strings.Contains(err.Error(), "fetching it again failed") {
		t.Fatalf("LoginRequest() with expired metadata and the IdP down error = %v", err)
	}
	waitRefreshed(t, conn.idp)

	// The IdP is back: the next sign-in fetches it at once.
	ms.set(idpMetadataXMLAt(t, idpKey(), clk.Now(), 2*time.Hour), http.StatusOK)
	clk.advance(time.Minute)
	if _, _, err := conn.LoginRequest(ctx, connectors.Scopes{}, testACS, "s"); err != nil {
		t.Fatalf("LoginRequest() once fresh metadata is back error = %v", err)
	}
}

// TestIDPMetadataRefreshHonoursValidity: cacheDuration shorter than
// metadata_refresh brings the refresh forward, and so does an approaching
// validUntil; a failing refresh keeps the last good copy while it is
// valid.
func TestIDPMetadataRefreshHonoursValidity(t *testing.T) {
	clk := &clock{now: time.Now()}
	// cacheDuration and validUntil 10m: due after 5m (half its life).
	ms := newMetadataServer(t, idpMetadataXMLAt(t, idpKey(), clk.now, 10*time.Minute))
	conn := openURL(t, ms, clk, 24*time.Hour)
	ctx := context.Background()
	if _, err := conn.idp.get(ctx); err != nil {
		t.Fatal(err)
	}
	hits := ms.hitCount()
	clk.advance(4 * time.Minute)
	if _, err := conn.idp.get(ctx); err != nil {
		t.Fatal(err)
	}
	waitRefreshed(t, conn.idp)
	if got := ms.hitCount(); got != hits {
		t.Fatalf("fetched %d times before the metadata was due, want %d", got, hits)
	}
	clk.advance(2 * time.Minute)
	ms.set(idpMetadataXMLAt(t, idpKey(), clk.Now(), 10*time.Minute), http.StatusOK)
	if _, err := conn.idp.get(ctx); err != nil {
		t.Fatal(err)
	}
	waitRefreshed(t, conn.idp)
	if got := ms.hitCount(); got != hits+1 {
		t.Fatalf("fetched %d times after the metadata was due, want %d", got, hits+1)
	}

	// A failing refresh: the last good copy (valid 10m from 6m, due at
	// 11m) stays, with a warning.
	ms.set("down", http.StatusInternalServerError)
	clk.advance(6 * time.Minute)
	if _, err := conn.idp.get(ctx); err != nil {
		t.Fatalf("get() during a failing refresh of valid metadata = %v", err)
	}
	waitRefreshed(t, conn.idp)
	if _, err := conn.idp.get(ctx); err != nil {
		t.Fatalf("get() after a failed refresh of valid metadata = %v", err)
	}
	waitRefreshed(t, conn.idp)
	if w := conn.Warnings(); len(w) != 1 || !strings.Contains(w[0], "refresh failed") {
		t.Errorf("Warnings() = %q, want one saying the refresh failed", w)
	}
}

func TestMetadataDue(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name     string
		cacheFor time.Duration
		expires  time.Time
		want     time.Time
	}{
		{"refresh only", 0, time.Time{}, t0.Add(time.Hour)},
		{"shorter cacheDuration", 20 * time.Minute, time.Time{}, t0.Add(20 * time.Minute)},
		{"tiny cacheDuration is floored", time.Second, time.Time{}, t0.Add(minMetadataRefresh)},
		{"longer cacheDuration", 48 * time.Hour, time.Time{}, t0.Add(time.Hour)},
		{"far validUntil", 0, t0.Add(48 * time.Hour), t0.Add(time.Hour)},
		{"validUntil within refresh", 0, t0.Add(90 * time.Minute), t0.Add(45 * time.Minute)},
		{"close validUntil", 0, t0.Add(10 * time.Minute), t0.Add(5 * time.Minute)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := &metadataSource{refresh: time.Hour, fetchedAt: t0, cacheFor: tt.cacheFor, expires: tt.expires}
			if got := m.due(); !got.Equal(tt.want) {
				t.Errorf("due() = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestStaticMetadataExpires: inline metadata that expires after Open
// stops sign-ins with an error that says to replace it.
func TestStaticMetadataExpires(t *testing.T) {
	f := newFixture(t, Config{IDPMetadataXML: idpMetadataXMLAt(t, idpKey(), time.Now(), time.Hour)})
	if _, _, err := f.conn.LoginRequest(context.Background(), connectors.Scopes{}, testACS, "s"); err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(2 * time.Hour)
	_, _, err := f.conn.LoginRequest(context.Background(), connectors.Scopes{}, testACS, "s")
	wantCode(t, err, "upstream_error")
	if err == nil || !strings.Contains(err.Error(), "replace the idp metadata") {
		t.Errorf("LoginRequest() with expired inline metadata error = %v", err)
	}
}

// TestEntitiesDescriptorValidity: the validUntil and cacheDuration of an
// enclosing EntitiesDescriptor bound the entity's.
func TestEntitiesDescriptorValidity(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	ed := idpMetadataXMLAt(t, idpKey(), now, 48*time.Hour)
	doc := `<EntitiesDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" validUntil="` + now.Add(time.Hour).Format(time.RFC3339) + `" cacheDuration="PT10M">` + ed + `</EntitiesDescriptor>`
	got, err := parseIDPMetadata([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if exp := metadataExpiry(got); !exp.Equal(now.Add(time.Hour)) {
		t.Errorf("expiry = %s, want %s", exp, now.Add(time.Hour))
	}
	if cd := metadataCacheDuration(got); cd != 10*time.Minute {
		t.Errorf("cacheDuration = %s, want 10m", cd)
	}
	if err := checkNotExpired(got, now.Add(2*time.Hour)); err == nil {
		t.Error("checkNotExpired() after the EntitiesDescriptor's validUntil succeeded")
	}
}
