package saml

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/beevik/etree"
	"github.com/crewjam/saml"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/fedbroker/fedbroker/connectors"
)

var _ connectors.UnsolicitedConnector = (*Connector)(nil)

// ErrNoReplayCache is returned by Open when connectors.Options has no
// ReplayCache, and by HandlePOST on a Connector built without one. A SAML
// service provider cannot refuse a replayed assertion without remembering
// the ones it accepted, so it refuses to work at all.
var ErrNoReplayCache = errors.New("saml: a replay cache is required (connectors.Options.ReplayCache): without one an intercepted response could be posted again")

// Connector is a SAML 2.0 service provider for one IdP.
type Connector struct {
	id      string
	cfg     Config
	format  saml.NameIDFormat
	acsURL  url.URL
	metaURL url.URL
	// sloURL is the broker's /logout/{id}: the SingleLogoutService for
	// both bindings.
	sloURL url.URL
	key    *rsa.PrivateKey
	cert   *x509.Certificate
	idp    *metadataSource
	// mdSigner signs the SP metadata; nil when it goes out unsigned.
	mdSigner *metadataSigner
	now      func() time.Time
	logger   *slog.Logger
	// replay remembers accepted assertion IDs; never nil.
	replay connectors.ReplayCache
}

// Compile-time checks of the contract.
var (
	_ connectors.POSTConnector   = (*Connector)(nil)
	_ connectors.MetadataHandler = (*Connector)(nil)
	_ connectors.StatusReporter  = (*Connector)(nil)
)

// Warnings implements connectors.StatusReporter: a failing IdP metadata
// refresh, or IdP metadata past its validUntil.
func (c *Connector) Warnings() []string { return c.idp.warnings() }

// connState is the per-login state the broker keeps with its auth request.
type connState struct {
	RequestID  string `json:"rid"`
	RelayState string `json:"rs"`
}

func newConnector(ctx context.Context, id string, cfg Config, opts connectors.Options) (*Connector, error) {
	if opts.ReplayCache == nil {
		return nil, ErrNoReplayCache
	}
	acs, err := url.Parse(opts.CallbackURL)
	if err != nil || !acs.IsAbs() {
		return nil, fmt.Errorf("saml: callback url %q is not absolute", opts.CallbackURL)
	}
	meta, err := url.Parse(strings.TrimSuffix(opts.BaseURL, "/") + "/saml/" + id + "/metadata")
	if err != nil {
		return nil, fmt.Errorf("saml: metadata url: %w", err)
	}
	slo, err := url.Parse(LogoutURL(opts.BaseURL, id))
	if err != nil || !slo.IsAbs() {
		return nil, fmt.Errorf("saml: logout url %q is not absolute", LogoutURL(opts.BaseURL, id))
	}
	format, _ := cfg.nameIDFormat() // validated
	c := &Connector{id: id, cfg: cfg, format: format, acsURL: *acs, metaURL: *meta, sloURL: *slo, now: opts.Now, logger: opts.Logger, replay: opts.ReplayCache}
	if c.now == nil {
		c.now = time.Now
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	if cfg.SPCertificateFile != "" {
		if c.cert, c.key, err = loadKeyPair(cfg.SPCertificateFile, cfg.SPKeyFile); err != nil {
			return nil, fmt.Errorf("saml: %w", err)
		}
	}
	if cfg.MetadataSigningCertificateFile != "" {
		if c.mdSigner, err = loadSigner(cfg.MetadataSigningCertificateFile, cfg.MetadataSigningKeyFile); err != nil {
			return nil, fmt.Errorf("saml: %w", err)
		}
	}
	client := opts.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: metadataFetchTimeout}
	}
	var trust *metadataTrust
	if cfg.IDPMetadataSigningCertificateFile != "" {
		if trust, err = loadMetadataTrust(cfg.IDPMetadataSigningCertificateFile); err != nil {
			return nil, fmt.Errorf("saml: idp_metadata_signing_certificate_file: %w", err)
		}
	}
	c.idp = &metadataSource{url: cfg.IDPMetadataURL, client: client, refresh: cfg.MetadataRefresh, now: c.now, logger: c.logger, trust: trust}
	switch {
	case cfg.IDPMetadataURL != "":
		if _, err := c.idp.get(ctx); err != nil {
			c.logger.Warn("saml: idp metadata not loaded yet; sign-ins fail until it is", "connector", id, "err", err)
		}
	default:
		raw := []byte(cfg.IDPMetadataXML)
		if cfg.IDPMetadataFile != "" {
			if raw, err = os.ReadFile(cfg.IDPMetadataFile); err != nil {
				return nil, fmt.Errorf("saml: read idp metadata: %w", err)
			}
		}
		ed, err := readIDPMetadata(raw, trust, c.now())
		if err != nil {
			return nil, fmt.Errorf("saml: %w", err)
		}
		if err := checkNotExpired(ed, c.now()); err != nil {
			return nil, fmt.Errorf("saml: %w", err)
		}
		c.idp.set(ed, c.now())
	}
	return c, nil
}

