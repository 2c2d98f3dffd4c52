package demo

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/fedbroker/fedbroker/dpop"
)

// dpopNonceHeader is where a server hands out the nonce for the next
// proof (RFC 9449 §8).
const dpopNonceHeader = "DPoP-Nonce"

// maxTokenResponse caps a token response read to look for use_dpop_nonce.
const maxTokenResponse = 1 << 20

// dpopTransport adds a fresh DPoP proof to every POST to the token
// endpoint, so that the broker binds the tokens it issues to the app's
// key. When the broker answers use_dpop_nonce, it sends the request once
// more with the nonce of the DPoP-Nonce header, and remembers the latest
// nonce for the next request. Other requests pass unchanged.
type dpopTransport struct {
	base     http.RoundTripper
	signer   *dpop.Signer
	tokenURL string

	mu    sync.Mutex
	nonce string
}

// RoundTrip implements http.RoundTripper.
func (t *dpopTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPost || req.URL.String() != t.tokenURL {
		return t.base.RoundTrip(req)
	}
	body, err := readBody(req)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	nonce := t.nonce
	t.mu.Unlock()
	resp, err := t.send(req, body, nonce)
	if err != nil {
		return nil, err
	}
	next := t.remember(resp)
	if next == "" || next == nonce || resp.StatusCode != http.StatusBadRequest {
		return resp, nil
	}
	// Is it use_dpop_nonce? Read the answer, and give it back unread.
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(raw, &e) != nil || e.Error != "use_dpop_nonce" {
		resp.Body = io.NopCloser(bytes.NewReader(raw))
		return resp, nil
	}
	resp, err = t.send(req, body, next)
	if err != nil {
		return nil, err
	}
	t.remember(resp)
	return resp, nil
}

// remember keeps the nonce of resp's DPoP-Nonce header for the next proof,
// and returns it ("" when there is none).
func (t *dpopTransport) remember(resp *http.Response) string {
	next := resp.Header.Get(dpopNonceHeader)
	if next != "" {
		t.mu.Lock()
		t.nonce = next
		t.mu.Unlock()
	}
	return next
}

// send sends a copy of req with body and a new proof carrying nonce.
func (t *dpopTransport) send(req *http.Request, body []byte, nonce string) (*http.Response, error) {
	proof, err := t.signer.Proof(http.MethodPost, t.tokenURL, "", nonce)
	if err != nil {
		return nil, err
	}
	r := req.Clone(req.Context())
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	r.Header.Set(dpop.Header, proof)
	return t.base.RoundTrip(r)
}

// readBody reads and closes req's body, which a retry sends again.
func readBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	defer req.Body.Close()
	b, err := io.ReadAll(io.LimitReader(req.Body, maxTokenResponse+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxTokenResponse {
		return nil, errors.New("demo app: token request body too large")
	}
	return b, nil
}

// isDPoP reports whether a token response's token_type says the access
// token is bound to the app's key.
func isDPoP(tokenType string) bool { return strings.EqualFold(tokenType, "DPoP") }

// apiCall is one call of the demo API, as the page shows it.
type apiCall struct {
	Status, Challenge, Body string
}

// callAPIWith calls the demo API's /whoami with the access token: with a
// fresh DPoP proof of the app's key when proof is set (as the app does for
// a bound token), else as a bearer token with no proof (as someone who
// copied the token would).
func (a *App) callAPIWith(ctx context.Context, accessToken string, proof bool) apiCall {
	target := a.apiURL + "/whoami"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return apiCall{Status: "error", Body: err.Error()}
	}
	if proof && a.dpop != nil {
		p, err := a.dpop.Proof(http.MethodGet, target, accessToken, "")
		if err != nil {
			return apiCall{Status: "error", Body: err.Error()}
		}
		req.Header.Set("Authorization", "DPoP "+accessToken)
		req.Header.Set(dpop.Header, p)
	} else {
		req.Header.Set("Authorization", "Bearer "+accessToken)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return apiCall{Status: "error", Body: err.Error()}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return apiCall{Status: resp.Status, Challenge: resp.Header.Get("WWW-Authenticate"), Body: indentJSON(body)}
}

// curlLine is a command that calls the demo API with the access token as
// the app does: for a bound token, with a proof made for it, good for one
// request within DefaultSkew.
func (a *App) curlLine(accessToken, tokenType string) string {
	target := a.apiURL + "/whoami"
	if !isDPoP(tokenType) || a.dpop == nil {
		return fmt.Sprintf("curl -H \"Authorization: Bearer %s\" %s", accessToken, target)
	}
	p, err := a.dpop.Proof(http.MethodGet, target, accessToken, "")
	if err != nil {
		return "(no DPoP proof: " + err.Error() + ")"
	}
	return fmt.Sprintf("curl -H \"Authorization: DPoP %s\" -H \"DPoP: %s\" %s", accessToken, p, target)
}

// jwtCnfJKT reads a JWT's cnf.jkt claim without verifying anything, for
// display ("" when there is none).
func jwtCnfJKT(tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		Cnf struct {
			JKT string `json:"jkt"`
		} `json:"cnf"`
	}
	if json.Unmarshal(b, &c) != nil {
		return ""
	}
	return c.Cnf.JKT
}
