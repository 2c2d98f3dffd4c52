package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

func randToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// browser is a cookie-keeping client that does not follow redirects.
type browser struct {
	c *http.Client
}

func newBrowser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{c: &http.Client{
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type page struct {
	status   int
	body     string
	location *url.URL
}

func (b *browser) do(req *http.Request) (page, error) {
	resp, err := b.c.Do(req)
	if err != nil {
		return page{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	p := page{status: resp.StatusCode, body: string(body)}
	if loc := resp.Header.Get("Location"); loc != "" {
		p.location, _ = req.URL.Parse(loc)
	}
	return p, nil
}

func (b *browser) get(u string) (page, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return page{}, err
	}
	return b.do(req)
}

func (b *browser) post(u string, form url.Values) (page, error) {
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return page{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var (
	reqField  = regexp.MustCompile(`name="req" value="([^"]+)"`)
	csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

// pkce is a verifier and its S256 challenge.
type pkce struct{ verifier, challenge string }

func newPKCE() pkce {
	v := randToken(32)
	sum := sha256.Sum256([]byte(v))
	return pkce{verifier: v, challenge: base64.RawURLEncoding.EncodeToString(sum[:])}
}

func authorizeURL(issuer, connector string, p pkce) string {
	return issuer + "/authorize?" + url.Values{
		"client_id":             {"app"},
		"redirect_uri":          {appRedirect},
		"response_type":         {"code"},
		"scope":                 {"openid profile email offline_access"},
		"state":                 {"st-" + randToken(6)},
		"nonce":                 {"n-" + randToken(6)},
		"code_challenge":        {p.challenge},
		"code_challenge_method": {"S256"},
		"connector_id":          {connector},
	}.Encode()
}

// loginSteps is a browser login at the local connector split into its
// steps, each of which may be sent through a different replica.
type loginSteps struct {
	b        *browser
	p        pkce
	loginURL *url.URL
}

// authorize runs GET /authorize and returns the login page URL.
func (ls *loginSteps) authorize(issuer string) error {
	ls.b, ls.p = newBrowser(), newPKCE()
	r, err := ls.b.get(authorizeURL(issuer, "local", ls.p))
	if err != nil {
		return err
	}
	if r.status != http.StatusFound || r.location == nil {
		return fmt.Errorf("authorize = %d, want 302; body %.300s", r.status, r.body)
	}
	ls.loginURL = r.location
	return nil
}

// submit fetches the login form and posts alice's password; it returns the
// authorization code.
func (ls *loginSteps) submit(password string) (string, error) {
	return ls.submitWith(password, nil)
}

// submitWith is submit with between called after the form was fetched and
// before it is posted.
func (ls *loginSteps) submitWith(password string, between func()) (string, error) {
	form, err := ls.b.get(ls.loginURL.String())
	if err != nil {
		return "", err
	}
	if form.status != http.StatusOK {
		return "", fmt.Errorf("login page = %d, want 200; body %.300s", form.status, form.body)
	}
	req, csrf := reqField.FindStringSubmatch(form.body), csrfField.FindStringSubmatch(form.body)
	if req == nil || csrf == nil {
		return "", fmt.Errorf("login page has no req/csrf fields: %.300s", form.body)
	}
	if between != nil {
		between()
	}
	action := *ls.loginURL
	action.RawQuery = ""
	done, err := ls.b.post(action.String(), url.Values{"req": {req[1]}, "csrf": {csrf[1]}, "login": {"alice"}, "password": {password}})
	if err != nil {
		return "", err
	}
	if done.status != http.StatusSeeOther || done.location == nil {
		return "", fmt.Errorf("login POST = %d, want 303; body %.300s", done.status, done.body)
	}
	code := done.location.Query().Get("code")
	if code == "" {
		return "", fmt.Errorf("redirect %s has no code", done.location)
	}
	return code, nil
}

// tokenResp is a decoded /token answer, success or error.
type tokenResp struct {
	status       int
	AccessToken  string `json:"access_token"`
	IDToken      string `json:"id_token"`
	RefreshToken string `json:"refresh_token"`
	Error        string `json:"error"`
	Description  string `json:"error_description"`
}

func callToken(base string, form url.Values, user, pass string) (tokenResp, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	status, body, err := postForm(ctx, base+"/token", form, user, pass)
	if err != nil {
		return tokenResp{}, err
	}
	var tr tokenResp
	if err := json.Unmarshal(body, &tr); err != nil {
		return tokenResp{}, fmt.Errorf("token = %d with non-JSON body %.200q", status, body)
	}
	tr.status = status
	return tr, nil
}

func redeem(base, code string, p pkce) (tokenResp, error) {
	return callToken(base, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {appRedirect}, "client_id": {"app"}, "code_verifier": {p.verifier}}, "", "")
}

func refresh(base, rt string) (tokenResp, error) {
	return callToken(base, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"app"}}, "", "")
}

func clientCredentials(base string) (tokenResp, error) {
	return callToken(base, url.Values{"grant_type": {"client_credentials"}}, "svc", svcSecret)
}

// introspect returns the status and the decoded answer of /introspect.
func introspect(base, token string) (int, map[string]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	status, body, err := postForm(ctx, base+"/introspect", url.Values{"token": {token}}, "svc", svcSecret)
	if err != nil {
		return 0, nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return status, nil, fmt.Errorf("introspect = %d with non-JSON body %.200q", status, body)
	}
	return status, m, nil
}

// revoke returns the status and body of /revoke for a refresh token of app.
func revoke(base, token string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	status, body, err := postForm(ctx, base+"/revoke", url.Values{"token": {token}, "client_id": {"app"}}, "", "")
	return status, string(body), err
}

// fullLogin runs every step through issuer and redeems the code there.
func fullLogin(t testing.TB, issuer string) tokenResp {
	t.Helper()
	var ls loginSteps
	if err := ls.authorize(issuer); err != nil {
		t.Fatal(err)
	}
	code, err := ls.submit(alicePassword)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := redeem(issuer, code, ls.p)
	if err != nil {
		t.Fatal(err)
	}
	if tr.status != http.StatusOK {
		t.Fatalf("redeem = %d %s %s, want 200", tr.status, tr.Error, tr.Description)
	}
	return tr
}
