package saml

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/beevik/etree"
	"github.com/crewjam/saml"

	"github.com/fedbroker/fedbroker/connectors"
)

// Codes of the connectors.UserError values HandlePOST returns.
const (
	CodeInvalidResponse     = "invalid_response"     // malformed, or fails a check not listed below
	CodeResponseTooLarge    = "response_too_large"   // form or SAMLResponse over the cap
	CodeSignatureInvalid    = "signature_invalid"    // unsigned, bad or untrusted signature
	CodeWeakSignature       = "weak_signature"       // SHA-1 or other weak algorithm
	CodeMultipleAssertions  = "multiple_assertions"  // not exactly one assertion
	CodeIssuerMismatch      = "issuer_mismatch"      // Issuer is not the IdP
	CodeAudienceMismatch    = "audience_mismatch"    // no AudienceRestriction naming this SP
	CodeDestinationMismatch = "destination_mismatch" // Destination is not the ACS
	CodeRecipientMismatch   = "recipient_mismatch"   // SubjectConfirmationData Recipient is not the ACS
	CodeRequestMismatch     = "request_mismatch"     // InResponseTo is not this browser's request
	CodeUnsolicited         = "unsolicited_response" // IdP-initiated while not allowed
	CodeExpired             = "expired"              // outside NotBefore/NotOnOrAfter
	CodeReplayed            = "assertion_replayed"   // assertion ID seen before
	CodeStatus              = "access_denied"        // Status is not Success
	CodeSubject             = "unusable_subject"     // no acceptable subject
	CodeDecryption          = "decryption_failed"    // cannot decrypt the assertion
)

const (
	protocolNS  = "urn:oasis:names:tc:SAML:2.0:protocol"
	assertionNS = "urn:oasis:names:tc:SAML:2.0:assertion"
	bearer      = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
	// formOverhead is what the ACS form may carry beyond SAMLResponse.
	formOverhead = 8 << 10
)

// reject builds the UserError HandlePOST returns.
func reject(code string, err error) error {
	msg := "The sign-in response from the identity provider was not accepted. Please try again."
	switch code {
	case CodeResponseTooLarge:
		msg = "The sign-in response from the identity provider is too large."
	case CodeExpired:
		msg = "The sign-in response has expired. Please sign in again."
	case CodeReplayed:
		msg = "This sign-in response was already used. Please sign in again."
	case CodeStatus:
		msg = "The identity provider did not sign you in."
	case CodeUnsolicited, CodeRequestMismatch:
		msg = "This sign-in response does not belong to a sign-in started in this browser. Please sign in again."
	case CodeSubject:
		msg = "The identity provider did not send a usable user identifier."
	}
	if code == CodeStatus {
		err = fmt.Errorf("%w: %w", connectors.ErrRefused, err)
	}
	return &connectors.UserError{Code: code, Message: msg, Err: err}
}

