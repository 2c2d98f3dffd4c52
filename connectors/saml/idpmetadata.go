package saml

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/crewjam/saml"

	"github.com/fedbroker/fedbroker/connectors"
)

const (
	// maxMetadataBytes caps a fetched IdP metadata document.
	maxMetadataBytes = 5 << 20
	// metadataFetchTimeout bounds one fetch of idp_metadata_url.
	metadataFetchTimeout = 10 * time.Second
	// metadataRetryAfter is how long a failed fetch is not retried.
	metadataRetryAfter = 30 * time.Second
)

// errNoMetadata is returned while no IdP metadata has ever been loaded.
var errNoMetadata = errors.New("saml: no idp metadata loaded")

// parseIDPMetadata parses an EntityDescriptor, or an EntitiesDescriptor
// holding exactly one IdP, and checks it is usable: an IDPSSODescriptor
// with at least one signing certificate, every RSA key at least 2048 bits.
func parseIDPMetadata(b []byte) (*saml.EntityDescriptor, error) {
	var probe struct{ XMLName xml.Name }
	if err := xml.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("idp metadata is not XML: %w", err)
	}
	var ed *saml.EntityDescriptor
	switch probe.XMLName.Local {
	case "EntityDescriptor":
		ed = new(saml.EntityDescriptor)
		if err := xml.Unmarshal(b, ed); err != nil {
			return nil, fmt.Errorf("idp metadata: %w", err)
		}
	case "EntitiesDescriptor":
		var all saml.EntitiesDescriptor
		if err := xml.Unmarshal(b, &all); err != nil {
			return nil, fmt.Errorf("idp metadata: %w", err)
		}
		for i := range all.EntityDescriptors {
			if len(all.EntityDescriptors[i].IDPSSODescriptors) > 0 {
				if ed != nil {
					return nil, errors.New("idp metadata: EntitiesDescriptor holds more than one IdP")
				}
				ed = &all.EntityDescriptors[i]
			}
		}
		if ed == nil {
			return nil, errors.New("idp metadata: EntitiesDescriptor holds no IdP")
		}
		// The enclosing element's validity bounds the entity's
		// (saml-metadata-2.0-os §2.3.1).
		if vu := all.ValidUntil; vu != nil && !vu.IsZero() && (ed.ValidUntil.IsZero() || vu.Before(ed.ValidUntil)) {
			ed.ValidUntil = *vu
		}
		if cd := all.CacheDuration; cd != nil && *cd > 0 && (ed.CacheDuration <= 0 || *cd < ed.CacheDuration) {
			ed.CacheDuration = *cd
		}
	default:
		return nil, fmt.Errorf("idp metadata: unexpected root element %q", probe.XMLName.Local)
	}
	if ed.EntityID == "" {
		return nil, errors.New("idp metadata: entityID is empty")
	}
	if len(ed.IDPSSODescriptors) == 0 {
		return nil, errors.New("idp metadata: no IDPSSODescriptor")
	}
	n := 0
	for _, d := range ed.IDPSSODescriptors {
		for _, kd := range d.KeyDescriptors {
			if kd.Use != "" && kd.Use != "signing" {
				continue
			}
			for _, xc := range kd.KeyInfo.X509Data.X509Certificates {
				der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(xc.Data), ""))
				if err != nil {
					return nil, fmt.Errorf("idp metadata: signing certificate: %w", err)
				}
				cert, err := x509.ParseCertificate(der)
				if err != nil {
					return nil, fmt.Errorf("idp metadata: signing certificate: %w", err)
				}
				if pub, ok := cert.PublicKey.(*rsa.PublicKey); ok && pub.N.BitLen() < minRSAKeyBits {
					return nil, fmt.Errorf("idp metadata: signing key has %d bits, need at least %d", pub.N.BitLen(), minRSAKeyBits)
				}
				n++
			}
		}
	}
	if n == 0 {
		return nil, errors.New("idp metadata: no signing certificate")
	}
	return ed, nil
}

