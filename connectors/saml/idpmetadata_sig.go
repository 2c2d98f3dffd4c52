package saml

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/beevik/etree"
	"github.com/crewjam/saml"
	dsig "github.com/russellhaering/goxmldsig"
)

// metadataTrust is the set of certificates that may sign the IdP's
// metadata (idp_metadata_signing_certificate_file). A nil *metadataTrust
// takes metadata as it comes, signed or not.
type metadataTrust struct{ certs []*x509.Certificate }

// errMetadataUnsigned is returned for metadata without a signature over
// its root element when a signature is required.
var errMetadataUnsigned = errors.New("idp metadata is not signed: idp_metadata_signing_certificate_file requires a signature over its root element")

// loadMetadataTrust reads every PEM CERTIFICATE in file: at least one,
// RSA keys of at least 2048 bits.
func loadMetadataTrust(file string) (*metadataTrust, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("cannot read: %w", err)
	}
	t := &metadataTrust{}
	for {
		var block *pem.Block
		if block, b = pem.Decode(b); block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(t.certs)+1, err)
		}
		if pub, ok := cert.PublicKey.(*rsa.PublicKey); ok && pub.N.BitLen() < minRSAKeyBits {
			return nil, fmt.Errorf("certificate %d: RSA key of %d bits, need at least %d", len(t.certs)+1, pub.N.BitLen(), minRSAKeyBits)
		}
		t.certs = append(t.certs, cert)
	}
	if len(t.certs) == 0 {
		return nil, errors.New("holds no PEM CERTIFICATE")
	}
	return t, nil
}

// open returns the metadata document b as its signature covers it. The
// root element (EntityDescriptor or EntitiesDescriptor) must carry an
// enveloped signature, RSA or ECDSA with SHA-256 or stronger, that
// references the root itself and verifies with one of t's certificates,
// valid at now. Only the signed element is returned, so nothing outside
// the signature (a wrapping element, a sibling) is ever read.
func (t *metadataTrust) open(b []byte, now time.Time) ([]byte, error) {
	if t == nil {
		return b, nil
	}
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(b); err != nil {
		return nil, fmt.Errorf("idp metadata is not XML: %w", err)
	}
	root := doc.Root()
	if root == nil {
		return nil, errors.New("idp metadata is not XML: no root element")
	}
	if root.FindElement("./Signature") == nil {
		return nil, errMetadataUnsigned
	}
	if _, err := checkAlgorithms(root); err != nil {
		return nil, fmt.Errorf("idp metadata: %w", err)
	}
	vc := dsig.NewDefaultValidationContext(&dsig.MemoryX509CertificateStore{Roots: t.certs})
	vc.Clock = dsig.NewFakeClockAt(now)
	signed, err := validate(vc, root)
	if err != nil {
		if errors.Is(err, dsig.ErrMissingSignature) {
			return nil, errMetadataUnsigned
		}
		return nil, fmt.Errorf("idp metadata signature: %w", err)
	}
	out := etree.NewDocument()
	out.SetRoot(signed)
	return out.WriteToBytes()
}

// readIDPMetadata is parseIDPMetadata of what t's signature covers in b.
func readIDPMetadata(b []byte, t *metadataTrust, now time.Time) (*saml.EntityDescriptor, error) {
	b, err := t.open(b, now)
	if err != nil {
		return nil, err
	}
	return parseIDPMetadata(b)
}