// HandlePOST accepts the IdP's HTTP-POST binding response at the ACS. It
// caps the form and the decoded response before parsing, never inflates
// anything, verifies the response (see the package doc), records the
// assertion ID in the replay cache and returns the identity. Every refusal
// is a *connectors.UserError whose Code names the reason.
func (c *Connector) HandlePOST(ctx context.Context, s connectors.Scopes, connStateBytes []byte, r *http.Request) (connectors.Identity, error) {
	if r.Method != http.MethodPost {
		return connectors.Identity{}, reject(CodeInvalidResponse, errors.New("saml: acs accepts only POST"))
	}
	raw, err := c.readResponse(r)
	if err != nil {
		return connectors.Identity{}, err
	}
	st, err := decodeConnState(connStateBytes)
	if err != nil {
		return connectors.Identity{}, reject(CodeInvalidResponse, err)
	}
	if st.RequestID == "" && c.cfg.IDPInitiated == nil {
		return connectors.Identity{}, reject(CodeUnsolicited, errors.New("saml: no pending request and idp_initiated is not configured"))
	}
	if st.RequestID != "" && r.PostForm.Get("RelayState") != st.RelayState {
		return connectors.Identity{}, reject(CodeRequestMismatch, errors.New("saml: RelayState does not match the request"))
	}
	if err := c.precheck(raw); err != nil {
		return connectors.Identity{}, err
	}
	if c.replay == nil {
		return connectors.Identity{}, ErrNoReplayCache
	}
	idp, err := c.idp.get(ctx)
	if err != nil {
		return connectors.Identity{}, &connectors.UserError{Code: "upstream_error", Message: "The sign-in provider is not available right now. Please try again later.", Err: fmt.Errorf("saml: %w: %w", connectors.ErrUnavailable, err)}
	}

	rec := &signatureRecorder{}
	sp := c.serviceProvider(idp, rec)
	var ids []string
	if st.RequestID != "" {
		ids = []string{st.RequestID}
	}
	assertion, err := sp.ParseXMLResponse(raw, ids, c.acsURL)
	if err != nil {
		return connectors.Identity{}, classify(err)
	}
	if err := c.verifyAssertion(assertion, rec, idp.EntityID, st.RequestID); err != nil {
		return connectors.Identity{}, err
	}
	id, err := c.identity(assertion)
	if err != nil {
		return connectors.Identity{}, err
	}
	fresh, err := c.replay.MarkSeen(ctx, "saml:"+c.id, assertion.ID, c.rememberUntil(assertion))
	if err != nil {
		return connectors.Identity{}, fmt.Errorf("saml: replay cache: %w", err)
	}
	if !fresh {
		return connectors.Identity{}, reject(CodeReplayed, fmt.Errorf("saml: assertion %q already used", assertion.ID))
	}
	return id, nil
}

// readResponse returns the decoded SAMLResponse of the form, capped at
// MaxResponseBytes. The body is capped before parsing when the form was not
// parsed yet.
func (c *Connector) readResponse(r *http.Request) ([]byte, error) {
	max := c.cfg.MaxResponseBytes
	encMax := base64.StdEncoding.EncodedLen(max)
	if r.PostForm == nil {
		r.Body = http.MaxBytesReader(nil, r.Body, int64(encMax+encMax/64+formOverhead))
		if err := r.ParseForm(); err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, reject(CodeResponseTooLarge, fmt.Errorf("saml: form body: %w", err))
			}
			return nil, reject(CodeInvalidResponse, fmt.Errorf("saml: parse form: %w", err))
		}
	}
	if r.PostForm.Has("SAMLRequest") || r.PostForm.Has("SAMLart") {
		return nil, reject(CodeInvalidResponse, errors.New("saml: acs accepts only SAMLResponse"))
	}
	vals := r.PostForm["SAMLResponse"]
	if len(vals) != 1 || vals[0] == "" {
		return nil, reject(CodeInvalidResponse, errors.New("saml: form needs exactly one SAMLResponse"))
	}
	// Line breaks inside the base64 are common; anything else is refused
	// by the decoder.
	enc := vals[0]
	if len(enc) > encMax+encMax/64+2 {
		return nil, reject(CodeResponseTooLarge, fmt.Errorf("saml: SAMLResponse of %d bytes", len(enc)))
	}
	enc = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, enc)
	if base64.StdEncoding.DecodedLen(len(enc)) > max+2 {
		return nil, reject(CodeResponseTooLarge, fmt.Errorf("saml: SAMLResponse of %d base64 bytes", len(enc)))
	}
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return nil, reject(CodeInvalidResponse, fmt.Errorf("saml: SAMLResponse is not base64: %w", err))
	}
	if len(raw) > max {
		return nil, reject(CodeResponseTooLarge, fmt.Errorf("saml: SAMLResponse of %d bytes", len(raw)))
	}
	return raw, nil
}

