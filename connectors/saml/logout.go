package saml

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/beevik/etree"
	"github.com/crewjam/saml"

	"github.com/fedbroker/fedbroker/connectors"
)

// Single logout (saml-profiles-2.0-os §4.4) over the HTTP-Redirect and
// HTTP-POST bindings, at one URL per connector (LogoutURL).

var _ connectors.LogoutConnector = (*Connector)(nil)

const (
	// maxLogoutMessageBytes caps a logout message: the decoded POST
	// message, and the Redirect message after inflating it, so that a
	// deflate bomb is cut off after this many bytes.
	maxLogoutMessageBytes = 256 << 10
)

// CodeUnknownSession is the code of a LogoutRequest that names nobody a
// sign-in could have given a subject (its NameID is not one this connector
// takes as a subject, or subject_attribute is set) and no SessionIndex.
// HandleLogout's other refusals use the sign-in codes (CodeSignatureInvalid,
// CodeIssuerMismatch, ...).
const CodeUnknownSession = "unknown_session"

// LogoutURL is the single logout URL of connector id for the broker at
// baseURL (its issuer): baseURL/logout/{id}. The SP metadata lists it as
// the SingleLogoutService for both bindings; LogoutRequest and
// HandleLogout accept only it as their logoutURL.
func LogoutURL(baseURL, id string) string {
	return strings.TrimSuffix(baseURL, "/") + "/logout/" + url.PathEscape(id)
}

// rejectLogout builds the UserError HandleLogout returns.
func rejectLogout(code string, err error) error {
	msg := "The logout message from the identity provider was not accepted."
	switch code {
	case CodeResponseTooLarge:
		msg = "The logout message from the identity provider is too large."
	case CodeExpired:
		msg = "The logout message from the identity provider has expired."
	case CodeUnknownSession, CodeSubject:
		msg = "The logout message from the identity provider names no session this service knows."
	}
	return &connectors.UserError{Code: code, Message: msg, Err: err}
}

func (c *Connector) checkLogoutURL(logoutURL string) error {
	if logoutURL != "" && logoutURL != c.sloURL.String() {
		return fmt.Errorf("saml: logout url %q is not the connector's %q", logoutURL, c.sloURL.String())
	}
	return nil
}

// LogoutRequest implements connectors.LogoutConnector: a LogoutRequest for
// the NameID and SessionIndex the sign-in's connector data holds, signed
// with the SP key (a query signature for HTTP-Redirect, an enveloped XML
// signature for HTTP-POST), sent to the IdP's SingleLogoutService
// (HTTP-Redirect preferred) with state as RelayState. ok is false when
// there is nothing to send: no NameID in id.LogoutData (a sign-in from
// before single logout), no SP key to sign with, or no SingleLogoutService
// in the IdP metadata.
//
// The request ID binds state: the IdP's LogoutResponse must answer it
// (InResponseTo) and come back with the same RelayState, so nothing is
// kept on the server.
func (c *Connector) LogoutRequest(ctx context.Context, id connectors.Identity, logoutURL, state string) (connectors.LoginRequest, bool, error) {
	if err := c.checkLogoutURL(logoutURL); err != nil {
		return connectors.LoginRequest{}, false, err
	}
	d, err := decodeLogoutData(id.LogoutData)
	if err != nil {
		return connectors.LoginRequest{}, false, err
	}
	if d.NameID == "" || c.key == nil {
		return connectors.LoginRequest{}, false, nil
	}
	if d.SessionIndex == "" {
		d.SessionIndex = id.SessionID
	}
	idp, err := c.idp.get(ctx)
	if err != nil {
		return connectors.LoginRequest{}, false, &connectors.UserError{Code: "upstream_error", Message: "The sign-in provider is not available right now.", Err: fmt.Errorf("saml: %w: %w", connectors.ErrUnavailable, err)}
	}
	sp := c.serviceProvider(idp, nil)
	binding := saml.HTTPRedirectBinding
	dest := sp.GetSLOBindingLocation(binding)
	if dest == "" {
		binding = saml.HTTPPostBinding
		dest = sp.GetSLOBindingLocation(binding)
	}
	if dest == "" {
		return connectors.LoginRequest{}, false, nil
	}
	reqID, err := newLogoutRequestID(c.id, state)
	if err != nil {
		return connectors.LoginRequest{}, false, err
	}
	nameID := &saml.NameID{Value: d.NameID, Format: d.Format, NameQualifier: d.NameQualifier, SPNameQualifier: d.SPNameQualifier, SPProvidedID: d.SPProvidedID}
	req, err := sp.MakeLogoutRequest(dest, d.NameID, func(r *saml.LogoutRequest) {
		r.ID = reqID
		// The NameID exactly as the assertion carried it (saml-core
		// §3.7.1), not crewjam's configured format and qualifiers.
		r.NameID = nameID
	}, saml.WithSessionIndex(d.SessionIndex))
	if err != nil {
		return connectors.LoginRequest{}, false, fmt.Errorf("saml: make logout request: %w", err)
	}
	if binding == saml.HTTPRedirectBinding {
		u, err := sp.RedirectLogoutRequestURL(req, state)
		if err != nil {
			return connectors.LoginRequest{}, false, fmt.Errorf("saml: logout redirect: %w", err)
		}
		return connectors.LoginRequest{RedirectURL: u.String()}, true, nil
	}
	enc, err := encodeElement(req.Element())
	if err != nil {
		return connectors.LoginRequest{}, false, fmt.Errorf("saml: logout post: %w", err)
	}
	fields := map[string]string{"SAMLRequest": enc}
	if state != "" {
		fields["RelayState"] = state
	}
	return connectors.LoginRequest{PostURL: dest, Fields: fields}, true, nil
}

