// Package saml is a SAML 2.0 service-provider connector built on
// github.com/crewjam/saml. It starts sign-ins with an AuthnRequest over the
// HTTP-Redirect (or HTTP-POST) binding, accepts responses at the assertion
// consumer service (ACS) over the HTTP-POST binding, and publishes its own SP
// metadata.
//
// A response is accepted only when it carries exactly one assertion, signed
// (per RequireSigned) with RSA-SHA256 or stronger by a certificate from the
// IdP metadata, issued by the IdP for this SP's entity ID and ACS, answering
// the request this browser started (or, with idp_initiated, answering no
// request at all), within its validity window, and not seen before (by the
// connectors.ReplayCache passed in connectors.Options, which is required).
//
// IdP metadata past its validUntil is never used; metadata from a URL is
// refreshed on use when due (metadata_refresh, cacheDuration, validUntil).
// The published SP metadata may be signed (metadata_signing_*).
//
// With an SP key pair the connector also takes part in single logout
// (connectors.LogoutConnector, logout.go) over the HTTP-Redirect and
// HTTP-POST bindings at LogoutURL.
package saml

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/crewjam/saml"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/jwa"
	"github.com/fedbroker/fedbroker/problem"
)

// Defaults and bounds of the configuration.
const (
	DefaultMetadataRefresh  = time.Hour
	DefaultAllowedSkew      = 90 * time.Second
	MaxAllowedSkew          = 5 * time.Minute
	DefaultMaxResponseBytes = 512 << 10
	maxMaxResponseBytes     = 10 << 20
	minMaxResponseBytes     = 4 << 10
	minMetadataRefresh      = time.Minute
	minRSAKeyBits           = 2048
)

// Values of Config.RequireSigned.
const (
	SignedAssertion = "assertion"
	SignedResponse  = "response"
	SignedBoth      = "both"
)

// Values of Config.Binding.
const (
	BindingRedirect = "redirect"
	BindingPOST     = "post"
)

// nameIDFormats maps the short names accepted in nameid_format to URNs.
var nameIDFormats = map[string]saml.NameIDFormat{
	"persistent":  saml.PersistentNameIDFormat,
	"email":       saml.EmailAddressNameIDFormat,
	"transient":   saml.TransientNameIDFormat,
	"unspecified": saml.UnspecifiedNameIDFormat,
}

// Config is the `config:` block of a connector of type "saml".
type Config struct {
	// EntityID is this SP's entity ID. Default: Options.BaseURL + "/saml/" + id.
	EntityID string `yaml:"entity_id"`

	// Exactly one of the three IdP metadata sources is set.
	IDPMetadataFile string `yaml:"idp_metadata_file"`
	IDPMetadataXML  string `yaml:"idp_metadata_xml"`
	// IDPMetadataURL must be https (http only to a loopback host). It is
	// fetched with a timeout, cached and refreshed every MetadataRefresh
	// (sooner when the metadata's cacheDuration or validUntil asks for it);
	// a failed refresh keeps the last good copy until its validUntil.
	IDPMetadataURL  string        `yaml:"idp_metadata_url"`
	MetadataRefresh time.Duration `yaml:"metadata_refresh"` // default 1h
	// IDPMetadataSigningCertificateFile, when set, names a PEM file of one
	// or more certificates that may sign the IdP metadata: metadata from
	// any source is then used only when its root element carries a valid
	// signature by one of them (RSA or ECDSA, SHA-256 or stronger), and
	// only what the signature covers is read.
	IDPMetadataSigningCertificateFile string `yaml:"idp_metadata_signing_certificate_file"`

	// SPCertificateFile and SPKeyFile (PEM, RSA ≥ 2048 bits) sign
	// AuthnRequests and decrypt encrypted assertions. Both or neither.
	SPCertificateFile string `yaml:"sp_certificate_file"`
	SPKeyFile         string `yaml:"sp_key_file"`

	// RequireSigned says which element must carry a valid signature:
	// "assertion" (default), "response" or "both".
	RequireSigned string `yaml:"require_signed"`
	// AllowedSkew is the clock skew allowed on NotBefore/NotOnOrAfter:
	// default 90s, at most 5m.
	AllowedSkew time.Duration `yaml:"allowed_skew"`
	// Binding sends the AuthnRequest with "redirect" (default) or "post".
	Binding string `yaml:"binding"`
	// AllowIDPInitiated is replaced by IDPInitiated, which also names where
	// such a sign-in goes; setting it is an error that says so.
	AllowIDPInitiated bool `yaml:"allow_idp_initiated"`
	// IDPInitiated, when set, accepts unsolicited responses (no
	// InResponseTo): an IdP portal tile signs the person in to this client.
	// Unset (the default), unsolicited responses are refused.
	IDPInitiated *IDPInitiated `yaml:"idp_initiated"`
	// NameIDFormat is requested in the AuthnRequest and then required of the
	// response: persistent, email, transient, unspecified or a full URN.
	NameIDFormat string `yaml:"nameid_format"`
	// SubjectAttribute names the attribute whose single value is the
	// subject instead of the NameID. Required to accept transient NameIDs.
	SubjectAttribute string `yaml:"subject_attribute"`
	// MaxResponseBytes caps the decoded SAMLResponse (default 512 KiB).
	MaxResponseBytes int `yaml:"max_response_bytes"`

	// MetadataSigningCertificateFile and MetadataSigningKeyFile (PEM; RSA
	// of at least 2048 bits or ECDSA) sign the published SP metadata.
	// Both or neither; they may be the SP key pair.
	MetadataSigningCertificateFile string `yaml:"metadata_signing_certificate_file"`
	MetadataSigningKeyFile         string `yaml:"metadata_signing_key_file"`
}