// precheck refuses, before any signature is checked, a response that is
// not a single samlp:Response holding exactly one assertion (plain or
// encrypted) as a direct child and no other Assertion anywhere, that
// carries a DTD, or whose Destination is not the ACS. It only refuses:
// nothing read here is trusted.
func (c *Connector) precheck(raw []byte) error {
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(raw); err != nil {
		return reject(CodeInvalidResponse, fmt.Errorf("saml: parse response: %w", err))
	}
	for _, tok := range doc.Child {
		if d, ok := tok.(*etree.Directive); ok {
			return reject(CodeInvalidResponse, fmt.Errorf("saml: response carries a directive %.20q", d.Data))
		}
	}
	root := doc.Root()
	if root == nil || root.Tag != "Response" || root.NamespaceURI() != protocolNS {
		return reject(CodeInvalidResponse, errors.New("saml: root is not a samlp:Response"))
	}
	var all, direct int
	var walk func(el *etree.Element)
	walk = func(el *etree.Element) {
		for _, ch := range el.ChildElements() {
			if ch.Tag == "Assertion" || ch.Tag == "EncryptedAssertion" {
				all++
				if el == root {
					direct++
				}
			}
			walk(ch)
		}
	}
	walk(root)
	if all != 1 || direct != 1 {
		return reject(CodeMultipleAssertions, fmt.Errorf("saml: response holds %d assertions (%d direct), want exactly 1", all, direct))
	}
	if d := root.SelectAttrValue("Destination", ""); d != c.acsURL.String() {
		return reject(CodeDestinationMismatch, fmt.Errorf("saml: Destination %q is not the acs %q", d, c.acsURL.String()))
	}
	return nil
}

// classify maps a crewjam error to a UserError with a code.
func classify(err error) error {
	code, err := classifyCode(err)
	return reject(code, fmt.Errorf("saml: %w", err))
}

// classifyCode returns the code of a crewjam error, and the error with a
// crewjam InvalidResponseError unwrapped to its cause.
func classifyCode(err error) (string, error) {
	var ire *saml.InvalidResponseError
	if errors.As(err, &ire) && ire.PrivateErr != nil {
		err = ire.PrivateErr
	}
	var bad saml.ErrBadStatus
	code := CodeInvalidResponse
	switch {
	case errors.As(err, &bad):
		code = CodeStatus
	case errors.Is(err, errWeakSignature), errors.Is(err, saml.ErrUnsupported) && errors.Is(err, saml.ErrInvalidSignature):
		code = CodeWeakSignature
	case errors.Is(err, saml.ErrInvalidSignature), errors.Is(err, saml.ErrUntrustedCertificate), errors.Is(err, saml.ErrCertificateNotValidNow):
		code = CodeSignatureInvalid
	case errors.Is(err, saml.ErrDecryptionFailed):
		code = CodeDecryption
	case errors.Is(err, saml.ErrExpired), errors.Is(err, saml.ErrNotYetValid):
		code = CodeExpired
	case errors.Is(err, saml.ErrIssuerMismatch):
		code = CodeIssuerMismatch
	case errors.Is(err, saml.ErrAudienceMismatch):
		code = CodeAudienceMismatch
	case errors.Is(err, saml.ErrRequestIDMismatch):
		code = CodeRequestMismatch
	case errors.Is(err, saml.ErrDestinationMismatch) && strings.Contains(err.Error(), "Recipient"):
		code = CodeRecipientMismatch
	case errors.Is(err, saml.ErrDestinationMismatch):
		code = CodeDestinationMismatch
	case strings.Contains(err.Error(), "signature element not present"):
		// crewjam/saml keeps this sentinel unexported.
		code = CodeSignatureInvalid
	case strings.Contains(err.Error(), "cannot validate signature"):
		// An HTTP-Redirect query signature that does not verify: crewjam
		// wraps no sentinel.
		code = CodeSignatureInvalid
	}
	return code, err
}