// encodeElement serializes el and base64-encodes it (HTTP-POST binding).
func encodeElement(el *etree.Element) (string, error) {
	doc := etree.NewDocument()
	doc.SetRoot(el)
	b, err := doc.WriteToBytes()
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// newLogoutRequestID returns a fresh LogoutRequest ID that binds state:
// "id-" + a random nonce + a hash of the connector id, nonce and state.
func newLogoutRequestID(connectorID, state string) (string, error) {
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("saml: logout request id: %w", err)
	}
	return logoutRequestID(connectorID, hex.EncodeToString(nonce), state), nil
}

func logoutRequestID(connectorID, nonce, state string) string {
	h := sha256.Sum256([]byte("fedbroker saml logout request\x00" + connectorID + "\x00" + nonce + "\x00" + state))
	return "id-" + nonce + hex.EncodeToString(h[:16])
}

// logoutRequestIDBinds reports whether id is a LogoutRequest ID this
// connector made for state.
func logoutRequestIDBinds(connectorID, id, state string) bool {
	if len(id) != 3+32+32 || !strings.HasPrefix(id, "id-") {
		return false
	}
	nonce := id[3:35]
	if _, err := hex.DecodeString(nonce); err != nil {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(logoutRequestID(connectorID, nonce, state)), []byte(id)) == 1
}

// logoutMessage is a SAMLRequest or SAMLResponse read from a request to
// the logout URL, before anything in it is trusted.
type logoutMessage struct {
	param      string // "SAMLRequest" or "SAMLResponse"
	binding    string // saml.HTTPRedirectBinding or saml.HTTPPostBinding
	root       *etree.Element
	relayState string
	// querySigned: a Redirect message with SigAlg and Signature, which
	// cover the message exactly as root was read from it.
	querySigned bool
}

// HandleLogout implements connectors.LogoutConnector. A GET carries an
// HTTP-Redirect message, a POST an HTTP-POST one:
//
//   - SAMLResponse, a LogoutResponse to a LogoutRequest of this
//     connector: signed by the IdP, Destination the logout URL, Issuer the
//     IdP, InResponseTo the ID LogoutRequest made for the RelayState it
//     came with. It returns Returned with State (the RelayState) and
//     Success (the top-level status), and the response ID for replay.
//   - SAMLRequest, the IdP's LogoutRequest: signed by the IdP,
//     Destination the logout URL, Issuer the IdP, issued within the skew,
//     not past NotOnOrAfter, with a NameID. It returns Ended with Subject
//     (the Identity.Subject a sign-in with that NameID got; empty with
//     subject_attribute), SessionID (the first SessionIndex), the request
//     ID for replay and Reply: a LogoutResponse (Success, signed when the
//     SP has a key) to the IdP's SingleLogoutService, RelayState echoed;
//     Reply is nil when the IdP metadata has no SingleLogoutService.
//
// Messages over maxLogoutMessageBytes (decoded, or inflated), with a DTD,
// of the wrong kind, unsigned, with a weak or untrusted signature, or
// failing any check are refused with a *connectors.UserError.
func (c *Connector) HandleLogout(ctx context.Context, r *http.Request, logoutURL string) (connectors.LogoutEvent, error) {
	if err := c.checkLogoutURL(logoutURL); err != nil {
		return connectors.LogoutEvent{}, err
	}
	msg, err := readLogoutMessage(r)
	if err != nil {
		return connectors.LogoutEvent{}, err
	}
	idp, err := c.idp.get(ctx)
	if err != nil {
		return connectors.LogoutEvent{}, &connectors.UserError{Code: "upstream_error", Message: "The sign-in provider is not available right now. Please try again later.", Err: fmt.Errorf("saml: %w: %w", connectors.ErrUnavailable, err)}
	}
	if msg.param == "SAMLResponse" {
		return c.handleLogoutResponse(r, msg, idp)
	}
	return c.handleLogoutRequest(r, msg, idp)
}

