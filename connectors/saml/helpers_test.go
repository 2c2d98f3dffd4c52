package saml

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"encoding/xml"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beevik/etree"
	"github.com/crewjam/saml"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/fedbroker/fedbroker/connectors"
)

const (
	testBaseURL = "https://broker.test"
	testACS     = "https://broker.test/callback/acme"
	testID      = "acme"
	testEntity  = "https://broker.test/saml/acme"
	idpEntity   = "https://idp.test/metadata"
)

// keyPair is an RSA key and a self-signed certificate for it.
type keyPair struct {
	key  *rsa.PrivateKey
	cert *x509.Certificate
}

// RSA key generation is slow; each test binary makes these few once.
var testKeys = sync.OnceValue(func() []keyPair {
	kps := make([]keyPair, 4)
	for i := range kps {
		kps[i] = newKeyPair(fmt.Sprintf("test key %d", i))
	}
	return kps
})

func newKeyPair(cn string) keyPair {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-24 * time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return keyPair{key: key, cert: cert}
}

// idpKey signs in the tests; otherKey is trusted by nobody; rolloverKey is
// the second certificate in rollover metadata; spKey is the SP's.
func idpKey() keyPair      { return testKeys()[0] }
func otherKey() keyPair    { return testKeys()[1] }
func rolloverKey() keyPair { return testKeys()[2] }
func spKey() keyPair       { return testKeys()[3] }

// writeKeyPair writes kp as PEM files and returns their paths.
func writeKeyPair(t *testing.T, kp keyPair) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "sp.crt"), filepath.Join(dir, "sp.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: kp.cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(kp.key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// idpMetadataXML is the metadata of an IdP at idpEntity that signs with
// kp and also announces extra certificates.
func idpMetadataXML(t *testing.T, kp keyPair, extra ...*x509.Certificate) string {
	t.Helper()
	mdURL, _ := url.Parse(idpEntity)
	ssoURL, _ := url.Parse("https://idp.test/sso")
	idp := saml.IdentityProvider{Key: kp.key, Certificate: kp.cert, MetadataURL: *mdURL, SSOURL: *ssoURL, ExtraCertificates: extra}
	b, err := xml.Marshal(idp.Metadata())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// idpMetadataXMLAt is idpMetadataXML as the IdP published it at t, valid
// for valid (validUntil t+valid, cacheDuration valid).
func idpMetadataXMLAt(t *testing.T, kp keyPair, at time.Time, valid time.Duration) string {
	t.Helper()
	mdURL, _ := url.Parse(idpEntity)
	ssoURL, _ := url.Parse("https://idp.test/sso")
	idp := saml.IdentityProvider{Key: kp.key, Certificate: kp.cert, MetadataURL: *mdURL, SSOURL: *ssoURL, ValidDuration: &valid, Clock: dsig.NewFakeClockAt(at)}
	b, err := xml.Marshal(idp.Metadata())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// memReplay is a ReplayCache in memory.
type memReplay struct {
	mu   sync.Mutex
	seen map[string]time.Time
	err  error
}

func (m *memReplay) MarkSeen(ctx context.Context, namespace, id string, until time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return false, m.err
	}
	if m.seen == nil {
		m.seen = map[string]time.Time{}
	}
	k := namespace + "\x00" + id
	if _, ok := m.seen[k]; ok {
		return false, nil
	}
	m.seen[k] = until
	return true, nil
}

// fixture is a connector opened against static IdP metadata at a fixed
// time.
type fixture struct {
	conn   *Connector
	now    time.Time
	replay *memReplay
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	if cfg.IDPMetadataXML == "" && cfg.IDPMetadataURL == "" && cfg.IDPMetadataFile == "" {
		cfg.IDPMetadataXML = idpMetadataXML(t, idpKey(), rolloverKey().cert)
	}
	f := &fixture{now: time.Now().UTC().Truncate(time.Second), replay: &memReplay{}}
	impl, err := cfg.Open(context.Background(), testID, connectors.Options{
		Now:         func() time.Time { return f.now },
		CallbackURL: testACS,
		BaseURL:     testBaseURL,
		ReplayCache: f.replay,
	})
	if err != nil {
		t.Fatalf("Open() error = %v", err)
	}
	f.conn = impl.(*Connector)
	return f
}

// start runs LoginRequest and returns the connector state.
func (f *fixture) start(t *testing.T, state string) (connState, []byte) {
	t.Helper()
	_, raw, err := f.conn.LoginRequest(context.Background(), connectors.Scopes{}, testACS, state)
	if err != nil {
		t.Fatalf("LoginRequest() error = %v", err)
	}
	st, err := decodeConnState(raw)
	if err != nil {
		t.Fatal(err)
	}
	return st, raw
}

// post hands an ACS form post with SAMLResponse and RelayState to HandlePOST.
func (f *fixture) post(t *testing.T, connState []byte, samlResponse, relayState string) (connectors.Identity, error) {
	t.Helper()
	form := url.Values{"SAMLResponse": {samlResponse}, "RelayState": {relayState}}
	return f.postForm(t, connState, form)
}

func (f *fixture) postForm(t *testing.T, connState []byte, form url.Values) (connectors.Identity, error) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, testACS, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return f.conn.HandlePOST(context.Background(), connectors.Scopes{}, connState, r)
}

// wantCode fails unless err is a *connectors.UserError with code and a
// message.
func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var ue *connectors.UserError
	if !errors.As(err, &ue) {
		t.Fatalf("error = %v (%T), want *connectors.UserError with code %q", err, err, code)
	}
	if ue.Code != code {
		t.Fatalf("error code = %q, want %q (error: %v)", ue.Code, code, err)
	}
	if ue.Message == "" {
		t.Errorf("error %v has no message", err)
	}
}

