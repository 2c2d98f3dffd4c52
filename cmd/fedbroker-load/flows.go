package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
)

const (
	grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeJWT       = "urn:ietf:params:oauth:token-type:jwt"
)

func randToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// tokenAnswer is a /token response, success or OAuth error.
type tokenAnswer struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	Error        string `json:"error"`
}

// token posts form to base/token and returns the answer of a 200, or an
// error named by status and OAuth error code.
func (d *driver) token(ctx context.Context, c *http.Client, base string, form url.Values, user, pass string) (tokenAnswer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		return tokenAnswer{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	resp, err := c.Do(req)
	if err != nil {
		return tokenAnswer{}, err
	}
	defer resp.Body.Close()
	var a tokenAnswer
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&a); err != nil {
		return a, failf("token %d non-JSON", resp.StatusCode)
	}
	if resp.StatusCode != http.StatusOK || a.AccessToken == "" {
		return a, failf("token %d %s", resp.StatusCode, a.Error)
	}
	return a, nil
}

type ccWorker struct{ d *driver }

func (w *ccWorker) op(ctx context.Context) error {
	_, err := w.d.token(ctx, w.d.client, w.d.base(), url.Values{"grant_type": {"client_credentials"}}, w.d.o.clientID, w.d.o.clientSecret)
	return err
}

type exchangeWorker struct{ d *driver }

func (w *exchangeWorker) op(ctx context.Context) error {
	jwt, err := w.d.workload.sign(w.d.o.audience)
	if err != nil {
		return err
	}
	_, err = w.d.token(ctx, w.d.client, w.d.base(), url.Values{
		"grant_type":         {grantTokenExchange},
		"subject_token":      {jwt},
		"subject_token_type": {tokenTypeJWT},
	}, w.d.o.clientID, w.d.o.clientSecret)
	return err
}

var (
	reqField  = regexp.MustCompile(`name="req" value="([^"]+)"`)
	csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

// browserLogin runs one full login in a fresh cookie jar, each step on the
// next target, and returns the token answer.
func (d *driver) browserLogin(ctx context.Context) (tokenAnswer, error) {
	o := d.o
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Transport: d.client.Transport, Jar: jar, Timeout: d.client.Timeout, CheckRedirect: d.client.CheckRedirect}
	verifier := randToken(32)
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{
		"client_id":             {o.publicClient},
		"redirect_uri":          {o.redirectURI},
		"response_type":         {"code"},
		"scope":                 {"openid profile email offline_access"},
		"state":                 {randToken(8)},
		"nonce":                 {randToken(8)},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"},
		"connector_id":          {o.connector},
	}
	do := func(method, u string, form url.Values) (*http.Response, string, error) {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequestWithContext(ctx, method, u, body)
		if err != nil {
			return nil, "", err
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp, string(b), nil
	}
	// onTarget moves an absolute URL the broker sent onto the next target.
	onTarget := func(loc string) (string, error) {
		u, err := url.Parse(loc)
		if err != nil {
			return "", failf("bad Location")
		}
		return d.base() + u.Path + "?" + u.RawQuery, nil
	}

	resp, _, err := do(http.MethodGet, d.base()+"/authorize?"+q.Encode(), nil)
	if err != nil {
		return tokenAnswer{}, err
	}
	if resp.StatusCode != http.StatusFound {
		return tokenAnswer{}, failf("authorize %d", resp.StatusCode)
	}
	loginURL, err := onTarget(resp.Header.Get("Location"))
	if err != nil {
		return tokenAnswer{}, err
	}
	resp, page, err := do(http.MethodGet, loginURL, nil)
	if err != nil {
		return tokenAnswer{}, err
	}
	req, csrf := reqField.FindStringSubmatch(page), csrfField.FindStringSubmatch(page)
	if resp.StatusCode != http.StatusOK || req == nil || csrf == nil {
		return tokenAnswer{}, failf("login page %d", resp.StatusCode)
	}
	action, _ := onTarget(loginURL)
	action = action[:strings.IndexByte(action, '?')]
	resp, _, err = do(http.MethodPost, action, url.Values{"req": {req[1]}, "csrf": {csrf[1]}, "login": {o.user}, "password": {o.password}})
	if err != nil {
		return tokenAnswer{}, err
	}
	if resp.StatusCode != http.StatusSeeOther {
		return tokenAnswer{}, failf("login POST %d", resp.StatusCode)
	}
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || back.Query().Get("code") == "" {
		return tokenAnswer{}, failf("login POST: no code in redirect")
	}
	return d.token(ctx, d.client, d.base(), url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {back.Query().Get("code")},
		"redirect_uri":  {o.redirectURI},
		"client_id":     {o.publicClient},
		"code_verifier": {verifier},
	}, "", "")
}

type loginWorker struct{ d *driver }

func (w *loginWorker) op(ctx context.Context) error {
	_, err := w.d.browserLogin(ctx)
	return err
}

// refreshWorker logs in once and then rotates its refresh token; when the
// family is lost (invalid_grant) it logs in again before the next rotation.
type refreshWorker struct {
	d  *driver
	rt string
}

func (w *refreshWorker) login(ctx context.Context) error {
	a, err := w.d.browserLogin(ctx)
	if err != nil {
		return err
	}
	if a.RefreshToken == "" {
		return errors.New("no refresh token: does the client allow refresh_token and the scope offline_access?")
	}
	w.rt = a.RefreshToken
	return nil
}

func (w *refreshWorker) op(ctx context.Context) error {
	if w.rt == "" {
		if err := w.login(ctx); err != nil {
			return fmt.Errorf("re-login: %w", err)
		}
	}
	a, err := w.d.token(ctx, w.d.client, w.d.base(), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {w.rt}, "client_id": {w.d.o.publicClient}}, "", "")
	if err != nil {
		if a.Error == "invalid_grant" {
			w.rt = ""
		}
		return err
	}
	w.rt = a.RefreshToken
	return nil
}