// readLogoutMessage takes the one SAMLRequest or SAMLResponse of r, caps
// and decodes it (inflating a Redirect one, at most maxLogoutMessageBytes)
// and parses it, refusing a DTD and a root that is not the LogoutRequest
// or LogoutResponse the parameter names.
func readLogoutMessage(r *http.Request) (*logoutMessage, error) {
	msg := &logoutMessage{}
	var vals url.Values
	// The base64 of the largest message, with room for line breaks and
	// the other parameters.
	encMax := base64.StdEncoding.EncodedLen(maxLogoutMessageBytes)
	inputMax := encMax + encMax/64 + formOverhead
	switch r.Method {
	case http.MethodGet:
		msg.binding = saml.HTTPRedirectBinding
		// The deflated message is at most the query; after URL
		// decoding, at most 3/4 of base64.
		if len(r.URL.RawQuery) > 3*inputMax {
			return nil, rejectLogout(CodeResponseTooLarge, fmt.Errorf("saml: logout query of %d bytes", len(r.URL.RawQuery)))
		}
		var err error
		if vals, err = url.ParseQuery(r.URL.RawQuery); err != nil {
			return nil, rejectLogout(CodeInvalidResponse, fmt.Errorf("saml: logout query: %w", err))
		}
	case http.MethodPost:
		msg.binding = saml.HTTPPostBinding
		if q := r.URL.Query(); q.Has("SAMLRequest") || q.Has("SAMLResponse") {
			return nil, rejectLogout(CodeInvalidResponse, errors.New("saml: a logout POST carries its message in the query"))
		}
		if r.PostForm == nil {
			r.Body = http.MaxBytesReader(nil, r.Body, int64(inputMax))
			if err := r.ParseForm(); err != nil {
				var mbe *http.MaxBytesError
				if errors.As(err, &mbe) {
					return nil, rejectLogout(CodeResponseTooLarge, fmt.Errorf("saml: logout form: %w", err))
				}
				return nil, rejectLogout(CodeInvalidResponse, fmt.Errorf("saml: logout form: %w", err))
			}
		}
		vals = r.PostForm
		if vals.Has("SigAlg") || vals.Has("Signature") {
			return nil, rejectLogout(CodeInvalidResponse, errors.New("saml: the HTTP-POST-SimpleSign binding is not supported"))
		}
	default:
		return nil, rejectLogout(CodeInvalidResponse, fmt.Errorf("saml: logout url does not accept %s", r.Method))
	}
	for _, k := range []string{"SAMLRequest", "SAMLResponse", "RelayState", "SigAlg", "Signature"} {
		if len(vals[k]) > 1 {
			return nil, rejectLogout(CodeInvalidResponse, fmt.Errorf("saml: %s appears more than once", k))
		}
	}
	hasReq, hasResp := vals.Get("SAMLRequest") != "", vals.Get("SAMLResponse") != ""
	switch {
	case vals.Has("SAMLart"):
		return nil, rejectLogout(CodeInvalidResponse, errors.New("saml: the HTTP-Artifact binding is not supported"))
	case hasReq == hasResp:
		return nil, rejectLogout(CodeInvalidResponse, errors.New("saml: a logout message needs exactly one of SAMLRequest and SAMLResponse"))
	case hasReq:
		msg.param = "SAMLRequest"
	default:
		msg.param = "SAMLResponse"
	}
	msg.relayState = vals.Get("RelayState")
	msg.querySigned = msg.binding == saml.HTTPRedirectBinding && (vals.Has("SigAlg") || vals.Has("Signature"))
	if alg := vals.Get("SigAlg"); msg.querySigned && !strongSignatureMethods[alg] {
		return nil, rejectLogout(CodeWeakSignature, fmt.Errorf("%w: SigAlg %q", errWeakSignature, alg))
	}

	enc := strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, vals.Get(msg.param))
	if len(enc) > encMax+4 {
		return nil, rejectLogout(CodeResponseTooLarge, fmt.Errorf("saml: %s of %d base64 bytes", msg.param, len(enc)))
	}
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return nil, rejectLogout(CodeInvalidResponse, fmt.Errorf("saml: %s is not base64: %w", msg.param, err))
	}
	if msg.binding == saml.HTTPRedirectBinding {
		fr := flate.NewReader(bytes.NewReader(raw))
		raw, err = io.ReadAll(io.LimitReader(fr, maxLogoutMessageBytes+1))
		_ = fr.Close()
		if err != nil {
			return nil, rejectLogout(CodeInvalidResponse, fmt.Errorf("saml: %s does not inflate: %w", msg.param, err))
		}
	}
	if len(raw) > maxLogoutMessageBytes {
		return nil, rejectLogout(CodeResponseTooLarge, fmt.Errorf("saml: %s over %d bytes", msg.param, maxLogoutMessageBytes))
	}

	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(raw); err != nil {
		return nil, rejectLogout(CodeInvalidResponse, fmt.Errorf("saml: parse %s: %w", msg.param, err))
	}
	for _, tok := range doc.Child {
		if d, ok := tok.(*etree.Directive); ok {
			return nil, rejectLogout(CodeInvalidResponse, fmt.Errorf("saml: %s carries a directive %.20q", msg.param, d.Data))
		}
	}
	want := "LogoutRequest"
	if msg.param == "SAMLResponse" {
		want = "LogoutResponse"
	}
	root := doc.Root()
	if root == nil || root.Tag != want || root.NamespaceURI() != protocolNS {
		return nil, rejectLogout(CodeInvalidResponse, fmt.Errorf("saml: %s is not a samlp:%s", msg.param, want))
	}
	msg.root = root
	return msg, nil
}

