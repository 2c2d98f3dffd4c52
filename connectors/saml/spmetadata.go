package saml

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"encoding/xml"
	"errors"
	"fmt"
	"os"

	"github.com/beevik/etree"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/fedbroker/fedbroker/jwa"
)

// metadataContentType is the media type of SAML metadata (saml-metadata
// §4.1.1).
const metadataContentType = "application/samlmetadata+xml"

// metadataSigner is the key and certificate that sign the SP metadata.
type metadataSigner struct {
	key    crypto.Signer
	cert   *x509.Certificate
	method string // the XML signature method for the key
}

// Metadata returns this SP's metadata: entity ID, ACS URL (HTTP-POST),
// WantAssertionsSigned as require_signed says and, with an SP key pair, its
// signing and encryption certificate. With metadata_signing_* set, the
// document carries an enveloped XML signature (RSA-SHA256 or ECDSA-SHA256,
// exclusive canonicalization) over the EntityDescriptor.
func (c *Connector) Metadata(ctx context.Context) (string, []byte, error) {
	ed := c.serviceProvider(nil, nil).Metadata()
	// crewjam always says true; an IdP that reads it may then sign the
	// assertion although require_signed only asks for the response.
	want := c.cfg.RequireSigned != SignedResponse
	for i := range ed.SPSSODescriptors {
		ed.SPSSODescriptors[i].WantAssertionsSigned = &want
	}
	if c.mdSigner == nil {
		body, err := xml.MarshalIndent(ed, "", "  ")
		if err != nil {
			return "", nil, fmt.Errorf("saml: marshal metadata: %w", err)
		}
		return metadataContentType, append([]byte(xml.Header), body...), nil
	}
	id := make([]byte, 20)
	if _, err := rand.Read(id); err != nil {
		return "", nil, fmt.Errorf("saml: metadata id: %w", err)
	}
	ed.ID = "id-" + hex.EncodeToString(id)
	body, err := xml.Marshal(ed)
	if err != nil {
		return "", nil, fmt.Errorf("saml: marshal metadata: %w", err)
	}
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(body); err != nil {
		return "", nil, fmt.Errorf("saml: metadata: %w", err)
	}
	sctx, err := dsig.NewSigningContext(c.mdSigner.key, [][]byte{c.mdSigner.cert.Raw})
	if err != nil {
		return "", nil, fmt.Errorf("saml: sign metadata: %w", err)
	}
	if err := sctx.SetSignatureMethod(c.mdSigner.method); err != nil {
		return "", nil, fmt.Errorf("saml: sign metadata: %w", err)
	}
	sctx.Canonicalizer = dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("")
	root := doc.Root()
	sig, err := sctx.ConstructSignature(root, true)
	if err != nil {
		return "", nil, fmt.Errorf("saml: sign metadata: %w", err)
	}
	// The schema wants ds:Signature first; the enveloped-signature
	// transform removes it before digesting, wherever it is.
	root.InsertChildAt(0, sig)
	out, err := doc.WriteToBytes()
	if err != nil {
		return "", nil, fmt.Errorf("saml: write metadata: %w", err)
	}
	return metadataContentType, append([]byte(xml.Header), out...), nil
}

// loadSigner reads the PEM certificate and private key that sign the SP
// metadata: RSA of at least 2048 bits, or ECDSA on P-256, P-384 or P-521.
func loadSigner(certFile, keyFile string) (*metadataSigner, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("read metadata signing certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("read metadata signing key: %w", err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("metadata_signing_certificate_file holds no PEM CERTIFICATE")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse metadata signing certificate: %w", err)
	}
	key, err := jwa.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("metadata_signing_key_file: %w", err)
	}
	s := &metadataSigner{cert: cert}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < minRSAKeyBits {
			return nil, fmt.Errorf("metadata signing key has %d bits, need at least %d", k.N.BitLen(), minRSAKeyBits)
		}
		s.key, s.method = k, dsig.RSASHA256SignatureMethod
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return nil, errors.New("metadata signing key: ECDSA keys must be on P-256, P-384 or P-521")
		}
		s.key, s.method = k, dsig.ECDSASHA256SignatureMethod
	default:
		return nil, fmt.Errorf("metadata signing key: %T is not supported (use RSA or ECDSA)", key)
	}
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(s.key.Public()) {
		return nil, errors.New("metadata_signing_certificate_file does not match metadata_signing_key_file")
	}
	return s, nil
}