// EntityID is this SP's entity ID.
func (c *Connector) EntityID() string { return c.cfg.EntityID }

// serviceProvider builds the crewjam service provider for one operation
// against the current IdP metadata. verifier, when set, sees each
// signature the service provider checks.
func (c *Connector) serviceProvider(idp *saml.EntityDescriptor, verifier saml.SignatureVerifier) *saml.ServiceProvider {
	sp := &saml.ServiceProvider{
		EntityID:                         c.cfg.EntityID,
		MetadataURL:                      c.metaURL,
		AcsURL:                           c.acsURL,
		SloURL:                           c.sloURL,
		IDPMetadata:                      idp,
		AuthnNameIDFormat:                c.format,
		AllowIDPInitiated:                c.cfg.IDPInitiated != nil,
		AssertionConsumerServiceBindings: []string{saml.HTTPPostBinding},
		RejectSHA1Signatures:             true,
		RejectExpiredIDPMetadata:         true,
		SignatureVerifier:                verifier,
		Clock:                            dsig.NewFakeClockAt(c.now()),
	}
	if c.key != nil {
		sp.Key, sp.Certificate = c.key, c.cert
		sp.SignatureMethod = dsig.RSASHA256SignatureMethod
		// Single logout needs signed messages (saml-profiles §4.4.3),
		// so it is offered only with a key to sign them.
		sp.LogoutBindings = []string{saml.HTTPRedirectBinding, saml.HTTPPostBinding}
	}
	if c.format == "" {
		sp.AuthnNameIDFormat = saml.UnspecifiedNameIDFormat
	}
	return sp
}

// LoginRequest starts a sign-in: an AuthnRequest sent with the configured
// binding and state as RelayState. callbackURL must be the ACS URL the
// connector was opened with. connState holds the request ID that the
// response must answer.
func (c *Connector) LoginRequest(ctx context.Context, s connectors.Scopes, callbackURL, state string) (connectors.LoginRequest, []byte, error) {
	if callbackURL != "" && callbackURL != c.acsURL.String() {
		return connectors.LoginRequest{}, nil, fmt.Errorf("saml: callback url %q is not the acs url %q", callbackURL, c.acsURL.String())
	}
	idp, err := c.idp.get(ctx)
	if err != nil {
		return connectors.LoginRequest{}, nil, &connectors.UserError{Code: "upstream_error", Message: "The sign-in provider is not available right now. Please try again later.", Err: fmt.Errorf("saml: %w: %w", connectors.ErrUnavailable, err)}
	}
	sp := c.serviceProvider(idp, nil)
	binding := saml.HTTPRedirectBinding
	if c.cfg.Binding == BindingPOST {
		binding = saml.HTTPPostBinding
	}
	ssoURL := sp.GetSSOBindingLocation(binding)
	if ssoURL == "" {
		return connectors.LoginRequest{}, nil, fmt.Errorf("saml: idp metadata has no SingleSignOnService for %s", binding)
	}
	req, err := sp.MakeAuthenticationRequest(ssoURL, binding, saml.HTTPPostBinding)
	if err != nil {
		return connectors.LoginRequest{}, nil, fmt.Errorf("saml: make authn request: %w", err)
	}
	st, err := json.Marshal(connState{RequestID: req.ID, RelayState: state})
	if err != nil {
		return connectors.LoginRequest{}, nil, fmt.Errorf("saml: %w", err)
	}
	if binding == saml.HTTPRedirectBinding {
		u, err := req.Redirect(state, sp)
		if err != nil {
			return connectors.LoginRequest{}, nil, fmt.Errorf("saml: redirect binding: %w", err)
		}
		return connectors.LoginRequest{RedirectURL: u.String()}, st, nil
	}
	doc := etree.NewDocument()
	doc.SetRoot(req.Element())
	var buf bytes.Buffer
	if _, err := doc.WriteTo(&buf); err != nil {
		return connectors.LoginRequest{}, nil, fmt.Errorf("saml: post binding: %w", err)
	}
	fields := map[string]string{"SAMLRequest": base64.StdEncoding.EncodeToString(buf.Bytes())}
	if state != "" {
		fields["RelayState"] = state
	}
	return connectors.LoginRequest{PostURL: ssoURL, Fields: fields}, st, nil
}

func decodeConnState(b []byte) (connState, error) {
	var st connState
	if len(b) == 0 {
		return st, nil
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("saml: decode connector state: %w", err)
	}
	if st.RequestID == "" {
		return st, errors.New("saml: connector state has no request id")
	}
	return st, nil
}