// handleLogoutResponse checks the IdP's LogoutResponse (see HandleLogout).
func (c *Connector) handleLogoutResponse(r *http.Request, msg *logoutMessage, idp *saml.EntityDescriptor) (connectors.LogoutEvent, error) {
	// Untrusted yet: a response that does not claim to answer the request
	// made for this RelayState is refused before any signature is checked.
	// crewjam then requires the signed response to say the same.
	inResponseTo := msg.root.SelectAttrValue("InResponseTo", "")
	if !logoutRequestIDBinds(c.id, inResponseTo, msg.relayState) {
		return connectors.LogoutEvent{}, rejectLogout(CodeRequestMismatch, fmt.Errorf("saml: LogoutResponse InResponseTo %q is not a logout request of this connector for its RelayState", inResponseTo))
	}
	rec := &signatureRecorder{}
	sp := c.serviceProvider(idp, rec)
	resp, err := sp.ParseLogoutResponse(r, []string{inResponseTo})
	success := true
	if err != nil {
		code, cause := classifyCode(err)
		if code != CodeStatus {
			return connectors.LogoutEvent{}, rejectLogout(code, fmt.Errorf("saml: logout response: %w", cause))
		}
		// crewjam checks the status last, after the signature, Destination,
		// IssueInstant and Issuer: read the response from what was signed
		// and check the rest here.
		if resp, err = c.signedLogoutResponse(msg, rec); err != nil {
			return connectors.LogoutEvent{}, err
		}
		if resp.InResponseTo != inResponseTo {
			return connectors.LogoutEvent{}, rejectLogout(CodeRequestMismatch, fmt.Errorf("saml: signed InResponseTo %q is not %q", resp.InResponseTo, inResponseTo))
		}
		if resp.Status.StatusCode.Value == saml.StatusSuccess {
			return connectors.LogoutEvent{}, rejectLogout(CodeInvalidResponse, fmt.Errorf("saml: logout response: %w", cause))
		}
		success = false
	}
	if err := c.checkLogoutMessage(resp.Issuer, resp.Destination, idp); err != nil {
		return connectors.LogoutEvent{}, err
	}
	if resp.IssueInstant.After(c.now().Add(c.cfg.AllowedSkew)) {
		return connectors.LogoutEvent{}, rejectLogout(CodeExpired, fmt.Errorf("saml: LogoutResponse issued in the future (%s)", resp.IssueInstant))
	}
	if !success {
		c.logger.Info("saml: the idp reports that single logout failed there", "connector", c.id, "status", resp.Status.StatusCode.Value)
	}
	return connectors.LogoutEvent{
		Returned:    true,
		State:       msg.relayState,
		Success:     success,
		ReplayID:    resp.ID,
		ReplayUntil: c.logoutReplayUntil(resp.IssueInstant, nil),
	}, nil
}

