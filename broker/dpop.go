package broker

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/tokens"
	"github.com/fedbroker/fedbroker/dpop"
)

// dpopAlgs is the algs parameter of the broker's DPoP challenges (RFC
// 9449 §7.1): the algorithms it accepts in proofs, as discovery lists them.
var dpopAlgs = strings.Join(dpop.DefaultAlgorithms, " ")

// dpopChallenge answers a request to a resource endpoint with a 401 and a
// DPoP challenge (RFC 9449 §7.1) carrying code (invalid_token or
// invalid_dpop_proof). The oauth writer keeps the header: the error asks
// for no challenge of its own.
func dpopChallenge(c echo.Context, code, description string) error {
	c.Response().Header().Set("WWW-Authenticate", fmt.Sprintf(`DPoP error=%q, error_description=%q, algs=%q`, code, description, dpopAlgs))
	return &oauth.Error{Code: code, Description: description, Status: http.StatusUnauthorized}
}

// presentedToken reads the access token of a request to a resource
// endpoint (path, below the issuer): `Authorization: Bearer <token>`, or
// `Authorization: DPoP <token>` with one DPoP proof of this request
// (method, the endpoint's public URL, ath of the token), verified and
// recorded against replay. It returns the token and the thumbprint of the
// proof's key ("" for a bearer token); ok is false when there is no
// token at all. Scheme names are case-insensitive (RFC 9110 §11.1).
func (s *Server) presentedToken(c echo.Context, path string) (token, jkt string, ok bool, err error) {
	r := c.Request()
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	switch {
	case token == "":
		return "", "", false, nil
	case strings.EqualFold(scheme, "Bearer"):
		return token, "", true, nil
	case !strings.EqualFold(scheme, "DPoP"):
		return "", "", false, nil
	}
	p, err := s.token.Grants.VerifyProof(r.Context(), s.rt.Load(), r.Header.Values(dpop.Header), r.Method, s.issuer+path, token, false)
	if err != nil {
		var oe *oauth.Error
		if errors.As(err, &oe) {
			return "", "", true, dpopChallenge(c, oauth.ErrInvalidDPoPProof, oe.Description)
		}
		return "", "", true, err
	}
	return token, p.Thumbprint, true, nil
}

// userinfoError answers the errors of tokens.UserinfoBound: a token
// presented otherwise than its DPoP binding demands gets a DPoP challenge
// (a bound token used as a bearer token, RFC 9449 §7.2), any other
// invalid token the challenge of the scheme it came with.
func userinfoError(c echo.Context, err error, jkt string) error {
	switch {
	case errors.Is(err, tokens.ErrKeyBinding) && jkt == "":
		return dpopChallenge(c, oauth.ErrInvalidToken, "the access token is DPoP-bound: present it with a DPoP proof of its key")
	case errors.Is(err, tokens.ErrKeyBinding):
		return dpopChallenge(c, oauth.ErrInvalidToken, "the access token is not bound to the key of this DPoP proof")
	case errors.Is(err, tokens.ErrInvalid) && jkt != "":
		return dpopChallenge(c, oauth.ErrInvalidToken, oauth.ErrTokenInvalid.Description)
	case errors.Is(err, tokens.ErrInvalid):
		return oauth.ErrTokenInvalid
	case errors.Is(err, tokens.ErrInsufficientScope):
		return &oauth.Error{Code: oauth.ErrInsufficientScope, Description: "the openid scope is required", Status: http.StatusForbidden}
	}
	return err
}
