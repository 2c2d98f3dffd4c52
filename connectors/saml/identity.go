package saml

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/crewjam/saml"

	"github.com/fedbroker/fedbroker/connectors"
)

// subjectFormats are the NameID formats accepted as a subject without a
// subject_attribute: stable identifiers only.
var subjectFormats = map[string]bool{
	string(saml.PersistentNameIDFormat):   true,
	string(saml.EmailAddressNameIDFormat): true,
}

// identity turns a verified assertion into an Identity. Claims hold every
// attribute by its Name as a []any of strings (values of attributes sharing
// a Name are merged), plus "nameid" and "nameid_format", which win over
// attributes of those names.
//
// The subject is the subject_attribute's single value when configured;
// otherwise the NameID, which must be persistent or emailAddress (or the
// configured nameid_format, unless transient).
func (c *Connector) identity(a *saml.Assertion) (connectors.Identity, error) {
	claims := map[string]any{}
	for _, st := range a.AttributeStatements {
		for _, attr := range st.Attributes {
			if attr.Name == "" {
				continue
			}
			vals, _ := claims[attr.Name].([]any)
			for _, v := range attr.Values {
				if v.Nil {
					continue
				}
				val := v.Value
				if v.NameID != nil {
					val = v.NameID.Value
				}
				vals = append(vals, val)
			}
			if vals == nil {
				vals = []any{}
			}
			claims[attr.Name] = vals
		}
	}
	var nameID, format string
	if a.Subject != nil && a.Subject.NameID != nil {
		nameID, format = strings.TrimSpace(a.Subject.NameID.Value), a.Subject.NameID.Format
	}
	if format == "" {
		format = string(saml.UnspecifiedNameIDFormat)
	}
	if c.format != "" && format != string(c.format) {
		return connectors.Identity{}, reject(CodeSubject, fmt.Errorf("saml: NameID format %q is not the configured %q", format, c.format))
	}
	claims["nameid"] = nameID
	claims["nameid_format"] = format

	var subject string
	if c.cfg.SubjectAttribute != "" {
		vals, _ := claims[c.cfg.SubjectAttribute].([]any)
		if len(vals) != 1 {
			return connectors.Identity{}, reject(CodeSubject, fmt.Errorf("saml: subject attribute %q has %d values, want 1", c.cfg.SubjectAttribute, len(vals)))
		}
		subject, _ = vals[0].(string)
		subject = strings.TrimSpace(subject)
	} else {
		if format == string(saml.TransientNameIDFormat) {
			return connectors.Identity{}, reject(CodeSubject, errors.New("saml: transient NameID cannot be a subject; set subject_attribute"))
		}
		if !subjectFormats[format] && format != string(c.format) {
			return connectors.Identity{}, reject(CodeSubject, fmt.Errorf("saml: NameID format %q is not a stable subject; set nameid_format or subject_attribute", format))
		}
		subject = nameID
	}
	if subject == "" {
		return connectors.Identity{}, reject(CodeSubject, errors.New("saml: empty subject"))
	}
	id := connectors.Identity{Subject: subject, Claims: claims}
	ld := logoutData{}
	if a.Subject != nil && a.Subject.NameID != nil {
		n := a.Subject.NameID
		ld = logoutData{NameID: n.Value, Format: n.Format, NameQualifier: n.NameQualifier, SPNameQualifier: n.SPNameQualifier, SPProvidedID: n.SPProvidedID}
	}
	for _, st := range a.AuthnStatements {
		if st.SessionIndex != "" {
			ld.SessionIndex = st.SessionIndex
			break
		}
	}
	id.SessionID = ld.SessionIndex
	if ld.NameID != "" || ld.SessionIndex != "" {
		b, err := json.Marshal(ld)
		if err != nil {
			return connectors.Identity{}, fmt.Errorf("saml: logout data: %w", err)
		}
		id.LogoutData = b
	}
	return id, nil
}

// nameIDSubject returns the Identity.Subject a sign-in with this NameID
// got, by the rules of identity; "" when the subject was not the NameID
// (subject_attribute is set) or such a NameID was not accepted as one.
func (c *Connector) nameIDSubject(n *saml.NameID) string {
	if n == nil || c.cfg.SubjectAttribute != "" {
		return ""
	}
	format := n.Format
	if format == "" {
		format = string(saml.UnspecifiedNameIDFormat)
	}
	if c.format != "" && format != string(c.format) {
		return ""
	}
	if format == string(saml.TransientNameIDFormat) || (!subjectFormats[format] && format != string(c.format)) {
		return ""
	}
	return strings.TrimSpace(n.Value)
}

// logoutData is the Identity.LogoutData of a sign-in: what a
// LogoutRequest for it must name (saml-core §3.7.1), the NameID exactly as
// the assertion carried it and the AuthnStatement's SessionIndex.
type logoutData struct {
	NameID          string `json:"nid,omitempty"`
	Format          string `json:"fmt,omitempty"`
	NameQualifier   string `json:"nq,omitempty"`
	SPNameQualifier string `json:"spnq,omitempty"`
	SPProvidedID    string `json:"spid,omitempty"`
	SessionIndex    string `json:"si,omitempty"`
}

// decodeLogoutData reads Identity.LogoutData; empty data (a sign-in
// from before single logout) decodes to the zero value.
func decodeLogoutData(b []byte) (logoutData, error) {
	var d logoutData
	if len(b) == 0 {
		return d, nil
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("saml: decode logout data: %w", err)
	}
	return d, nil
}