// metadataExpiry is when ed stops being usable: the earliest validUntil of
// the entity (narrowed by its EntitiesDescriptor) and of its
// IDPSSODescriptors; zero when none is set.
func metadataExpiry(ed *saml.EntityDescriptor) time.Time {
	exp := ed.ValidUntil
	for _, d := range ed.IDPSSODescriptors {
		if vu := d.ValidUntil; vu != nil && !vu.IsZero() && (exp.IsZero() || vu.Before(exp)) {
			exp = *vu
		}
	}
	return exp
}

// metadataCacheDuration is the shortest cacheDuration of ed and its
// IDPSSODescriptors; zero when none is set.
func metadataCacheDuration(ed *saml.EntityDescriptor) time.Duration {
	cd := ed.CacheDuration
	for _, d := range ed.IDPSSODescriptors {
		if d.CacheDuration > 0 && (cd <= 0 || d.CacheDuration < cd) {
			cd = d.CacheDuration
		}
	}
	return max(cd, 0)
}

// errExpired says that metadata whose validUntil has passed is not used
// (saml-metadata-2.0-os §4.3.1 says it must not be relied on).
func errExpired(exp time.Time) error {
	return fmt.Errorf("idp metadata expired at %s (its validUntil); it is not used", exp.UTC().Format(time.RFC3339))
}

// checkNotExpired refuses metadata whose validUntil is not after now.
func checkNotExpired(ed *saml.EntityDescriptor, now time.Time) error {
	if exp := metadataExpiry(ed); !exp.IsZero() && !now.Before(exp) {
		return errExpired(exp)
	}
	return nil
}

// metadataSource holds the IdP metadata: loaded once from a file or inline
// XML, or fetched from a URL and refreshed in the background when due (see
// due), keeping the last good copy when a refresh fails. Metadata whose
// validUntil has passed is never returned: a URL is then fetched at once,
// and static metadata fails every sign-in until it is replaced.
type metadataSource struct {
	url     string // empty for static metadata
	client  *http.Client
	refresh time.Duration
	timeout time.Duration // of one fetch; metadataFetchTimeout when zero
	now     func() time.Time
	logger  *slog.Logger
	// trust, when set, requires every fetched copy to be signed by it.
	trust *metadataTrust

	mu          sync.Mutex
	current     *saml.EntityDescriptor
	fetchedAt   time.Time
	expires     time.Time     // metadataExpiry(current); zero: none
	cacheFor    time.Duration // metadataCacheDuration(current); zero: none
	lastAttempt time.Time
	lastErr     error
	refreshing  bool
}

// set makes ed the current copy, loaded now. The caller holds m.mu.
func (m *metadataSource) set(ed *saml.EntityDescriptor, now time.Time) {
	m.current, m.fetchedAt, m.lastErr = ed, now, nil
	m.expires, m.cacheFor = metadataExpiry(ed), metadataCacheDuration(ed)
}

// due is when the current copy should be fetched again: after refresh,
// after its cacheDuration (at least minMetadataRefresh), and ahead of its
// validUntil by refresh or half its remaining life, whichever is shorter.
// The caller holds m.mu.
func (m *metadataSource) due() time.Time {
	due := m.fetchedAt.Add(m.refresh)
	if m.cacheFor > 0 {
		if d := m.fetchedAt.Add(max(m.cacheFor, minMetadataRefresh)); d.Before(due) {
			due = d
		}
	}
	if !m.expires.IsZero() {
		lead := min(m.refresh, m.expires.Sub(m.fetchedAt)/2)
		if d := m.expires.Add(-lead); d.Before(due) {
			due = d
		}
	}
	return due
}