// signedLogoutResponse reads the LogoutResponse from what its verified
// signature covers: the enveloped XML signature the recorder saw, or the
// whole message for a query signature.
func (c *Connector) signedLogoutResponse(msg *logoutMessage, rec *signatureRecorder) (*saml.LogoutResponse, error) {
	el := rec.signedElement("LogoutResponse")
	if el == nil && msg.querySigned {
		el = msg.root
	}
	if el == nil {
		return nil, rejectLogout(CodeSignatureInvalid, errors.New("saml: logout response: no verified signature"))
	}
	doc := etree.NewDocument()
	doc.SetRoot(el.Copy())
	b, err := doc.WriteToBytes()
	if err != nil {
		return nil, rejectLogout(CodeInvalidResponse, fmt.Errorf("saml: logout response: %w", err))
	}
	var resp saml.LogoutResponse
	if err := xml.Unmarshal(b, &resp); err != nil {
		return nil, rejectLogout(CodeInvalidResponse, fmt.Errorf("saml: logout response: %w", err))
	}
	return &resp, nil
}

// checkLogoutMessage checks, on the connector's own terms, what crewjam
// already checked of a verified logout message: its Issuer is the IdP and
// its Destination the logout URL.
func (c *Connector) checkLogoutMessage(issuer *saml.Issuer, destination string, idp *saml.EntityDescriptor) error {
	if issuer == nil || issuer.Value != idp.EntityID {
		return rejectLogout(CodeIssuerMismatch, fmt.Errorf("saml: logout message Issuer is not %q", idp.EntityID))
	}
	if destination != c.sloURL.String() {
		return rejectLogout(CodeDestinationMismatch, fmt.Errorf("saml: logout message Destination %q is not %q", destination, c.sloURL.String()))
	}
	return nil
}

// logoutReplayUntil is past the last moment crewjam or this connector
// could accept a logout message issued at issued: IssueInstant plus
// MaxIssueDelay, or NotOnOrAfter if earlier, plus the skew.
func (c *Connector) logoutReplayUntil(issued time.Time, notOnOrAfter *time.Time) time.Time {
	until := issued.Add(saml.MaxIssueDelay)
	if notOnOrAfter != nil && notOnOrAfter.Before(until) {
		until = *notOnOrAfter
	}
	return until.Add(max(c.cfg.AllowedSkew, saml.MaxClockSkew))
}