// Compile-time check of the contract.
var _ connectors.Config = (*Config)(nil)

// Validate returns every problem in c, each with its path relative to the
// connector's config block. It reads the files c names.
func (c *Config) Validate() []problem.Problem {
	var errs []problem.Problem
	add := func(path, format string, args ...any) {
		errs = append(errs, problem.Problem{Path: path, Message: fmt.Sprintf(format, args...)})
	}

	sources := 0
	for _, s := range []string{c.IDPMetadataFile, c.IDPMetadataXML, c.IDPMetadataURL} {
		if s != "" {
			sources++
		}
	}
	switch {
	case sources == 0:
		add("idp_metadata_url", "one of idp_metadata_file, idp_metadata_xml or idp_metadata_url is required")
	case sources > 1:
		add("idp_metadata_url", "only one of idp_metadata_file, idp_metadata_xml and idp_metadata_url may be set")
	}
	var trust *metadataTrust
	if c.IDPMetadataSigningCertificateFile != "" {
		var err error
		if trust, err = loadMetadataTrust(c.IDPMetadataSigningCertificateFile); err != nil {
			add("idp_metadata_signing_certificate_file", "%v", err)
		}
	}
	checkLocal := func(path string, b []byte) {
		if trust == nil && c.IDPMetadataSigningCertificateFile != "" {
			return // reported above
		}
		if ed, err := readIDPMetadata(b, trust, time.Now()); err != nil {
			add(path, "%v", err)
		} else if err := checkNotExpired(ed, time.Now()); err != nil {
			add(path, "%v", err)
		}
	}
	if c.IDPMetadataFile != "" {
		if b, err := os.ReadFile(c.IDPMetadataFile); err != nil {
			add("idp_metadata_file", "cannot read: %v", err)
		} else {
			checkLocal("idp_metadata_file", b)
		}
	}
	if c.IDPMetadataXML != "" {
		checkLocal("idp_metadata_xml", []byte(c.IDPMetadataXML))
	}
	if c.IDPMetadataURL != "" {
		if err := checkMetadataURL(c.IDPMetadataURL); err != nil {
			add("idp_metadata_url", "%v", err)
		}
	}
	if c.MetadataRefresh != 0 && c.MetadataRefresh < minMetadataRefresh {
		add("metadata_refresh", "must be at least %s", minMetadataRefresh)
	}
	if c.EntityID != "" && strings.ContainsAny(c.EntityID, " \t\r\n") {
		add("entity_id", "must not contain whitespace")
	}

	switch {
	case (c.SPCertificateFile == "") != (c.SPKeyFile == ""):
		add("sp_key_file", "sp_certificate_file and sp_key_file must be set together")
	case c.SPCertificateFile != "":
		if _, _, err := loadKeyPair(c.SPCertificateFile, c.SPKeyFile); err != nil {
			add("sp_key_file", "%v", err)
		}
	}

	switch c.RequireSigned {
	case "", SignedAssertion, SignedResponse, SignedBoth:
	default:
		add("require_signed", "must be assertion, response or both, not %q", c.RequireSigned)
	}
	if c.AllowedSkew < 0 || c.AllowedSkew > MaxAllowedSkew {
		add("allowed_skew", "must be between 0 and %s", MaxAllowedSkew)
	}
	switch c.Binding {
	case "", BindingRedirect, BindingPOST:
	default:
		add("binding", "must be redirect or post, not %q", c.Binding)
	}
	format, err := c.nameIDFormat()
	if err != nil {
		add("nameid_format", "%v", err)
	}
	if format == saml.TransientNameIDFormat && c.SubjectAttribute == "" {
		add("subject_attribute", "is required when nameid_format is transient (a transient NameID is not a stable subject)")
	}
	if c.MaxResponseBytes != 0 && (c.MaxResponseBytes < minMaxResponseBytes || c.MaxResponseBytes > maxMaxResponseBytes) {
		add("max_response_bytes", "must be between %d and %d", minMaxResponseBytes, maxMaxResponseBytes)
	}
	if c.AllowIDPInitiated {
		add("allow_idp_initiated", "is replaced by idp_initiated, which names the client_id and redirect_uri an IdP-initiated sign-in goes to; remove allow_idp_initiated")
	}
	if c.IDPInitiated != nil {
		errs = append(errs, c.IDPInitiated.validate("idp_initiated")...)
	}
	switch {
	case (c.MetadataSigningCertificateFile == "") != (c.MetadataSigningKeyFile == ""):
		add("metadata_signing_key_file", "metadata_signing_certificate_file and metadata_signing_key_file must be set together")
	case c.MetadataSigningCertificateFile != "":
		if _, err := loadSigner(c.MetadataSigningCertificateFile, c.MetadataSigningKeyFile); err != nil {
			add("metadata_signing_key_file", "%v", err)
		}
	}
	return errs
}

