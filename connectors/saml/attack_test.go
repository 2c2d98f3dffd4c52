package saml

import (
	"bytes"
	"encoding/base64"
	"net/url"
	"testing"
	"time"

	"github.com/beevik/etree"
	"github.com/crewjam/saml"
	dsig "github.com/russellhaering/goxmldsig"
)

func TestBuiltResponseAccepted(t *testing.T) {
	f := newFixture(t, Config{})
	st, raw := f.start(t, "state-1")
	got, err := f.post(t, raw, f.build(t, defaultSpec(st.RequestID)), "state-1")
	if err != nil {
		t.Fatalf("HandlePOST() error = %v", err)
	}
	if got.Subject != "u-1234" {
		t.Errorf("Subject = %q, want u-1234", got.Subject)
	}

	// The broker may have parsed the form already.
	st, raw = f.start(t, "state-2")
	r := newPost(url.Values{"SAMLResponse": {f.build(t, defaultSpec(st.RequestID))}, "RelayState": {"state-2"}}.Encode())
	if err := r.ParseForm(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.conn.HandlePOST(t.Context(), scopes(), raw, r); err != nil {
		t.Fatalf("HandlePOST() with a parsed form error = %v", err)
	}
}

// findAssertion returns the first Assertion element under el.
func findAssertion(t *testing.T, el *etree.Element) *etree.Element {
	t.Helper()
	a := el.FindElement(".//Assertion")
	if a == nil {
		t.Fatal("no Assertion in response")
	}
	return a
}

// Every response below is refused with a UserError carrying the code, and
// none panics.
func TestAttacksRejected(t *testing.T) {
	other, rollover := otherKey(), rolloverKey()
	tests := []struct {
		name string
		cfg  Config
		// spec changes the valid default spec.
		spec func(f *fixture, s *responseSpec)
		code string
	}{
		{
			name: "unsigned response and assertion",
			spec: func(f *fixture, s *responseSpec) { s.assertionKey = nil },
			code: CodeSignatureInvalid,
		},
		{
			name: "only the response signed while the assertion must be",
			spec: func(f *fixture, s *responseSpec) { s.responseKey, s.assertionKey = s.assertionKey, nil },
			code: CodeSignatureInvalid,
		},
		{
			name: "only the assertion signed while the response must be",
			cfg:  Config{RequireSigned: SignedResponse},
			spec: func(f *fixture, s *responseSpec) {},
			code: CodeSignatureInvalid,
		},
		{
			name: "only the response signed while both must be",
			cfg:  Config{RequireSigned: SignedBoth},
			spec: func(f *fixture, s *responseSpec) { s.responseKey, s.assertionKey = s.assertionKey, nil },
			code: CodeSignatureInvalid,
		},
		{
			name: "signed by a certificate not in the metadata",
			spec: func(f *fixture, s *responseSpec) { s.assertionKey = &other },
			code: CodeSignatureInvalid,
		},
		{
			name: "response signed by a certificate not in the metadata",
			cfg:  Config{RequireSigned: SignedResponse},
			spec: func(f *fixture, s *responseSpec) { s.responseKey, s.assertionKey = &other, nil },
			code: CodeSignatureInvalid,
		},
		{
			name: "SHA-1 signature",
			spec: func(f *fixture, s *responseSpec) { s.method = dsig.RSASHA1SignatureMethod },
			code: CodeWeakSignature,
		},
		{
			name: "SHA-1 signature on the response",
			cfg:  Config{RequireSigned: SignedResponse},
			spec: func(f *fixture, s *responseSpec) {
				s.responseKey, s.assertionKey, s.method = s.assertionKey, nil, dsig.RSASHA1SignatureMethod
			},
			code: CodeWeakSignature,
		},
		{
			name: "NameID changed after signing",
			spec: func(f *fixture, s *responseSpec) {
				s.tamper = func(t *testing.T, doc *etree.Document) {
					findAssertion(t, doc.Root()).FindElement(".//NameID").SetText("admin")
				}
			},
			code: CodeSignatureInvalid,
		},
		{
			name: "two signed assertions",
			spec: func(f *fixture, s *responseSpec) {
				spec := *s
				s.tamper = func(t *testing.T, doc *etree.Document) {
					doc.Root().AddChild(f.assertionEl(t, spec, "id-second"))
				}
			},
			code: CodeMultipleAssertions,
		},
		{
			name: "two assertions in a signed response",
			cfg:  Config{RequireSigned: SignedResponse},
			spec: func(f *fixture, s *responseSpec) {
				s.responseKey = s.assertionKey
				s.extraAssertions = 1
			},
			code: CodeMultipleAssertions,
		},
		{
			name: "unsigned assertion beside the signed one",
			spec: func(f *fixture, s *responseSpec) {
				evil := *s
				evil.assertionKey, evil.nameID = nil, "admin"
				s.tamper = func(t *testing.T, doc *etree.Document) {
					root := doc.Root()
					signed := findAssertion(t, root)
					root.InsertChildAt(signed.Index(), f.assertionEl(t, evil, "id-evil"))
				}
			},
			code: CodeMultipleAssertions,
		},
		{
			name: "unsigned assertion wrapped around the signed one",
			spec: func(f *fixture, s *responseSpec) {
				evil := *s
				evil.assertionKey, evil.nameID = nil, "admin"
				s.tamper = func(t *testing.T, doc *etree.Document) {
					root := doc.Root()
					signed := findAssertion(t, root)
					root.RemoveChild(signed)
					wrapper := f.assertionEl(t, evil, "id-evil")
					advice := wrapper.CreateElement("saml:Advice")
					advice.AddChild(signed)
					root.AddChild(wrapper)
				}
			},
			code: CodeMultipleAssertions,
		},
		{
			name: "signed assertion hidden in Extensions, unsigned one in its place",
			spec: func(f *fixture, s *responseSpec) {
				evil := *s
				evil.assertionKey, evil.nameID = nil, "admin"
				s.tamper = func(t *testing.T, doc *etree.Document) {
					root := doc.Root()
					signed := findAssertion(t, root)
					root.RemoveChild(signed)
					ext := etree.NewElement("samlp:Extensions")
					ext.AddChild(signed)
					root.InsertChildAt(1, ext)
					root.AddChild(f.assertionEl(t, evil, "id-evil"))
				}
			},
			code: CodeMultipleAssertions,
		},
		{
			name: "signature moved to another assertion",
			spec: func(f *fixture, s *responseSpec) {
				evil := *s
				evil.assertionKey, evil.nameID = nil, "admin"
				s.tamper = func(t *testing.T, doc *etree.Document) {
					root := doc.Root()
					signed := findAssertion(t, root)
					sig := signed.FindElement("./Signature")
					signed.RemoveChild(sig)
					root.RemoveChild(signed)
					ev := f.assertionEl(t, evil, "id-evil")
					ev.InsertChildAt(1, sig)
					root.AddChild(ev)
				}
			},
			code: CodeSignatureInvalid,
		},
		{
			name: "signature moved to an assertion with the signed ID",
			spec: func(f *fixture, s *responseSpec) {
				evil := *s
				evil.assertionKey, evil.nameID = nil, "admin"
				s.tamper = func(t *testing.T, doc *etree.Document) {
					root := doc.Root()
					signed := findAssertion(t, root)
					sig := signed.FindElement("./Signature")
					signed.RemoveChild(sig)
					root.RemoveChild(signed)
					ev := f.assertionEl(t, evil, signed.SelectAttrValue("ID", ""))
					ev.InsertChildAt(1, sig)
					root.AddChild(ev)
				}
			},
			code: CodeSignatureInvalid,
		},
		{
			name: "response signature moved onto the assertion",
			cfg:  Config{RequireSigned: SignedResponse},
			spec: func(f *fixture, s *responseSpec) {
				s.responseKey, s.assertionKey = s.assertionKey, nil
				s.tamper = func(t *testing.T, doc *etree.Document) {
					root := doc.Root()
					sig := root.FindElement("./Signature")
					root.RemoveChild(sig)
					a := findAssertion(t, root)
					a.InsertChildAt(1, sig)
				}
			},
			code: CodeSignatureInvalid,
		},
		{
			name: "wrong audience",
			spec: func(f *fixture, s *responseSpec) {
				s.mutateAssertion = func(a *saml.Assertion) {
					a.Conditions.AudienceRestrictions[0].Audience.Value = "https://other-sp.test"
				}
			},
			code: CodeAudienceMismatch,
		},
		{
			name: "no AudienceRestriction",
			spec: func(f *fixture, s *responseSpec) {
				s.mutateAssertion = func(a *saml.Assertion) { a.Conditions.AudienceRestrictions = nil }
			},
			code: CodeAudienceMismatch,
		},
		{
			name: "wrong recipient",
			spec: func(f *fixture, s *responseSpec) {
				s.mutateAssertion = func(a *saml.Assertion) {
					a.Subject.SubjectConfirmations[0].SubjectConfirmationData.Recipient = "https://other-sp.test/acs"
				}
			},
			code: CodeRecipientMismatch,
		},
		{
			name: "wrong destination",
			spec: func(f *fixture, s *responseSpec) {
				s.mutateResponse = func(r *saml.Response) { r.Destination = "https://other-sp.test/acs" }
			},
			code: CodeDestinationMismatch,
		},
		{
			name: "missing destination",
			spec: func(f *fixture, s *responseSpec) {
				s.mutateResponse = func(r *saml.Response) { r.Destination = "" }
			},
			code: CodeDestinationMismatch,
		},
		{
			name: "wrong issuer",
			spec: func(f *fixture, s *responseSpec) {
				s.mutateAssertion = func(a *saml.Assertion) { a.Issuer.Value = "https://evil-idp.test" }
			},
			code: CodeIssuerMismatch,
		},
		{
			name: "expired",
			spec: func(f *fixture, s *responseSpec) {
				s.mutateAssertion = func(a *saml.Assertion) {
					past := f.now.Add(-10 * time.Minute)
					a.Conditions.NotOnOrAfter = past
					a.Subject.SubjectConfirmations[0].SubjectConfirmationData.NotOnOrAfter = past
				}
			},
			code: CodeExpired,
		},
		{
			name: "expired beyond the configured skew",
			cfg:  Config{AllowedSkew: 30 * time.Second},
			spec: func(f *fixture, s *responseSpec) {
				s.mutateAssertion = func(a *saml.Assertion) {
					a.Conditions.NotOnOrAfter = f.now.Add(-time.Minute)
				}
			},
			code: CodeExpired,
		},
		{
			name: "not yet valid beyond the configured skew",
			cfg:  Config{AllowedSkew: 30 * time.Second},
			spec: func(f *fixture, s *responseSpec) {
				s.mutateAssertion = func(a *saml.Assertion) { a.Conditions.NotBefore = f.now.Add(time.Minute) }
			},
			code: CodeExpired,
		},
		{
			name: "issued long ago",
			spec: func(f *fixture, s *responseSpec) {
				s.mutateAssertion = func(a *saml.Assertion) { a.IssueInstant = f.now.Add(-time.Hour) }
			},
			code: CodeExpired,
		},
		{
			name: "another browser's request",
			spec: func(f *fixture, s *responseSpec) { s.requestID = "id-another-browsers-request" },
			code: CodeRequestMismatch,
		},
		{
			name: "no InResponseTo",
			spec: func(f *fixture, s *responseSpec) { s.requestID = "" },
			code: CodeRequestMismatch,
		},
		{
			name: "assertion answers another request than the response",
			spec: func(f *fixture, s *responseSpec) {
				s.mutateAssertion = func(a *saml.Assertion) {
					a.Subject.SubjectConfirmations[0].SubjectConfirmationData.InResponseTo = "id-another"
				}
			},
			code: CodeRequestMismatch,
		},
		{
			name: "status not success",
			spec: func(f *fixture, s *responseSpec) {
				s.mutateResponse = func(r *saml.Response) { r.Status.StatusCode.Value = saml.StatusRequester }
			},
			code: CodeStatus,
		},
		{
			name: "transient NameID without subject_attribute",
			spec: func(f *fixture, s *responseSpec) { s.format = string(saml.TransientNameIDFormat) },
			code: CodeSubject,
		},
		{
			name: "unspecified NameID",
			spec: func(f *fixture, s *responseSpec) { s.format = "" },
			code: CodeSubject,
		},
		{
			name: "NameID format other than the configured one",
			cfg:  Config{NameIDFormat: "email"},
			spec: func(f *fixture, s *responseSpec) {},
			code: CodeSubject,
		},
		{
			name: "subject attribute with two values",
			cfg:  Config{SubjectAttribute: "groups"},
			spec: func(f *fixture, s *responseSpec) {},
			code: CodeSubject,
		},
		{
			name: "signed by the rollover certificate but for another SP",
			spec: func(f *fixture, s *responseSpec) {
				s.assertionKey = &rollover
				s.mutateAssertion = func(a *saml.Assertion) {
					a.Conditions.AudienceRestrictions = append(a.Conditions.AudienceRestrictions, saml.AudienceRestriction{Audience: saml.Audience{Value: "https://other-sp.test"}})
				}
			},
			code: CodeAudienceMismatch,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.cfg)
			st, raw := f.start(t, "state-1")
			spec := defaultSpec(st.RequestID)
			tt.spec(f, &spec)
			id, err := f.post(t, raw, f.build(t, spec), "state-1")
			if err == nil {
				t.Fatalf("HandlePOST() = %+v, want error %q", id, tt.code)
			}
			wantCode(t, err, tt.code)
		})
	}
}

