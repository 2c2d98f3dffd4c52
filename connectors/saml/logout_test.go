package saml

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/beevik/etree"
	"github.com/crewjam/saml"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/fedbroker/fedbroker/connectors"
)

const (
	testLogout = "https://broker.test/logout/acme"
	idpSLO     = "https://idp.test/slo"
)

// idpMetadataWithSLO is idpMetadataXML with a SingleLogoutService at
// idpSLO for bindings (none: no SingleLogoutService).
func idpMetadataWithSLO(t *testing.T, kp keyPair, bindings ...string) string {
	t.Helper()
	mdURL, _ := url.Parse(idpEntity)
	ssoURL, _ := url.Parse("https://idp.test/sso")
	idp := saml.IdentityProvider{Key: kp.key, Certificate: kp.cert, MetadataURL: *mdURL, SSOURL: *ssoURL}
	if len(bindings) > 0 {
		sloURL, _ := url.Parse(idpSLO)
		idp.LogoutURL, idp.LogoutBindings = *sloURL, bindings
	}
	b, err := xml.Marshal(idp.Metadata())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sloFixture is a connector with an SP key pair against an IdP with a
// SingleLogoutService for bindings, and a person signed in through it.
func sloFixture(t *testing.T, cfg Config, bindings ...string) (*fixture, connectors.Identity) {
	t.Helper()
	if cfg.SPCertificateFile == "" {
		cfg.SPCertificateFile, cfg.SPKeyFile = writeKeyPair(t, spKey())
	}
	cfg.IDPMetadataXML = idpMetadataWithSLO(t, idpKey(), bindings...)
	f := newFixture(t, cfg)
	st, raw := f.start(t, "relay")
	id, err := f.post(t, raw, f.build(t, defaultSpec(st.RequestID)), "relay")
	if err != nil {
		t.Fatalf("sign-in: %v", err)
	}
	return f, id
}

// xmlBytes serializes el.
func xmlBytes(t *testing.T, el *etree.Element) []byte {
	t.Helper()
	doc := etree.NewDocument()
	doc.SetRoot(el)
	b, err := doc.WriteToBytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// deflate64 is the HTTP-Redirect encoding of b: deflated, base64.
func deflate64(t *testing.T, b []byte) string {
	t.Helper()
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

// inflate64 decodes an HTTP-Redirect message.
func inflate64(t *testing.T, s string) []byte {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(flate.NewReader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signingContext is how crewjam's IdP signs: exclusive c14n, kp's
// certificate in KeyInfo.
func signingContext(t *testing.T, kp keyPair, method string) *dsig.SigningContext {
	t.Helper()
	ks := dsig.TLSCertKeyStore(tls.Certificate{Certificate: [][]byte{kp.cert.Raw}, PrivateKey: kp.key, Leaf: kp.cert})
	ctx := dsig.NewDefaultSigningContext(ks)
	ctx.Canonicalizer = dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("")
	if err := ctx.SetSignatureMethod(method); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// redirectQuery is the HTTP-Redirect binding query for msg (unsigned XML)
// in param, signed with kp (saml-bindings §3.4.4.1) unless kp is nil.
func redirectQuery(t *testing.T, param string, msg []byte, relayState string, kp *keyPair, method string) string {
	t.Helper()
	q := param + "=" + url.QueryEscape(deflate64(t, msg))
	if relayState != "" {
		q += "&RelayState=" + url.QueryEscape(relayState)
	}
	if kp == nil {
		return q
	}
	q += "&SigAlg=" + url.QueryEscape(method)
	sig, err := signingContext(t, *kp, method).SignString(q)
	if err != nil {
		t.Fatal(err)
	}
	return q + "&Signature=" + url.QueryEscape(base64.StdEncoding.EncodeToString(sig))
}

// verifyQuerySignature checks the HTTP-Redirect signature of rawQuery
// (message param) with cert, as a receiver does.
func verifyQuerySignature(t *testing.T, rawQuery, param string, cert *x509.Certificate) {
	t.Helper()
	raw := map[string]string{}
	for _, pair := range strings.Split(rawQuery, "&") {
		k, v, _ := strings.Cut(pair, "=")
		raw[k] = v
	}
	if raw["SigAlg"] == "" || raw["Signature"] == "" {
		t.Fatalf("query %q is not signed", rawQuery)
	}
	signed := param + "=" + raw[param]
	if rs, ok := raw["RelayState"]; ok {
		signed += "&RelayState=" + rs
	}
	signed += "&SigAlg=" + raw["SigAlg"]
	if alg, _ := url.QueryUnescape(raw["SigAlg"]); alg != dsig.RSASHA256SignatureMethod {
		t.Errorf("SigAlg = %q, want rsa-sha256", alg)
	}
	sigB64, _ := url.QueryUnescape(raw["Signature"])
	sig, err := base64.StdEncoding.DecodeString(sigB64)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.CheckSignature(x509.SHA256WithRSA, []byte(signed), sig); err != nil {
		t.Errorf("query signature does not verify with the certificate: %v", err)
	}
}

// verifyXMLSignature checks the enveloped signature of the root of doc
// with cert and returns what it covers.
func verifyXMLSignature(t *testing.T, doc []byte, cert *x509.Certificate) *etree.Element {
	t.Helper()
	d := etree.NewDocument()
	if err := d.ReadFromBytes(doc); err != nil {
		t.Fatal(err)
	}
	vc := dsig.NewDefaultValidationContext(&dsig.MemoryX509CertificateStore{Roots: []*x509.Certificate{cert}})
	vc.IdAttribute = "ID"
	signed, err := vc.Validate(d.Root())
	if err != nil {
		t.Fatalf("XML signature does not verify: %v\n%s", err, doc)
	}
	return signed
}

// idpLogoutRequest is a valid LogoutRequest from the IdP for the
// fixture's sign-in (NameID u-1234, SessionIndex s-1).
func (f *fixture) idpLogoutRequest() *saml.LogoutRequest {
	noa := f.now.Add(5 * time.Minute)
	return &saml.LogoutRequest{
		ID:           "id-idp-lr-" + randomID(),
		Version:      "2.0",
		IssueInstant: f.now,
		NotOnOrAfter: &noa,
		Destination:  testLogout,
		Issuer:       &saml.Issuer{Format: "urn:oasis:names:tc:SAML:2.0:nameid-format:entity", Value: idpEntity},
		NameID:       &saml.NameID{Format: string(saml.PersistentNameIDFormat), Value: "u-1234"},
		SessionIndex: &saml.SessionIndex{Value: "s-1"},
	}
}

// idpLogoutResponse is a LogoutResponse from the IdP to request id.
func (f *fixture) idpLogoutResponse(inResponseTo, status string) *saml.LogoutResponse {
	return &saml.LogoutResponse{
		ID:           "id-idp-resp-" + randomID(),
		InResponseTo: inResponseTo,
		Version:      "2.0",
		IssueInstant: f.now,
		Destination:  testLogout,
		Issuer:       &saml.Issuer{Format: "urn:oasis:names:tc:SAML:2.0:nameid-format:entity", Value: idpEntity},
		Status:       saml.Status{StatusCode: saml.StatusCode{Value: status}},
	}
}

// signedRequestXML signs req enveloped with kp (nil: unsigned).
func signedRequestXML(t *testing.T, req *saml.LogoutRequest, kp *keyPair, method string) []byte {
	t.Helper()
	if kp != nil {
		req.Signature = signEl(t, req.Element(), *kp, method)
	}
	return xmlBytes(t, req.Element())
}

func signedResponseXML(t *testing.T, resp *saml.LogoutResponse, kp *keyPair, method string) []byte {
	t.Helper()
	if kp != nil {
		resp.Signature = signEl(t, resp.Element(), *kp, method)
	}
	return xmlBytes(t, resp.Element())
}

// logoutGET hands GET logoutURL?query to HandleLogout.
func (f *fixture) logoutGET(t *testing.T, query string) (connectors.LogoutEvent, error) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, testLogout+"?"+query, nil)
	return f.conn.HandleLogout(context.Background(), r, testLogout)
}

// logoutPOST hands a form post of param (base64 of msg) to HandleLogout.
func (f *fixture) logoutPOST(t *testing.T, param string, msg []byte, relayState string) (connectors.LogoutEvent, error) {
	t.Helper()
	form := url.Values{param: {base64.StdEncoding.EncodeToString(msg)}}
	if relayState != "" {
		form.Set("RelayState", relayState)
	}
	return f.logoutForm(t, form)
}

func (f *fixture) logoutForm(t *testing.T, form url.Values) (connectors.LogoutEvent, error) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, testLogout, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return f.conn.HandleLogout(context.Background(), r, testLogout)
}

func TestLogoutURL(t *testing.T) {
	if got := LogoutURL(testBaseURL+"/", testID); got != testLogout {
		t.Errorf("LogoutURL = %q, want %q", got, testLogout)
	}
}

// TestSignInKeepsLogoutData: the sign-in's SessionID is the
// AuthnStatement's SessionIndex, and its logout data holds the NameID
// exactly as the assertion carried it.
func TestSignInKeepsLogoutData(t *testing.T) {
	f := newFixture(t, Config{})
	st, raw := f.start(t, "relay")
	spec := defaultSpec(st.RequestID)
	spec.mutateAssertion = func(a *saml.Assertion) {
		a.Subject.NameID.NameQualifier = idpEntity
		a.Subject.NameID.SPNameQualifier = testEntity
	}
	id, err := f.post(t, raw, f.build(t, spec), "relay")
	if err != nil {
		t.Fatal(err)
	}
	if id.SessionID != "s-1" {
		t.Errorf("SessionID = %q, want s-1", id.SessionID)
	}
	got, err := decodeLogoutData(id.LogoutData)
	if err != nil {
		t.Fatal(err)
	}
	want := logoutData{NameID: "u-1234", Format: string(saml.PersistentNameIDFormat), NameQualifier: idpEntity, SPNameQualifier: testEntity, SessionIndex: "s-1"}
	if got != want {
		t.Errorf("logout data = %+v, want %+v", got, want)
	}
	// A sign-in from before single logout has no logout data; it
	// decodes to nothing to log out.
	if d, err := decodeLogoutData(nil); err != nil || d != (logoutData{}) {
		t.Errorf("decodeLogoutData(nil) = %+v, %v", d, err)
	}
}

// TestSPMetadataSingleLogoutService: with an SP key the metadata lists
// the logout URL for HTTP-Redirect and HTTP-POST; without one (nothing
// could be signed) it lists none.
func TestSPMetadataSingleLogoutService(t *testing.T) {
	certFile, keyFile := writeKeyPair(t, spKey())
	for _, tt := range []struct {
		name string
		cfg  Config
		want []string
	}{
		{"sp key", Config{SPCertificateFile: certFile, SPKeyFile: keyFile}, []string{saml.HTTPRedirectBinding, saml.HTTPPostBinding}},
		{"no sp key", Config{}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.cfg)
			_, body, err := f.conn.Metadata(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var ed saml.EntityDescriptor
			if err := xml.Unmarshal(body, &ed); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, ep := range ed.SPSSODescriptors[0].SingleLogoutServices {
				got = append(got, ep.Binding)
				if ep.Location != testLogout {
					t.Errorf("SingleLogoutService %s at %q, want %q", ep.Binding, ep.Location, testLogout)
				}
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("SingleLogoutService bindings = %v, want %v\n%s", got, tt.want, body)
			}
		})
	}
}

// TestLogoutRequestRedirect: the SP-initiated LogoutRequest goes to the
// IdP's HTTP-Redirect SingleLogoutService with the sign-in's NameID and
// SessionIndex, signed with a query signature by the SP key.
func TestLogoutRequestRedirect(t *testing.T) {
	f, id := sloFixture(t, Config{}, saml.HTTPRedirectBinding, saml.HTTPPostBinding)
	lr, ok, err := f.conn.LogoutRequest(context.Background(), id, testLogout, "st-1")
	if err != nil || !ok {
		t.Fatalf("LogoutRequest() = %v, %v", ok, err)
	}
	if lr.PostURL != "" || !strings.HasPrefix(lr.RedirectURL, idpSLO+"?") {
		t.Fatalf("LogoutRequest() = %+v, want a redirect to %s", lr, idpSLO)
	}
	u, _ := url.Parse(lr.RedirectURL)
	verifyQuerySignature(t, u.RawQuery, "SAMLRequest", spKey().cert)
	q := u.Query()
	if q.Get("RelayState") != "st-1" {
		t.Errorf("RelayState = %q, want st-1", q.Get("RelayState"))
	}
	req := parseLogoutRequest(t, inflate64(t, q.Get("SAMLRequest")))
	checkSPLogoutRequest(t, req, id)
	if req.Signature != nil {
		t.Error("the Redirect binding message carries an XML signature")
	}

	// The IdP's answer, signed the Redirect way, comes back with the state.
	resp := f.idpLogoutResponse(req.ID, saml.StatusSuccess)
	kp := idpKey()
	ev, err := f.logoutGET(t, redirectQuery(t, "SAMLResponse", signedResponseXML(t, resp, nil, ""), "st-1", &kp, dsig.RSASHA256SignatureMethod))
	if err != nil {
		t.Fatalf("HandleLogout() error = %v", err)
	}
	if !ev.Returned || ev.State != "st-1" || !ev.Success || ev.Ended || ev.ReplayID != resp.ID || !ev.ReplayUntil.After(f.now) {
		t.Errorf("HandleLogout() = %+v, want Returned, State st-1, Success, ReplayID %s", ev, resp.ID)
	}
}

func parseLogoutRequest(t *testing.T, b []byte) *saml.LogoutRequest {
	t.Helper()
	var req saml.LogoutRequest
	if err := xml.Unmarshal(b, &req); err != nil {
		t.Fatalf("parse LogoutRequest: %v\n%s", err, b)
	}
	return &req
}

// checkSPLogoutRequest checks the LogoutRequest the SP sent for id.
func checkSPLogoutRequest(t *testing.T, req *saml.LogoutRequest, id connectors.Identity) {
	t.Helper()
	d, _ := decodeLogoutData(id.LogoutData)
	if req.NameID == nil || req.NameID.Value != d.NameID || req.NameID.Format != d.Format || req.NameID.NameQualifier != d.NameQualifier || req.NameID.SPNameQualifier != d.SPNameQualifier {
		t.Errorf("NameID = %+v, want %+v", req.NameID, d)
	}
	if req.SessionIndex == nil || req.SessionIndex.Value != id.SessionID || len(req.AllSessionIndexes()) != 1 {
		t.Errorf("SessionIndex = %+v, want %q", req.AllSessionIndexes(), id.SessionID)
	}
	if req.Issuer == nil || req.Issuer.Value != testEntity {
		t.Errorf("Issuer = %+v, want %s", req.Issuer, testEntity)
	}
	if req.Destination != idpSLO || req.Version != "2.0" || req.ID == "" || req.IssueInstant.IsZero() {
		t.Errorf("LogoutRequest = %+v, want Destination %s, an ID and IssueInstant", req, idpSLO)
	}
}

// TestLogoutRequestPOST: an IdP with only an HTTP-POST SingleLogoutService
// gets a form with an enveloped XML signature by the SP key.
func TestLogoutRequestPOST(t *testing.T) {
	f, id := sloFixture(t, Config{}, saml.HTTPPostBinding)
	lr, ok, err := f.conn.LogoutRequest(context.Background(), id, testLogout, "st-2")
	if err != nil || !ok {
		t.Fatalf("LogoutRequest() = %v, %v", ok, err)
	}
	if lr.RedirectURL != "" || lr.PostURL != idpSLO || lr.Fields["RelayState"] != "st-2" {
		t.Fatalf("LogoutRequest() = %+v, want a form to %s with RelayState st-2", lr, idpSLO)
	}
	raw, err := base64.StdEncoding.DecodeString(lr.Fields["SAMLRequest"])
	if err != nil {
		t.Fatal(err)
	}
	signed := verifyXMLSignature(t, raw, spKey().cert)
	req := parseLogoutRequest(t, xmlBytes(t, signed))
	checkSPLogoutRequest(t, req, id)

	resp := f.idpLogoutResponse(req.ID, saml.StatusSuccess)
	kp := idpKey()
	ev, err := f.logoutPOST(t, "SAMLResponse", signedResponseXML(t, resp, &kp, dsig.RSASHA256SignatureMethod), "st-2")
	if err != nil {
		t.Fatalf("HandleLogout() error = %v", err)
	}
	if !ev.Returned || ev.State != "st-2" || !ev.Success {
		t.Errorf("HandleLogout() = %+v, want Returned, State st-2, Success", ev)
	}
}

// TestLogoutRequestNothingToDo: ok=false without a NameID, without an SP
// key or without an IdP SingleLogoutService; a foreign logout URL is an
// error.
func TestLogoutRequestNothingToDo(t *testing.T) {
	ctx := context.Background()
	f, id := sloFixture(t, Config{}, saml.HTTPRedirectBinding)
	if _, ok, err := f.conn.LogoutRequest(ctx, connectors.Identity{Subject: id.Subject, SessionID: id.SessionID}, testLogout, "s"); ok || err != nil {
		t.Errorf("without logout data: ok = %v, err = %v; want false, nil", ok, err)
	}
	if _, _, err := f.conn.LogoutRequest(ctx, id, "https://elsewhere.test/logout/acme", "s"); err == nil {
		t.Error("a logout URL that is not the connector's was accepted")
	}
	if _, ok, err := f.conn.LogoutRequest(ctx, connectors.Identity{LogoutData: []byte("{not json")}, testLogout, "s"); ok || err == nil {
		t.Errorf("undecodable logout data: ok = %v, err = %v; want an error", ok, err)
	}

	noSLO, id2 := sloFixture(t, Config{})
	if _, ok, err := noSLO.conn.LogoutRequest(ctx, id2, testLogout, "s"); ok || err != nil {
		t.Errorf("IdP without SingleLogoutService: ok = %v, err = %v; want false, nil", ok, err)
	}

	f3 := newFixture(t, Config{IDPMetadataXML: idpMetadataWithSLO(t, idpKey(), saml.HTTPRedirectBinding)})
	st, raw := f3.start(t, "relay")
	id3, err := f3.post(t, raw, f3.build(t, defaultSpec(st.RequestID)), "relay")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := f3.conn.LogoutRequest(ctx, id3, testLogout, "s"); ok || err != nil {
		t.Errorf("without an SP key: ok = %v, err = %v; want false, nil", ok, err)
	}
}

// TestLogoutResponseRefused: a LogoutResponse is refused unless the IdP
// signed it for this logout URL, in answer to the request made for its
// RelayState; a failure status comes back as Success=false.
func TestLogoutResponseRefused(t *testing.T) {
	f, id := sloFixture(t, Config{}, saml.HTTPRedirectBinding, saml.HTTPPostBinding)
	lr, _, err := f.conn.LogoutRequest(context.Background(), id, testLogout, "st-3")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(lr.RedirectURL)
	reqID := parseLogoutRequest(t, inflate64(t, u.Query().Get("SAMLRequest"))).ID
	idp, other := idpKey(), otherKey()
	sha256 := dsig.RSASHA256SignatureMethod

	type send func(t *testing.T, resp *saml.LogoutResponse, kp *keyPair, relayState string) (connectors.LogoutEvent, error)
	bindings := map[string]send{
		"redirect": func(t *testing.T, resp *saml.LogoutResponse, kp *keyPair, relayState string) (connectors.LogoutEvent, error) {
			return f.logoutGET(t, redirectQuery(t, "SAMLResponse", signedResponseXML(t, resp, nil, ""), relayState, kp, sha256))
		},
		"post": func(t *testing.T, resp *saml.LogoutResponse, kp *keyPair, relayState string) (connectors.LogoutEvent, error) {
			return f.logoutPOST(t, "SAMLResponse", signedResponseXML(t, resp, kp, sha256), relayState)
		},
	}
	for name, send := range bindings {
		t.Run(name, func(t *testing.T) {
			t.Run("failure status", func(t *testing.T) {
				ev, err := send(t, f.idpLogoutResponse(reqID, saml.StatusResponder), &idp, "st-3")
				if err != nil {
					t.Fatalf("HandleLogout() error = %v", err)
				}
				if !ev.Returned || ev.Success || ev.State != "st-3" {
					t.Errorf("HandleLogout() = %+v, want Returned, not Success, State st-3", ev)
				}
			})
			for _, tt := range []struct {
				name   string
				mutate func(r *saml.LogoutResponse)
				kp     *keyPair
				relay  string
				code   string
			}{
				{"unsigned", nil, nil, "st-3", CodeSignatureInvalid},
				{"signed by another key", nil, &other, "st-3", CodeSignatureInvalid},
				{"wrong destination", func(r *saml.LogoutResponse) { r.Destination = "https://evil.test/logout/acme" }, &idp, "st-3", CodeDestinationMismatch},
				{"wrong issuer", func(r *saml.LogoutResponse) { r.Issuer.Value = "https://evil.test/metadata" }, &idp, "st-3", CodeIssuerMismatch},
				{"another state", nil, &idp, "st-other", CodeRequestMismatch},
				{"no InResponseTo", func(r *saml.LogoutResponse) { r.InResponseTo = "" }, &idp, "st-3", CodeRequestMismatch},
				{"failure status without signature", func(r *saml.LogoutResponse) { r.Status.StatusCode.Value = saml.StatusResponder }, nil, "st-3", CodeSignatureInvalid},
				{"old", func(r *saml.LogoutResponse) { r.IssueInstant = f.now.Add(-10 * time.Minute) }, &idp, "st-3", CodeExpired},
			} {
				t.Run(tt.name, func(t *testing.T) {
					resp := f.idpLogoutResponse(reqID, saml.StatusSuccess)
					if tt.mutate != nil {
						tt.mutate(resp)
					}
					_, err := send(t, resp, tt.kp, tt.relay)
					wantCode(t, err, tt.code)
				})
			}
		})
	}

	t.Run("post tampered after signing", func(t *testing.T) {
		resp := f.idpLogoutResponse(reqID, saml.StatusResponder)
		b := signedResponseXML(t, resp, &idp, sha256)
		b = bytes.Replace(b, []byte(saml.StatusResponder), []byte(saml.StatusSuccess), 1)
		_, err := f.logoutPOST(t, "SAMLResponse", b, "st-3")
		wantCode(t, err, CodeSignatureInvalid)
	})
	t.Run("redirect tampered after signing", func(t *testing.T) {
		q := redirectQuery(t, "SAMLResponse", signedResponseXML(t, f.idpLogoutResponse(reqID, saml.StatusResponder), nil, ""), "st-3", &idp, sha256)
		forged := redirectQuery(t, "SAMLResponse", signedResponseXML(t, f.idpLogoutResponse(reqID, saml.StatusSuccess), nil, ""), "st-3", nil, "")
		vals, _ := url.ParseQuery(q)
		_, err := f.logoutGET(t, forged+"&SigAlg="+url.QueryEscape(vals.Get("SigAlg"))+"&Signature="+url.QueryEscape(vals.Get("Signature")))
		wantCode(t, err, CodeSignatureInvalid)
	})
	t.Run("sha1", func(t *testing.T) {
		_, err := f.logoutPOST(t, "SAMLResponse", signedResponseXML(t, f.idpLogoutResponse(reqID, saml.StatusSuccess), &idp, dsig.RSASHA1SignatureMethod), "st-3")
		wantCode(t, err, CodeWeakSignature)
	})
}

// TestIdPLogoutRequest: a LogoutRequest signed by the IdP ends the
// sessions of the sign-in's subject and SessionIndex, and is answered
// with a LogoutResponse signed by the SP, with the binding it came with.
func TestIdPLogoutRequest(t *testing.T) {
	f, id := sloFixture(t, Config{}, saml.HTTPRedirectBinding, saml.HTTPPostBinding)
	kp := idpKey()
	sha256 := dsig.RSASHA256SignatureMethod

	check := func(t *testing.T, ev connectors.LogoutEvent, req *saml.LogoutRequest) {
		t.Helper()
		if !ev.Ended || ev.Returned || ev.Subject != id.Subject || ev.SessionID != id.SessionID || ev.ReplayID != req.ID {
			t.Errorf("HandleLogout() = %+v, want Ended, Subject %q, SessionID %q, ReplayID %q", ev, id.Subject, id.SessionID, req.ID)
		}
		if !ev.ReplayUntil.After(f.now.Add(saml.MaxIssueDelay)) {
			t.Errorf("ReplayUntil = %s, want past the time the request could be accepted", ev.ReplayUntil)
		}
		if ev.Reply == nil {
			t.Fatal("no Reply")
		}
	}
	checkResponse := func(t *testing.T, resp *saml.LogoutResponse, req *saml.LogoutRequest) {
		t.Helper()
		if resp.InResponseTo != req.ID || resp.Destination != idpSLO || resp.Status.StatusCode.Value != saml.StatusSuccess || resp.Issuer == nil || resp.Issuer.Value != testEntity {
			t.Errorf("LogoutResponse = %+v, want InResponseTo %s, Destination %s, Success, Issuer %s", resp, req.ID, idpSLO, testEntity)
		}
	}

	t.Run("redirect", func(t *testing.T) {
		req := f.idpLogoutRequest()
		ev, err := f.logoutGET(t, redirectQuery(t, "SAMLRequest", signedRequestXML(t, req, nil, ""), "idp-relay", &kp, sha256))
		if err != nil {
			t.Fatalf("HandleLogout() error = %v", err)
		}
		check(t, ev, req)
		if !strings.HasPrefix(ev.Reply.RedirectURL, idpSLO+"?") {
			t.Fatalf("Reply = %+v, want a redirect to %s", ev.Reply, idpSLO)
		}
		u, _ := url.Parse(ev.Reply.RedirectURL)
		verifyQuerySignature(t, u.RawQuery, "SAMLResponse", spKey().cert)
		if got := u.Query().Get("RelayState"); got != "idp-relay" {
			t.Errorf("RelayState = %q, want idp-relay", got)
		}
		var resp saml.LogoutResponse
		if err := xml.Unmarshal(inflate64(t, u.Query().Get("SAMLResponse")), &resp); err != nil {
			t.Fatal(err)
		}
		checkResponse(t, &resp, req)
	})
	t.Run("post", func(t *testing.T) {
		req := f.idpLogoutRequest()
		ev, err := f.logoutPOST(t, "SAMLRequest", signedRequestXML(t, req, &kp, sha256), "idp-relay")
		if err != nil {
			t.Fatalf("HandleLogout() error = %v", err)
		}
		check(t, ev, req)
		if ev.Reply.PostURL != idpSLO || ev.Reply.Fields["RelayState"] != "idp-relay" {
			t.Fatalf("Reply = %+v, want a form to %s with RelayState", ev.Reply, idpSLO)
		}
		raw, err := base64.StdEncoding.DecodeString(ev.Reply.Fields["SAMLResponse"])
		if err != nil {
			t.Fatal(err)
		}
		var resp saml.LogoutResponse
		if err := xml.Unmarshal(xmlBytes(t, verifyXMLSignature(t, raw, spKey().cert)), &resp); err != nil {
			t.Fatal(err)
		}
		checkResponse(t, &resp, req)
	})
	t.Run("redirect request, IdP with POST only", func(t *testing.T) {
		f2, _ := sloFixture(t, Config{}, saml.HTTPPostBinding)
		ev, err := f2.logoutGET(t, redirectQuery(t, "SAMLRequest", signedRequestXML(t, f2.idpLogoutRequest(), nil, ""), "", &kp, sha256))
		if err != nil {
			t.Fatalf("HandleLogout() error = %v", err)
		}
		if ev.Reply == nil || ev.Reply.PostURL != idpSLO || ev.Reply.Fields["SAMLResponse"] == "" {
			t.Errorf("Reply = %+v, want a form to %s", ev.Reply, idpSLO)
		}
	})
	t.Run("IdP without SingleLogoutService", func(t *testing.T) {
		f2, _ := sloFixture(t, Config{})
		ev, err := f2.logoutPOST(t, "SAMLRequest", signedRequestXML(t, f2.idpLogoutRequest(), &kp, sha256), "")
		if err != nil {
			t.Fatalf("HandleLogout() error = %v", err)
		}
		if !ev.Ended || ev.Reply != nil {
			t.Errorf("HandleLogout() = %+v, want Ended without Reply", ev)
		}
	})
	t.Run("several SessionIndexes", func(t *testing.T) {
		req := f.idpLogoutRequest()
		req.AdditionalSessionIndexes = []saml.SessionIndex{{Value: "s-2"}}
		ev, err := f.logoutPOST(t, "SAMLRequest", signedRequestXML(t, req, &kp, sha256), "")
		if err != nil || ev.SessionID != "s-1" {
			t.Errorf("HandleLogout() = %+v, %v; want SessionID s-1", ev, err)
		}
	})
	t.Run("subject_attribute: the session only", func(t *testing.T) {
		f2, _ := sloFixture(t, Config{SubjectAttribute: "email"}, saml.HTTPRedirectBinding)
		ev, err := f2.logoutPOST(t, "SAMLRequest", signedRequestXML(t, f2.idpLogoutRequest(), &kp, sha256), "")
		if err != nil || !ev.Ended || ev.Subject != "" || ev.SessionID != "s-1" {
			t.Errorf("HandleLogout() = %+v, %v; want Ended, no Subject, SessionID s-1", ev, err)
		}
	})
	t.Run("no SP key: unsigned reply", func(t *testing.T) {
		f2 := newFixture(t, Config{IDPMetadataXML: idpMetadataWithSLO(t, idpKey(), saml.HTTPPostBinding)})
		ev, err := f2.logoutPOST(t, "SAMLRequest", signedRequestXML(t, f2.idpLogoutRequest(), &kp, sha256), "")
		if err != nil || !ev.Ended || ev.Reply == nil {
			t.Fatalf("HandleLogout() = %+v, %v; want Ended with a Reply", ev, err)
		}
		raw, _ := base64.StdEncoding.DecodeString(ev.Reply.Fields["SAMLResponse"])
		if bytes.Contains(raw, []byte("Signature")) {
			t.Errorf("reply signed without an SP key: %s", raw)
		}
	})
}

// TestIdPLogoutRequestRefused: everything that is not a valid signed
// LogoutRequest from the IdP for this logout URL is refused.
func TestIdPLogoutRequestRefused(t *testing.T) {
	f, _ := sloFixture(t, Config{}, saml.HTTPRedirectBinding, saml.HTTPPostBinding)
	idp, other := idpKey(), otherKey()
	sha256 := dsig.RSASHA256SignatureMethod
	post := func(t *testing.T, req *saml.LogoutRequest, kp *keyPair, method string) error {
		_, err := f.logoutPOST(t, "SAMLRequest", signedRequestXML(t, req, kp, method), "r")
		return err
	}
	redirect := func(t *testing.T, req *saml.LogoutRequest, kp *keyPair, method string) error {
		_, err := f.logoutGET(t, redirectQuery(t, "SAMLRequest", signedRequestXML(t, req, nil, ""), "r", kp, method))
		return err
	}
	for _, tt := range []struct {
		name   string
		mutate func(r *saml.LogoutRequest)
		kp     *keyPair
		method string
		code   string
	}{
		{"unsigned", nil, nil, sha256, CodeSignatureInvalid},
		{"signed by another key", nil, &other, sha256, CodeSignatureInvalid},
		{"sha1", nil, &idp, dsig.RSASHA1SignatureMethod, CodeWeakSignature},
		{"expired NotOnOrAfter", func(r *saml.LogoutRequest) {
			noa := f.now.Add(-4 * time.Minute)
			r.NotOnOrAfter = &noa
		}, &idp, sha256, CodeExpired},
		{"issued long ago", func(r *saml.LogoutRequest) { r.IssueInstant = f.now.Add(-10 * time.Minute) }, &idp, sha256, CodeExpired},
		{"issued in the future", func(r *saml.LogoutRequest) { r.IssueInstant = f.now.Add(2 * time.Minute) }, &idp, sha256, CodeExpired},
		{"wrong destination", func(r *saml.LogoutRequest) { r.Destination = "https://evil.test/logout/acme" }, &idp, sha256, CodeDestinationMismatch},
		{"no destination", func(r *saml.LogoutRequest) { r.Destination = "" }, &idp, sha256, CodeDestinationMismatch},
		{"wrong issuer", func(r *saml.LogoutRequest) { r.Issuer.Value = "https://evil.test/metadata" }, &idp, sha256, CodeIssuerMismatch},
		{"no NameID", func(r *saml.LogoutRequest) { r.NameID = nil }, &idp, sha256, CodeSubject},
		{"transient NameID, no SessionIndex", func(r *saml.LogoutRequest) {
			r.NameID.Format = string(saml.TransientNameIDFormat)
			r.SessionIndex = nil
		}, &idp, sha256, CodeUnknownSession},
	} {
		for name, send := range map[string]func(*testing.T, *saml.LogoutRequest, *keyPair, string) error{"post": post, "redirect": redirect} {
			t.Run(tt.name+"/"+name, func(t *testing.T) {
				req := f.idpLogoutRequest()
				if tt.mutate != nil {
					tt.mutate(req)
				}
				wantCode(t, send(t, req, tt.kp, tt.method), tt.code)
			})
		}
	}

	t.Run("post tampered after signing", func(t *testing.T) {
		b := signedRequestXML(t, f.idpLogoutRequest(), &idp, sha256)
		b = bytes.Replace(b, []byte(">u-1234<"), []byte(">u-9999<"), 1)
		_, err := f.logoutPOST(t, "SAMLRequest", b, "r")
		wantCode(t, err, CodeSignatureInvalid)
	})
	t.Run("redirect tampered after signing", func(t *testing.T) {
		req := f.idpLogoutRequest()
		q := redirectQuery(t, "SAMLRequest", signedRequestXML(t, req, nil, ""), "r", &idp, sha256)
		req.NameID.Value = "u-9999"
		vals, _ := url.ParseQuery(q)
		forged := "SAMLRequest=" + url.QueryEscape(deflate64(t, signedRequestXML(t, req, nil, ""))) + "&RelayState=r&SigAlg=" + url.QueryEscape(vals.Get("SigAlg")) + "&Signature=" + url.QueryEscape(vals.Get("Signature"))
		_, err := f.logoutGET(t, forged)
		wantCode(t, err, CodeSignatureInvalid)
	})
	t.Run("redirect RelayState changed after signing", func(t *testing.T) {
		q := redirectQuery(t, "SAMLRequest", signedRequestXML(t, f.idpLogoutRequest(), nil, ""), "r", &idp, sha256)
		_, err := f.logoutGET(t, strings.Replace(q, "RelayState=r", "RelayState=x", 1))
		wantCode(t, err, CodeSignatureInvalid)
	})
	t.Run("LogoutResponse sent as SAMLRequest", func(t *testing.T) {
		b := signedResponseXML(t, f.idpLogoutResponse("id-x", saml.StatusSuccess), &idp, sha256)
		_, err := f.logoutPOST(t, "SAMLRequest", b, "r")
		wantCode(t, err, CodeInvalidResponse)
		_, err = f.logoutGET(t, redirectQuery(t, "SAMLRequest", signedResponseXML(t, f.idpLogoutResponse("id-x", saml.StatusSuccess), nil, ""), "r", &idp, sha256))
		wantCode(t, err, CodeInvalidResponse)
	})
	t.Run("LogoutRequest sent as SAMLResponse", func(t *testing.T) {
		_, err := f.logoutPOST(t, "SAMLResponse", signedRequestXML(t, f.idpLogoutRequest(), &idp, sha256), "r")
		wantCode(t, err, CodeInvalidResponse)
	})
	t.Run("DOCTYPE", func(t *testing.T) {
		b := signedRequestXML(t, f.idpLogoutRequest(), &idp, sha256)
		b = append([]byte(`<?xml version="1.0"?><!DOCTYPE LogoutRequest [<!ENTITY x "y">]>`), b...)
		_, err := f.logoutPOST(t, "SAMLRequest", b, "r")
		wantCode(t, err, CodeInvalidResponse)
		_, err = f.logoutGET(t, redirectQuery(t, "SAMLRequest", b, "r", &idp, sha256))
		wantCode(t, err, CodeInvalidResponse)
	})
	t.Run("malformed XML", func(t *testing.T) {
		_, err := f.logoutPOST(t, "SAMLRequest", []byte("<samlp:LogoutRequest"), "r")
		wantCode(t, err, CodeInvalidResponse)
		_, err = f.logoutGET(t, "SAMLRequest=%%%")
		wantCode(t, err, CodeInvalidResponse)
		_, err = f.logoutGET(t, "SAMLRequest="+url.QueryEscape(base64.StdEncoding.EncodeToString([]byte("not deflate"))))
		wantCode(t, err, CodeInvalidResponse)
	})
	t.Run("deflate bomb", func(t *testing.T) {
		// 64 MiB of zeros deflate to about 64 KiB: reading must stop at
		// the cap, without inflating (or allocating) the rest.
		var buf bytes.Buffer
		w, _ := flate.NewWriter(&buf, flate.BestCompression)
		zeros := make([]byte, 1<<20)
		for range 64 {
			_, _ = w.Write(zeros)
		}
		_ = w.Close()
		q := "SAMLRequest=" + url.QueryEscape(base64.StdEncoding.EncodeToString(buf.Bytes()))
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := f.logoutGET(t, q)
		runtime.ReadMemStats(&after)
		wantCode(t, err, CodeResponseTooLarge)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
			t.Errorf("refusing a deflate bomb allocated %d bytes", alloc)
		}
	})
	t.Run("oversized POST", func(t *testing.T) {
		_, err := f.logoutForm(t, url.Values{"SAMLRequest": {strings.Repeat("A", 1<<20)}})
		wantCode(t, err, CodeResponseTooLarge)
		big := append(signedRequestXML(t, f.idpLogoutRequest(), &idp, sha256), bytes.Repeat([]byte(" "), maxLogoutMessageBytes)...)
		_, err = f.logoutPOST(t, "SAMLRequest", big, "r")
		wantCode(t, err, CodeResponseTooLarge)
	})
	t.Run("not one message", func(t *testing.T) {
		for _, form := range []url.Values{
			{},
			{"SAMLRequest": {"a"}, "SAMLResponse": {"b"}},
			{"SAMLRequest": {"a", "b"}},
			{"SAMLart": {"AAQ"}},
			{"SAMLRequest": {base64.StdEncoding.EncodeToString(signedRequestXML(t, f.idpLogoutRequest(), &idp, sha256))}, "SigAlg": {sha256}, "Signature": {"x"}},
		} {
			_, err := f.logoutForm(t, form)
			wantCode(t, err, CodeInvalidResponse)
		}
		r := httptest.NewRequest(http.MethodPut, testLogout, nil)
		_, err := f.conn.HandleLogout(context.Background(), r, testLogout)
		wantCode(t, err, CodeInvalidResponse)
	})
	t.Run("another logout URL", func(t *testing.T) {
		form := url.Values{"SAMLRequest": {base64.StdEncoding.EncodeToString(signedRequestXML(t, f.idpLogoutRequest(), &idp, sha256))}}
		r := httptest.NewRequest(http.MethodPost, testLogout, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		_, err := f.conn.HandleLogout(context.Background(), r, "https://elsewhere.test/logout/acme")
		var ue *connectors.UserError
		if err == nil || errors.As(err, &ue) {
			t.Errorf("HandleLogout() with a foreign logout URL: %v, want a plain error", err)
		}
	})
}

// TestSAMLIdPSingleLogout runs single logout against crewjam/saml's IdP
// over real HTTP, which verifies the SP's signed messages with the
// certificate from the SP metadata: SP-initiated (the IdP ends its session
// and answers), then IdP-initiated (the IdP's /logout sends the browser
// with a LogoutRequest, and accepts the connector's reply).
func TestSAMLIdPSingleLogout(t *testing.T) {
	certFile, keyFile := writeKeyPair(t, spKey())
	ti := newTestIdP(t)
	cfg := Config{IDPMetadataURL: ti.srv.URL + "/metadata", SPCertificateFile: certFile, SPKeyFile: keyFile}
	ctx := context.Background()
	impl, err := cfg.Open(ctx, testID, connectors.Options{HTTPClient: ti.client, CallbackURL: testACS, BaseURL: testBaseURL, Now: time.Now, ReplayCache: &memReplay{}})
	if err != nil {
		t.Fatal(err)
	}
	conn := impl.(*Connector)
	_, md, err := conn.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ti.put(t, "/services/broker", string(md))
	idpSLOURL := ti.srv.URL + "/slo"

	signIn := func(t *testing.T) connectors.Identity {
		t.Helper()
		lr, st, err := conn.LoginRequest(ctx, connectors.Scopes{}, testACS, "relay-1")
		if err != nil {
			t.Fatal(err)
		}
		acs := ti.login(t, lr)
		r := httptest.NewRequest(http.MethodPost, testACS, strings.NewReader(acs.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		id, err := conn.HandlePOST(ctx, connectors.Scopes{}, st, r)
		if err != nil {
			t.Fatalf("HandlePOST() error = %v", err)
		}
		if id.SessionID == "" {
			t.Fatal("sign-in has no SessionID")
		}
		return id
	}
	// toBroker follows the IdP's answer to the broker's logout URL: a
	// redirect, or an auto-posting form.
	toBroker := func(t *testing.T, resp *http.Response) *http.Request {
		t.Helper()
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode == http.StatusFound && strings.HasPrefix(loc, testLogout+"?") {
			return httptest.NewRequest(http.MethodGet, loc, nil)
		}
		if resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(`action="`+testLogout+`"`)) {
			form := hiddenFields(body)
			r := httptest.NewRequest(http.MethodPost, testLogout, strings.NewReader(form.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}
		t.Fatalf("the IdP did not send the browser to %s: %s %v\n%s", testLogout, resp.Status, resp.Header, body)
		return nil
	}

	t.Run("sp-initiated", func(t *testing.T) {
		id := signIn(t)
		lr, ok, err := conn.LogoutRequest(ctx, id, testLogout, "st-e2e")
		if err != nil || !ok || !strings.HasPrefix(lr.RedirectURL, idpSLOURL+"?") {
			t.Fatalf("LogoutRequest() = %+v, %v, %v; want a redirect to %s", lr, ok, err, idpSLOURL)
		}
		resp, err := ti.client.Get(lr.RedirectURL)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := conn.HandleLogout(ctx, toBroker(t, resp), testLogout)
		if err != nil {
			t.Fatalf("HandleLogout() error = %v", err)
		}
		if !ev.Returned || !ev.Success || ev.State != "st-e2e" {
			t.Errorf("HandleLogout() = %+v, want Returned, Success, State st-e2e", ev)
		}
		// The IdP session is gone: a new sign-in asks for the password.
		lr2, _, err := conn.LoginRequest(ctx, connectors.Scopes{}, testACS, "relay-2")
		if err != nil {
			t.Fatal(err)
		}
		resp, err = ti.client.Get(lr2.RedirectURL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if bytes.Contains(body, []byte("SAMLResponse")) || !bytes.Contains(body, []byte(`name="password"`)) {
			t.Errorf("the IdP still signs the browser in after logout, or shows no login form: %s", body)
		}
	})

	t.Run("idp-initiated", func(t *testing.T) {
		id := signIn(t)
		resp, err := ti.client.Get(ti.srv.URL + "/logout")
		if err != nil {
			t.Fatal(err)
		}
		ev, err := conn.HandleLogout(ctx, toBroker(t, resp), testLogout)
		if err != nil {
			t.Fatalf("HandleLogout() error = %v", err)
		}
		if !ev.Ended || ev.Subject != id.Subject || ev.SessionID != id.SessionID || ev.ReplayID == "" || ev.Reply == nil {
			t.Fatalf("HandleLogout() = %+v, want Ended for %q, session %q, with a Reply", ev, id.Subject, id.SessionID)
		}
		// The reply goes back to the IdP, which checks it and finishes.
		var back *http.Response
		if ev.Reply.RedirectURL != "" {
			back, err = ti.client.Get(ev.Reply.RedirectURL)
		} else {
			form := url.Values{}
			for k, v := range ev.Reply.Fields {
				form.Set(k, v)
			}
			back, err = ti.client.PostForm(ev.Reply.PostURL, form)
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(back.Body)
		back.Body.Close()
		// An unaccepted answer would be listed as "could not be confirmed".
		if back.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("You have been logged out.")) || bytes.Contains(body, []byte("could not be confirmed")) {
			t.Errorf("the IdP did not accept the LogoutResponse: %s\n%s", back.Status, body)
		}
	})
}
