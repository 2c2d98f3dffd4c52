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

// metadataSource holds the IdP metadata: loaded once from a file or inline
// XML, or fetched from a URL and refreshed in the background when older
// than refresh, keeping the last good copy when a refresh fails.
type metadataSource struct {
	url     string // empty for static metadata
	client  *http.Client
	refresh time.Duration
	timeout time.Duration // of one fetch; metadataFetchTimeout when zero
	now     func() time.Time
	logger  *slog.Logger

	mu          sync.Mutex
	current     *saml.EntityDescriptor
	fetchedAt   time.Time
	lastAttempt time.Time
	lastErr     error
	refreshing  bool
}

// get returns the current metadata. With a URL it fetches synchronously
// when none was ever loaded (at most once per metadataRetryAfter), and
// starts a background refresh when the copy is stale.
func (m *metadataSource) get(ctx context.Context) (*saml.EntityDescriptor, error) {
	m.mu.Lock()
	cur, stale := m.current, m.url != "" && m.now().Sub(m.fetchedAt) >= m.refresh
	canTry := !m.refreshing && m.now().Sub(m.lastAttempt) >= metadataRetryAfter
	if cur != nil {
		if stale && canTry {
			m.refreshing = true
			m.lastAttempt = m.now()
			go func() {
				_ = m.load(context.WithoutCancel(ctx))
			}()
		}
		m.mu.Unlock()
		return cur, nil
	}
	if m.url == "" || !canTry {
		err := m.lastErr
		m.mu.Unlock()
		if err == nil {
			err = errNoMetadata
		}
		return nil, err
	}
	m.refreshing = true
	m.lastAttempt = m.now()
	m.mu.Unlock()
	if err := m.load(ctx); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.current, nil
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
			m.logger.Warn("saml: idp metadata refresh failed; keeping the last good copy", "url", m.url, "err", err)
		}
		return err
	}
	m.current, m.fetchedAt, m.lastErr = ed, m.now(), nil
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
	ed, err := parseIDPMetadata(body)
	if err != nil {
		return nil, fmt.Errorf("saml: %w", err)
	}
	return ed, nil
}