func TestRequireSignedVariantsAccepted(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		spec func(s *responseSpec)
	}{
		{"assertion signed", Config{}, func(s *responseSpec) {}},
		{"both signed, assertion required", Config{}, func(s *responseSpec) { s.responseKey = s.assertionKey }},
		{"response signed", Config{RequireSigned: SignedResponse}, func(s *responseSpec) { s.responseKey, s.assertionKey = s.assertionKey, nil }},
		{"both signed, both required", Config{RequireSigned: SignedBoth}, func(s *responseSpec) { s.responseKey = s.assertionKey }},
		{"rollover certificate", Config{}, func(s *responseSpec) { kp := rolloverKey(); s.assertionKey = &kp }},
		{"rollover certificate without KeyInfo", Config{}, func(s *responseSpec) {
			kp := rolloverKey()
			s.assertionKey = &kp
			s.tamper = func(t *testing.T, doc *etree.Document) {
				sig := findAssertion(t, doc.Root()).FindElement("./Signature")
				sig.RemoveChild(sig.FindElement("./KeyInfo"))
			}
		}},
		{"RSA-SHA512", Config{}, func(s *responseSpec) { s.method = dsig.RSASHA512SignatureMethod }},
		{"within the allowed skew", Config{AllowedSkew: 2 * time.Minute}, func(s *responseSpec) {
			s.mutateAssertion = func(a *saml.Assertion) { a.Conditions.NotBefore = a.IssueInstant.Add(time.Minute) }
		}},
		{"transient NameID with subject_attribute", Config{SubjectAttribute: "email"}, func(s *responseSpec) {
			s.format = string(saml.TransientNameIDFormat)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.cfg)
			st, raw := f.start(t, "state-1")
			spec := defaultSpec(st.RequestID)
			tt.spec(&spec)
			id, err := f.post(t, raw, f.build(t, spec), "state-1")
			if err != nil {
				t.Fatalf("HandlePOST() error = %v", err)
			}
			if id.Subject == "" {
				t.Errorf("HandlePOST() Subject is empty")
			}
		})
	}
}

