package saml

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crewjam/saml/logger"
	"github.com/crewjam/saml/samlidp"
	"github.com/google/go-cmp/cmp"

	"github.com/fedbroker/fedbroker/connectors"
)

// alwaysFresh is a replay cache that has seen nothing: the fuzzer posts
// the same assertion many times, and what is checked here is what an
// accepted response carries, not replay.
type alwaysFresh struct{}

func (alwaysFresh) MarkSeen(context.Context, string, string, time.Time) (bool, error) {
	return true, nil
}

// acsTarget is one connector signed in to at crewjam/saml's IdP, with the
// connector state and RelayState of the sign-in, the SAMLResponse the IdP
// posted and the identity HandlePOST made of it.
type acsTarget struct {
	conn       *Connector
	state      []byte
	relayState string
	response   []byte // the XML the IdP signed
	want       connectors.Identity
}

// newACSTarget runs a real sign-in at crewjam/saml's IdP (its own server,
// so that the encrypted and plain set-ups do not share a service
// registration) and returns what the IdP posted to the ACS. The
// connector's clock stands still at clock.
func newACSTarget(tb testing.TB, cfg Config, clock *atomic.Pointer[time.Time]) *acsTarget {
	tb.Helper()
	var handler http.Handler
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	tb.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	kp := idpKey()
	idp, err := samlidp.New(samlidp.Options{URL: *u, Key: kp.key, Certificate: kp.cert, Store: &samlidp.MemoryStore{}, Logger: logger.DefaultLogger})
	if err != nil {
		tb.Fatal(err)
	}
	handler = idp
	client := srv.Client()
	client.Jar, _ = cookiejar.New(nil)
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	do := func(req *http.Request) []byte {
		tb.Helper()
		resp, err := client.Do(req)
		if err != nil {
			tb.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			tb.Fatalf("%s %s: %s: %s", req.Method, req.URL, resp.Status, body)
		}
		return body
	}
	put := func(path, body string) {
		req, _ := http.NewRequest(http.MethodPut, srv.URL+path, strings.NewReader(body))
		do(req)
	}
	postForm := func(u string, form url.Values) []byte {
		req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return do(req)
	}
	put("/users/alice", `{"name":"alice","password":"hunter2","email":"alice@acme.com","groups":["admins","eng"],"given_name":"Alice","surname":"Smith","common_name":"Alice Smith"}`)

	cfg.IDPMetadataURL = srv.URL + "/metadata"
	ctx := context.Background()
	impl, err := cfg.Open(ctx, testID, connectors.Options{
		HTTPClient: client, CallbackURL: testACS, BaseURL: testBaseURL,
		Now:         func() time.Time { return *clock.Load() },
		ReplayCache: alwaysFresh{},
	})
	if err != nil {
		tb.Fatalf("Open() error = %v", err)
	}
	conn := impl.(*Connector)
	_, md, err := conn.Metadata(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	put("/services/broker", string(md))

	const relayState = "relay-fuzz"
	lr, st, err := conn.LoginRequest(ctx, connectors.Scopes{}, testACS, relayState)
	if err != nil {
		tb.Fatalf("LoginRequest() error = %v", err)
	}
	postForm(srv.URL+"/login", url.Values{"user": {"alice"}, "password": {"hunter2"}})
	req, _ := http.NewRequest(http.MethodGet, lr.RedirectURL, nil)
	acs := hiddenFields(do(req))
	raw, err := base64.StdEncoding.DecodeString(acs.Get("SAMLResponse"))
	if err != nil || len(raw) == 0 {
		tb.Fatalf("the IdP posted no SAMLResponse (%v)", err)
	}
	now := time.Now()
	clock.Store(&now)

	tg := &acsTarget{conn: conn, state: st, relayState: relayState, response: raw}
	tg.want, err = tg.post(base64.StdEncoding.EncodeToString(raw))
	if err != nil {
		tb.Fatalf("HandlePOST() of the IdP's response error = %v", err)
	}
	if tg.want.Subject != "alice@acme.com" {
		tb.Fatalf("identity of the IdP's response = %+v", tg.want)
	}
	return tg
}

func (tg *acsTarget) post(samlResponse string) (connectors.Identity, error) {
	form := url.Values{"SAMLResponse": {samlResponse}, "RelayState": {tg.relayState}}
	r := httptest.NewRequest(http.MethodPost, testACS, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return tg.conn.HandlePOST(context.Background(), connectors.Scopes{}, tg.state, r)
}

// hostileResponses are edits of a signed response that attack it: each
// one changes what the identity would say, or hides a second assertion,
// or breaks the document.
func hostileResponses(valid []byte) [][]byte {
	s := string(valid)
	rep := func(old, new string) []byte { return []byte(strings.Replace(s, old, new, 1)) }
	repAll := func(old, new string) []byte { return []byte(strings.ReplaceAll(s, old, new)) }
	var out [][]byte
	out = append(out,
		rep("alice@acme.com", "mallory@acme.com"),
		rep("alice@acme.com", "alice@acme.com<!---->.evil.example"),
		rep(">admins<", ">superadmins<"),
		repAll("alice", "bob"),
		rep("<saml:Assertion", "<!DOCTYPE r [<!ENTITY x \"y\">]><saml:Assertion"),
		[]byte(`<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>`+s),
		rep("SignatureValue>", "SignatureValue>AAAA"),
		rep("<ds:Signature", "<ds:Signaturex"),
		rep("</samlp:Response>", "<saml:Assertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\"/></samlp:Response>"),
		rep("</saml:Subject>", "</saml:Subject><saml:AttributeStatement><saml:Attribute Name=\"role\"><saml:AttributeValue>admin</saml:AttributeValue></saml:Attribute></saml:AttributeStatement>"),
		rep("<saml:AttributeStatement>", "<saml:AttributeStatement><saml:Attribute Name=\"injected\"><saml:AttributeValue>x</saml:AttributeValue></saml:Attribute>"),
		rep("ID=\"", "ID=\"x"),
		[]byte(strings.ToUpper(s)),
		valid[:len(valid)/2],
		append(append([]byte{}, valid...), valid...),
		[]byte(`<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" Destination="`+testACS+`"><samlp:Extensions>`+s+`</samlp:Extensions></samlp:Response>`),
	)
	// The signed assertion moved inside an unsigned copy of itself (a
	// signature wrapping attempt).
	if i, j := strings.Index(s, "<saml:Assertion"), strings.Index(s, "</saml:Assertion>"); i > 0 && j > i {
		assertion := s[i : j+len("</saml:Assertion>")]
		forged := strings.Replace(assertion, "alice@acme.com", "mallory@acme.com", 1)
		out = append(out, []byte(s[:i]+strings.Replace(forged, "</saml:Subject>", "</saml:Subject>"+assertion, 1)+s[j+len("</saml:Assertion>"):]))
	}
	return out
}

// FuzzSAMLACS posts arbitrary SAMLResponse values to HandlePOST of a
// connector that signed in at crewjam/saml's IdP (mode bit 1: with an SP
// key, so that the IdP encrypts the assertion). The fuzzer mutates the XML
// the IdP signed, which is base64-encoded as the IdP does (mode bit 0: the
// bytes go into the form as they are). Properties: HandlePOST never
// panics; every refusal is a *connectors.UserError with a code; and
// whatever it accepts carries exactly the identity the IdP signed.
func FuzzSAMLACS(f *testing.F) {
	var clock atomic.Pointer[time.Time]
	now := time.Now()
	clock.Store(&now)
	dir := f.TempDir()
	certFile, keyFile := filepath.Join(dir, "sp.crt"), filepath.Join(dir, "sp.key")
	sp := spKey()
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: sp.cert.Raw}), 0o600); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(sp.key)}), 0o600); err != nil {
		f.Fatal(err)
	}
	targets := [2]*acsTarget{
		newACSTarget(f, Config{}, &clock),
		newACSTarget(f, Config{SPCertificateFile: certFile, SPKeyFile: keyFile}, &clock),
	}
	if bytes.Contains(targets[0].response, []byte("EncryptedAssertion")) || !bytes.Contains(targets[1].response, []byte("EncryptedAssertion")) {
		f.Fatal("want a plain assertion from the first IdP and an encrypted one from the second")
	}
	for i, tg := range targets {
		mode := uint8(i << 1)
		f.Add(tg.response, mode)
		f.Add([]byte(base64.StdEncoding.EncodeToString(tg.response)), mode|1)
		f.Add([]byte(base64.StdEncoding.EncodeToString(tg.response)[:64]+"\r\n"+base64.StdEncoding.EncodeToString(tg.response)[64:]), mode|1)
		for _, h := range hostileResponses(tg.response) {
			f.Add(h, mode)
		}
	}
	f.Add([]byte("%%%"), uint8(1))
	f.Add([]byte(""), uint8(0))
	f.Add([]byte("<x/>"), uint8(2))

	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		tg := targets[(mode>>1)&1]
		value := base64.StdEncoding.EncodeToString(data)
		if mode&1 != 0 {
			value = string(data)
		}
		id, err := tg.post(value)
		if err != nil {
			var ue *connectors.UserError
			if !errors.As(err, &ue) || ue.Code == "" || ue.Message == "" {
				t.Fatalf("HandlePOST() refused with %v (%T), want a *connectors.UserError with a code and a message", err, err)
			}
			return
		}
		if diff := cmp.Diff(tg.want, id); diff != "" {
			t.Fatalf("HandlePOST() accepted a response whose identity differs from the one the IdP signed (-signed +accepted):\n%s", diff)
		}
	})
}