// nameIDFormat returns the configured NameID format as a URN ("" when unset).
func (c *Config) nameIDFormat() (saml.NameIDFormat, error) {
	if c.NameIDFormat == "" {
		return "", nil
	}
	if f, ok := nameIDFormats[c.NameIDFormat]; ok {
		return f, nil
	}
	if strings.HasPrefix(c.NameIDFormat, "urn:") {
		return saml.NameIDFormat(c.NameIDFormat), nil
	}
	return "", fmt.Errorf("must be persistent, email, transient, unspecified or a urn, not %q", c.NameIDFormat)
}

// withDefaults returns c with every unset field defaulted.
func (c Config) withDefaults(id string, opts connectors.Options) Config {
	if c.EntityID == "" {
		c.EntityID = strings.TrimSuffix(opts.BaseURL, "/") + "/saml/" + id
	}
	if c.MetadataRefresh == 0 {
		c.MetadataRefresh = DefaultMetadataRefresh
	}
	if c.RequireSigned == "" {
		c.RequireSigned = SignedAssertion
	}
	if c.AllowedSkew == 0 {
		c.AllowedSkew = DefaultAllowedSkew
	}
	if c.Binding == "" {
		c.Binding = BindingRedirect
	}
	if c.MaxResponseBytes == 0 {
		c.MaxResponseBytes = DefaultMaxResponseBytes
	}
	return c
}

// Open validates c and builds the connector. id is the connector's id in
// config; opts.CallbackURL is the ACS URL and opts.BaseURL the base of the
// default entity ID and of the SP metadata URL. With idp_metadata_url, a
// failed first fetch does not fail Open: sign-ins fail with
// connectors.ErrUnavailable until a fetch succeeds. Open fails with
// ErrNoReplayCache when opts.ReplayCache is nil: without one, a captured
// response could be posted again to sign in a second time.
func (c *Config) Open(ctx context.Context, id string, opts connectors.Options) (connectors.Connector, error) {
	if errs := c.Validate(); len(errs) > 0 {
		list := make([]error, len(errs))
		for i, e := range errs {
			list[i] = e
		}
		return nil, fmt.Errorf("saml: invalid config: %w", errors.Join(list...))
	}
	conn, err := newConnector(ctx, id, c.withDefaults(id, opts), opts)
	if err != nil {
		return nil, err
	}
	return conn, nil
}

// checkMetadataURL accepts an absolute https URL, or http to a loopback
// host (localhost, 127.0.0.0/8, ::1), as OpenID Connect issuers are.
func checkMetadataURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Hostname() == "" {
		return errors.New("must be an absolute https URL")
	}
	switch {
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && connectors.IsLoopback(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return errors.New("must use https (http is only allowed for localhost and loopback addresses)")
	}
	return fmt.Errorf("must be an absolute https URL, not %s", u.Scheme)
}

// loadKeyPair reads a PEM certificate and its RSA private key.
func loadKeyPair(certFile, keyFile string) (*x509.Certificate, *rsa.PrivateKey, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, fmt.Errorf("read certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("read key: %w", err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, nil, errors.New("sp_certificate_file holds no PEM CERTIFICATE")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse certificate: %w", err)
	}
	signer, err := jwa.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("sp_key_file: %w", err)
	}
	key, ok := signer.(*rsa.PrivateKey)
	if !ok {
		return nil, nil, errors.New("sp_key_file must hold an RSA key (it also decrypts assertions)")
	}
	if key.N.BitLen() < minRSAKeyBits {
		return nil, nil, fmt.Errorf("sp key has %d bits, need at least %d", key.N.BitLen(), minRSAKeyBits)
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, nil, errors.New("sp_certificate_file does not match sp_key_file")
	}
	return cert, key, nil
}
