package saml

import (
	"crypto/x509"
	"errors"
	"fmt"
	"sync"

	"github.com/beevik/etree"
	"github.com/crewjam/saml"
	dsig "github.com/russellhaering/goxmldsig"
)

// strongSignatureMethods are the XML signature algorithms accepted:
// RSA or ECDSA with SHA-256 or stronger.
var strongSignatureMethods = map[string]bool{
	dsig.RSASHA256SignatureMethod:   true,
	dsig.RSASHA384SignatureMethod:   true,
	dsig.RSASHA512SignatureMethod:   true,
	dsig.ECDSASHA256SignatureMethod: true,
	dsig.ECDSASHA384SignatureMethod: true,
	dsig.ECDSASHA512SignatureMethod: true,
}

// strongDigestMethods are the reference digests accepted.
var strongDigestMethods = map[string]bool{
	"http://www.w3.org/2001/04/xmlenc#sha256":       true,
	"http://www.w3.org/2001/04/xmldsig-more#sha384": true,
	"http://www.w3.org/2001/04/xmlenc#sha512":       true,
}

// errWeakSignature is returned for a signature made with an algorithm
// weaker than RSA-SHA256.
var errWeakSignature = errors.New("saml: signature algorithm weaker than SHA-256")

// verifiedSignature is one signature that verified: the element it
// covers (tag and ID) and its algorithm.
type verifiedSignature struct {
	Tag, ID, Method string
}

// signatureRecorder verifies XML signatures for the crewjam service
// provider exactly as it would itself, refuses weak algorithms before
// verifying, and records each signature that verified. Only what it
// records counts as signed: a Signature element merely present in the
// XML never does.
type signatureRecorder struct {
	mu       sync.Mutex
	verified []verifiedSignature
	// elements holds, for each entry of verified, what its signature
	// covers (the element to read a message from).
	elements []*etree.Element
}

var _ saml.SignedElementVerifier = (*signatureRecorder)(nil)

// VerifySignature implements saml.SignatureVerifier.
func (r *signatureRecorder) VerifySignature(vc *dsig.ValidationContext, el *etree.Element) error {
	_, err := r.VerifySignedElement(vc, el)
	return err
}

// VerifySignedElement implements saml.SignedElementVerifier. el is the
// element to verify, detached with its namespaces; vc trusts the IdP's
// signing certificates.
func (r *signatureRecorder) VerifySignedElement(vc *dsig.ValidationContext, el *etree.Element) (*etree.Element, error) {
	method, err := checkAlgorithms(el)
	if err != nil {
		return nil, err
	}
	signed, err := validate(vc, el)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.verified = append(r.verified, verifiedSignature{Tag: el.Tag, ID: el.SelectAttrValue("ID", ""), Method: method})
	r.elements = append(r.elements, signed.Copy())
	return signed, nil
}

// signed reports whether a signature over the element tag with the given
// ID verified. An empty id matches any.
func (r *signatureRecorder) signed(tag, id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.verified {
		if v.Tag == tag && (id == "" || v.ID == id) {
			return true
		}
	}
	return false
}

// signedElement returns what the first verified signature over an element
// named tag covers, nil when none verified.
func (r *signatureRecorder) signedElement(tag string) *etree.Element {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, v := range r.verified {
		if v.Tag == tag {
			return r.elements[i]
		}
	}
	return nil
}

// checkAlgorithms refuses el if any Signature in it (at any depth, in any
// namespace) uses a weak signature or digest method, and returns the
// method of its direct Signature child.
func checkAlgorithms(el *etree.Element) (string, error) {
	method := ""
	for _, sig := range el.FindElements(".//Signature") {
		for _, sm := range sig.FindElements("./SignedInfo/SignatureMethod") {
			alg := sm.SelectAttrValue("Algorithm", "")
			if !strongSignatureMethods[alg] {
				return "", fmt.Errorf("%w: %q", errWeakSignature, alg)
			}
			if sig.Parent() == el {
				method = alg
			}
		}
		for _, dm := range sig.FindElements("./SignedInfo/Reference/DigestMethod") {
			if alg := dm.SelectAttrValue("Algorithm", ""); !strongDigestMethods[alg] {
				return "", fmt.Errorf("%w: digest %q", errWeakSignature, alg)
			}
		}
	}
	return method, nil
}

// validate is what crewjam/saml does without a SignatureVerifier: a
// signature without a certificate in KeyInfo is tried against each
// trusted certificate in turn (several during a key rollover).
func validate(vc *dsig.ValidationContext, el *etree.Element) (*etree.Element, error) {
	if el.FindElement("./Signature/KeyInfo") != nil {
		return vc.Validate(el)
	}
	roots, err := vc.CertificateStore.Certificates()
	if err != nil {
		return nil, err
	}
	if len(roots) <= 1 {
		return vc.Validate(el)
	}
	for _, cert := range roots {
		one := dsig.NewDefaultValidationContext(&dsig.MemoryX509CertificateStore{Roots: []*x509.Certificate{cert}})
		one.IdAttribute, one.Clock = vc.IdAttribute, vc.Clock
		var signed *etree.Element
		if signed, err = one.Validate(el); err == nil {
			return signed, nil
		}
	}
	return nil, err
}