// handleLogoutRequest checks the IdP's LogoutRequest (see HandleLogout).
func (c *Connector) handleLogoutRequest(r *http.Request, msg *logoutMessage, idp *saml.EntityDescriptor) (connectors.LogoutEvent, error) {
	rec := &signatureRecorder{}
	sp := c.serviceProvider(idp, rec)
	// ValidateLogoutRequest verifies the signature (query or enveloped;
	// unsigned is refused), reads the request from what it covers, and
	// checks Destination, IssueInstant, NotOnOrAfter, Issuer and the
	// NameID (decrypting an EncryptedID with the SP key). The broker
	// handles replay, so sp has no ReplayCache.
	req, err := sp.ValidateLogoutRequest(r)
	if err != nil {
		code, cause := classifyCode(err)
		if code == CodeInvalidResponse && errors.Is(cause, saml.ErrMissingElement) && strings.Contains(cause.Error(), "NameID") {
			code = CodeSubject
		}
		return connectors.LogoutEvent{}, rejectLogout(code, fmt.Errorf("saml: logout request: %w", cause))
	}
	if err := c.checkLogoutMessage(req.Issuer, req.Destination, idp); err != nil {
		return connectors.LogoutEvent{}, err
	}
	now, skew := c.now(), c.cfg.AllowedSkew
	if req.IssueInstant.After(now.Add(skew)) {
		return connectors.LogoutEvent{}, rejectLogout(CodeExpired, fmt.Errorf("saml: LogoutRequest issued in the future (%s)", req.IssueInstant))
	}
	if req.NotOnOrAfter != nil && !now.Before(req.NotOnOrAfter.Add(skew)) {
		return connectors.LogoutEvent{}, rejectLogout(CodeExpired, fmt.Errorf("saml: LogoutRequest expired at %s", req.NotOnOrAfter))
	}
	if req.NameID == nil || strings.TrimSpace(req.NameID.Value) == "" {
		return connectors.LogoutEvent{}, rejectLogout(CodeSubject, errors.New("saml: LogoutRequest has no NameID"))
	}
	var sessionID string
	for _, si := range req.AllSessionIndexes() {
		if si.Value != "" {
			sessionID = si.Value
			break
		}
	}
	subject := c.nameIDSubject(req.NameID)
	if subject == "" && sessionID == "" {
		return connectors.LogoutEvent{}, rejectLogout(CodeUnknownSession, fmt.Errorf("saml: LogoutRequest NameID (format %q) is no subject of this connector and it names no SessionIndex", req.NameID.Format))
	}
	reply, err := c.logoutReply(sp, idp, msg.binding, req.ID, msg.relayState)
	if err != nil {
		return connectors.LogoutEvent{}, err
	}
	return connectors.LogoutEvent{
		Ended:       true,
		Subject:     subject,
		SessionID:   sessionID,
		ReplayID:    req.ID,
		ReplayUntil: c.logoutReplayUntil(req.IssueInstant, req.NotOnOrAfter),
		Reply:       reply,
	}, nil
}

// logoutReply is the LogoutResponse (Success) to the IdP's LogoutRequest
// requestID, sent to the IdP's SingleLogoutService (its ResponseLocation,
// else Location) with the binding the request came with when the IdP
// offers it, else HTTP-Redirect, else HTTP-POST; nil when the IdP
// metadata has no SingleLogoutService for either.
func (c *Connector) logoutReply(sp *saml.ServiceProvider, idp *saml.EntityDescriptor, binding, requestID, relayState string) (*connectors.LoginRequest, error) {
	ep := idpSLOEndpoint(idp, binding, saml.HTTPRedirectBinding, saml.HTTPPostBinding)
	if ep == nil {
		return nil, nil
	}
	dest := ep.ResponseLocation
	if dest == "" {
		dest = ep.Location
	}
	if ep.Binding == saml.HTTPRedirectBinding {
		// crewjam sends a Redirect LogoutResponse to the Location of the
		// IdP's Redirect SingleLogoutService; give it one whose Location
		// is where responses go.
		one := *sp
		md := *idp
		md.IDPSSODescriptors = []saml.IDPSSODescriptor{{}}
		md.IDPSSODescriptors[0].SingleLogoutServices = []saml.Endpoint{{Binding: saml.HTTPRedirectBinding, Location: dest}}
		one.IDPMetadata = &md
		u, err := one.MakeRedirectLogoutResponse(requestID, relayState)
		if err != nil {
			return nil, fmt.Errorf("saml: logout response: %w", err)
		}
		return &connectors.LoginRequest{RedirectURL: u.String()}, nil
	}
	resp, err := sp.MakeLogoutResponse(dest, requestID)
	if err != nil {
		return nil, fmt.Errorf("saml: logout response: %w", err)
	}
	enc, err := encodeElement(resp.Element())
	if err != nil {
		return nil, fmt.Errorf("saml: logout response: %w", err)
	}
	fields := map[string]string{"SAMLResponse": enc}
	if relayState != "" {
		fields["RelayState"] = relayState
	}
	return &connectors.LoginRequest{PostURL: dest, Fields: fields}, nil
}

// idpSLOEndpoint returns the IdP's first SingleLogoutService with the
// first of bindings it has one for.
func idpSLOEndpoint(idp *saml.EntityDescriptor, bindings ...string) *saml.Endpoint {
	for _, b := range bindings {
		for i := range idp.IDPSSODescriptors {
			for j, ep := range idp.IDPSSODescriptors[i].SingleLogoutServices {
				if ep.Binding == b && ep.Location != "" {
					return &idp.IDPSSODescriptors[i].SingleLogoutServices[j]
				}
			}
		}
	}
	return nil
}