// verifyAssertion checks the assertion crewjam verified again, on its own
// terms: the signatures RequireSigned asks for verified, Issuer, audience,
// bearer confirmation (Recipient, InResponseTo, times) and conditions with
// AllowedSkew.
func (c *Connector) verifyAssertion(a *saml.Assertion, rec *signatureRecorder, idpEntityID, requestID string) error {
	switch c.cfg.RequireSigned {
	case SignedAssertion, SignedBoth:
		if a.ID == "" || !rec.signed("Assertion", a.ID) {
			return reject(CodeSignatureInvalid, errors.New("saml: the assertion is not signed"))
		}
	}
	switch c.cfg.RequireSigned {
	case SignedResponse, SignedBoth:
		if !rec.signed("Response", "") {
			return reject(CodeSignatureInvalid, errors.New("saml: the response is not signed"))
		}
	}
	if a.Issuer.Value != idpEntityID {
		return reject(CodeIssuerMismatch, fmt.Errorf("saml: assertion Issuer %q is not %q", a.Issuer.Value, idpEntityID))
	}
	if a.Conditions == nil || len(a.Conditions.AudienceRestrictions) == 0 {
		return reject(CodeAudienceMismatch, errors.New("saml: assertion has no AudienceRestriction"))
	}
	for i := range a.Conditions.AudienceRestrictions {
		found := false
		for _, aud := range a.Conditions.AudienceRestrictions[i].AllAudiences() {
			found = found || aud.Value == c.cfg.EntityID
		}
		if !found {
			return reject(CodeAudienceMismatch, fmt.Errorf("saml: an AudienceRestriction does not name %q", c.cfg.EntityID))
		}
	}
	now, skew := c.now(), c.cfg.AllowedSkew
	if a.IssueInstant.After(now.Add(skew)) {
		return reject(CodeExpired, fmt.Errorf("saml: assertion issued in the future (%s)", a.IssueInstant))
	}
	if !a.Conditions.NotBefore.IsZero() && a.Conditions.NotBefore.After(now.Add(skew)) {
		return reject(CodeExpired, fmt.Errorf("saml: assertion not valid before %s", a.Conditions.NotBefore))
	}
	if !a.Conditions.NotOnOrAfter.IsZero() && !now.Before(a.Conditions.NotOnOrAfter.Add(skew)) {
		return reject(CodeExpired, fmt.Errorf("saml: assertion expired at %s", a.Conditions.NotOnOrAfter))
	}
	if a.Subject == nil {
		return reject(CodeSubject, errors.New("saml: assertion has no Subject"))
	}
	var firstErr error
	for _, sc := range a.Subject.SubjectConfirmations {
		if sc.Method != bearer {
			continue
		}
		err := c.checkBearer(sc.SubjectConfirmationData, requestID, now, skew)
		if err == nil {
			return nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr == nil {
		firstErr = reject(CodeInvalidResponse, errors.New("saml: assertion has no bearer SubjectConfirmation"))
	}
	return firstErr
}

func (c *Connector) checkBearer(d *saml.SubjectConfirmationData, requestID string, now time.Time, skew time.Duration) error {
	switch {
	case d == nil:
		return reject(CodeInvalidResponse, errors.New("saml: bearer confirmation without data"))
	case d.Recipient != c.acsURL.String():
		return reject(CodeRecipientMismatch, fmt.Errorf("saml: Recipient %q is not the acs %q", d.Recipient, c.acsURL.String()))
	case requestID != "" && d.InResponseTo != requestID:
		return reject(CodeRequestMismatch, fmt.Errorf("saml: InResponseTo %q is not %q", d.InResponseTo, requestID))
	case requestID == "" && d.InResponseTo != "":
		return reject(CodeRequestMismatch, fmt.Errorf("saml: unsolicited response answers request %q", d.InResponseTo))
	case d.NotOnOrAfter.IsZero() || !now.Before(d.NotOnOrAfter.Add(skew)):
		return reject(CodeExpired, fmt.Errorf("saml: bearer confirmation expired at %s", d.NotOnOrAfter))
	case !d.NotBefore.IsZero() && d.NotBefore.After(now.Add(skew)):
		return reject(CodeExpired, fmt.Errorf("saml: bearer confirmation not valid before %s", d.NotBefore))
	}
	return nil
}

// rememberUntil is how long the assertion ID stays in the replay cache:
// past the last moment any check could still accept the assertion.
func (c *Connector) rememberUntil(a *saml.Assertion) time.Time {
	until := a.IssueInstant.Add(saml.MaxIssueDelay)
	if a.Conditions != nil && a.Conditions.NotOnOrAfter.After(until) {
		until = a.Conditions.NotOnOrAfter
	}
	if a.Subject != nil {
		for _, sc := range a.Subject.SubjectConfirmations {
			if d := sc.SubjectConfirmationData; d != nil && d.NotOnOrAfter.After(until) {
				until = d.NotOnOrAfter
			}
		}
	}
	return until.Add(max(c.cfg.AllowedSkew, saml.MaxClockSkew))
}