// signEl signs el with kp and method and returns the ds:Signature element.
func signEl(t *testing.T, el *etree.Element, kp keyPair, method string) *etree.Element {
	t.Helper()
	ks := dsig.TLSCertKeyStore(tls.Certificate{Certificate: [][]byte{kp.cert.Raw}, PrivateKey: kp.key, Leaf: kp.cert})
	ctx := dsig.NewDefaultSigningContext(ks)
	ctx.Canonicalizer = dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("")
	if err := ctx.SetSignatureMethod(method); err != nil {
		t.Fatal(err)
	}
	signed, err := ctx.SignEnveloped(el)
	if err != nil {
		t.Fatal(err)
	}
	return signed.ChildElements()[len(signed.ChildElements())-1]
}

// responseSpec builds a SAML response the way an IdP does; each test
// changes what it attacks.
type responseSpec struct {
	requestID       string
	assertionKey    *keyPair // nil: assertion unsigned
	responseKey     *keyPair // nil: response unsigned
	method          string
	nameID, format  string
	attrs           map[string][]string
	mutateAssertion func(a *saml.Assertion)
	mutateResponse  func(r *saml.Response)
	// extraAssertions more signed assertions go in before the response
	// is signed.
	extraAssertions int
	// tamper edits the signed document before it is encoded.
	tamper func(t *testing.T, doc *etree.Document)
}

// defaultSpec is a valid response to requestID: assertion signed with
// RSA-SHA256 by the IdP key, response unsigned.
func defaultSpec(requestID string) responseSpec {
	kp := idpKey()
	return responseSpec{
		requestID:    requestID,
		assertionKey: &kp,
		method:       dsig.RSASHA256SignatureMethod,
		nameID:       "u-1234",
		format:       string(saml.PersistentNameIDFormat),
		attrs:        map[string][]string{"email": {"alice@acme.com"}, "groups": {"admins", "eng"}},
	}
}

func (f *fixture) assertion(spec responseSpec, id string) *saml.Assertion {
	now := f.now
	a := &saml.Assertion{
		ID:           id,
		IssueInstant: now,
		Version:      "2.0",
		Issuer:       saml.Issuer{Format: "urn:oasis:names:tc:SAML:2.0:nameid-format:entity", Value: idpEntity},
		Subject: &saml.Subject{
			NameID: &saml.NameID{Format: spec.format, Value: spec.nameID},
			SubjectConfirmations: []saml.SubjectConfirmation{{
				Method: bearer,
				SubjectConfirmationData: &saml.SubjectConfirmationData{
					InResponseTo: spec.requestID,
					NotOnOrAfter: now.Add(5 * time.Minute),
					Recipient:    testACS,
				},
			}},
		},
		Conditions: &saml.Conditions{
			NotBefore:            now.Add(-time.Minute),
			NotOnOrAfter:         now.Add(5 * time.Minute),
			AudienceRestrictions: []saml.AudienceRestriction{{Audience: saml.Audience{Value: testEntity}}},
		},
		AuthnStatements: []saml.AuthnStatement{{
			AuthnInstant: now,
			SessionIndex: "s-1",
			AuthnContext: saml.AuthnContext{AuthnContextClassRef: &saml.AuthnContextClassRef{Value: "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"}},
		}},
	}
	var attrs []saml.Attribute
	for name, vals := range spec.attrs {
		at := saml.Attribute{Name: name, NameFormat: "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"}
		for _, v := range vals {
			at.Values = append(at.Values, saml.AttributeValue{Type: "xs:string", Value: v})
		}
		attrs = append(attrs, at)
	}
	if attrs != nil {
		a.AttributeStatements = []saml.AttributeStatement{{Attributes: attrs}}
	}
	return a
}

// assertionEl returns the assertion element, signed per spec.
func (f *fixture) assertionEl(t *testing.T, spec responseSpec, id string) *etree.Element {
	t.Helper()
	a := f.assertion(spec, id)
	if spec.mutateAssertion != nil {
		spec.mutateAssertion(a)
	}
	if spec.assertionKey != nil {
		a.Signature = signEl(t, a.Element(), *spec.assertionKey, spec.method)
	}
	return a.Element()
}

// build returns the base64 SAMLResponse for spec.
func (f *fixture) build(t *testing.T, spec responseSpec) string {
	t.Helper()
	return base64.StdEncoding.EncodeToString(f.buildXML(t, spec))
}

func (f *fixture) buildXML(t *testing.T, spec responseSpec) []byte {
	t.Helper()
	assertionEl := f.assertionEl(t, spec, "id-assertion-"+randomID())
	resp := &saml.Response{
		ID:           "id-response-" + randomID(),
		InResponseTo: spec.requestID,
		Version:      "2.0",
		IssueInstant: f.now,
		Destination:  testACS,
		Issuer:       &saml.Issuer{Format: "urn:oasis:names:tc:SAML:2.0:nameid-format:entity", Value: idpEntity},
		Status:       saml.Status{StatusCode: saml.StatusCode{Value: saml.StatusSuccess}},
	}
	if spec.mutateResponse != nil {
		spec.mutateResponse(resp)
	}
	children := []*etree.Element{assertionEl}
	for range spec.extraAssertions {
		children = append(children, f.assertionEl(t, spec, "id-assertion-"+randomID()))
	}
	el := resp.Element()
	for _, ch := range children {
		el.AddChild(ch)
	}
	if spec.responseKey != nil {
		resp.Signature = signEl(t, el, *spec.responseKey, spec.method)
		el = resp.Element()
		for _, ch := range children {
			el.AddChild(ch)
		}
	}
	doc := etree.NewDocument()
	doc.SetRoot(el)
	if spec.tamper != nil {
		spec.tamper(t, doc)
	}
	b, err := doc.WriteToBytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randomID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}