// admin@acme.com<!---->.evil.com must never become admin@acme.com.
func TestCommentInNameID(t *testing.T) {
	f := newFixture(t, Config{})
	st, raw := f.start(t, "state-1")
	spec := defaultSpec(st.RequestID)
	spec.format, spec.nameID = string(saml.EmailAddressNameIDFormat), "admin@acme.com.evil.com"
	spec.tamper = func(t *testing.T, doc *etree.Document) {
		nameID := findAssertion(t, doc.Root()).FindElement(".//NameID")
		for len(nameID.Child) > 0 {
			nameID.RemoveChildAt(0)
		}
		nameID.AddChild(etree.NewText("admin@acme.com"))
		nameID.AddChild(etree.NewComment(""))
		nameID.AddChild(etree.NewText(".evil.com"))
	}
	xmlBytes := f.buildXML(t, spec)
	if !bytes.Contains(xmlBytes, []byte("admin@acme.com<!---->.evil.com")) {
		t.Fatalf("test response lacks the comment: %s", xmlBytes)
	}
	id, err := f.post(t, raw, base64.StdEncoding.EncodeToString(xmlBytes), "state-1")
	if err != nil {
		// Refusing is as good as reading the whole value.
		wantCode(t, err, CodeSignatureInvalid)
		return
	}
	if id.Subject != "admin@acme.com.evil.com" || id.Claims["nameid"] != "admin@acme.com.evil.com" {
		t.Errorf("Subject = %q, nameid = %v, want admin@acme.com.evil.com", id.Subject, id.Claims["nameid"])
	}
}