// get returns the current metadata. With a URL it fetches synchronously
// when none was ever loaded or the copy has expired (at most once per
// metadataRetryAfter), and starts a background refresh when the copy is
// due.
func (m *metadataSource) get(ctx context.Context) (*saml.EntityDescriptor, error) {
	m.mu.Lock()
	now := m.now()
	cur := m.current
	expired := cur != nil && !m.expires.IsZero() && !now.Before(m.expires)
	canTry := m.url != "" && !m.refreshing && now.Sub(m.lastAttempt) >= metadataRetryAfter
	if cur != nil && !expired {
		if m.url != "" && !now.Before(m.due()) && canTry {
			m.refreshing = true
			m.lastAttempt = now
			go func() {
				_ = m.load(context.WithoutCancel(ctx))
			}()
		}
		m.mu.Unlock()
		return cur, nil
	}
	if !canTry {
		err := m.lastErr
		exp := m.expires
		m.mu.Unlock()
		switch {
		case expired && m.url == "":
			return nil, fmt.Errorf("saml: %w; replace the idp metadata", errExpired(exp))
		case expired && err != nil:
			return nil, fmt.Errorf("saml: %w, and fetching it again failed: %w", errExpired(exp), err)
		case expired:
			return nil, fmt.Errorf("saml: %w; fetching it again", errExpired(exp))
		case err == nil:
			err = errNoMetadata
		}
		return nil, err
	}
	m.refreshing = true
	m.lastAttempt = now
	m.mu.Unlock()
	if err := m.load(ctx); err != nil {
		if expired {
			return nil, fmt.Errorf("saml: %w, and fetching it again failed: %w", errExpired(m.expiry()), err)
		}
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.current, nil
}

// expiry returns the current copy's validUntil.
func (m *metadataSource) expiry() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.expires
}

// warnings says what an operator should know: a failing refresh, or a copy
// that has expired.
func (m *metadataSource) warnings() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	if m.current != nil && !m.expires.IsZero() && !m.now().Before(m.expires) {
		out = append(out, errExpired(m.expires).Error())
	}
	if m.lastErr != nil {
		if m.current != nil {
			out = append(out, fmt.Sprintf("idp metadata refresh failed (using the copy fetched at %s): %v", m.fetchedAt.UTC().Format(time.RFC3339), m.lastErr))
		} else {
			out = append(out, fmt.Sprintf("idp metadata could not be loaded: %v", m.lastErr))
		}
	}
	return out
}

// load fetches and parses the metadata URL and, on success, replaces the
// current copy. On failure the current copy is kept. The caller must have
// set m.refreshing.
func (m *metadataSource) load(ctx context.Context) error {
	ed, err := m.fetch(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.refreshing = false
	if err != nil {
		m.lastErr = err
		if m.logger != nil {
			m.logger.Warn("saml: idp metadata refresh failed; keeping the last good copy until its validUntil", "url", m.url, "err", err)
		}
		return err
	}
	m.set(ed, m.now())
	return nil
}

func (m *metadataSource) fetch(ctx context.Context) (*saml.EntityDescriptor, error) {
	timeout := m.timeout
	if timeout == 0 {
		timeout = metadataFetchTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.url, nil)
	if err != nil {
		return nil, fmt.Errorf("saml: fetch idp metadata: %w", err)
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("saml: fetch idp metadata: %w: %w", connectors.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("saml: fetch idp metadata: %w: status %d", connectors.ErrUnavailable, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataBytes+1))
	if err != nil {
		return nil, fmt.Errorf("saml: fetch idp metadata: %w: %w", connectors.ErrUnavailable, err)
	}
	if len(body) > maxMetadataBytes {
		return nil, fmt.Errorf("saml: fetch idp metadata: larger than %d bytes", maxMetadataBytes)
	}
	ed, err := readIDPMetadata(body, m.trust, m.now())
	if err != nil {
		return nil, fmt.Errorf("saml: %w", err)
	}
	if err := checkNotExpired(ed, m.now()); err != nil {
		return nil, fmt.Errorf("saml: fetched %w", err)
	}
	return ed, nil
}
