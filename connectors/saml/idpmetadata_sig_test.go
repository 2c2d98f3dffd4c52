package saml

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/beevik/etree"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/fedbroker/fedbroker/connectors"
)

// signMetadata signs the root of the metadata document md (giving it an
// ID when it has none) with kp, as an IdP or a federation operator does.
func signMetadata(t *testing.T, md string, kp keyPair, method string) string {
	t.Helper()
	doc := etree.NewDocument()
	if err := doc.ReadFromString(md); err != nil {
		t.Fatal(err)
	}
	root := doc.Root()
	if root.SelectAttr("ID") == nil {
		root.CreateAttr("ID", "id-"+randomID())
	}
	root.InsertChildAt(0, signEl(t, root, kp, method))
	out, err := doc.WriteToString()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// trustFile writes the PEM certificates of kps to a file.
func trustFile(t *testing.T, kps ...keyPair) string {
	t.Helper()
	var b []byte
	for _, kp := range kps {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: kp.cert.Raw})...)
	}
	p := filepath.Join(t.TempDir(), "md-signers.pem")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestIDPMetadataSignature: with idp_metadata_signing_certificate_file,
// IdP metadata from any source is used only when its root element carries
// a valid signature, SHA-256 or stronger, by one of those certificates;
// what the connector then trusts is what the signature covers.
func TestIDPMetadataSignature(t *testing.T) {
	signer := spKey() // the metadata signer: not the IdP's assertion key
	plain := idpMetadataXML(t, idpKey())
	signed := signMetadata(t, plain, signer, dsig.RSASHA256SignatureMethod)
	trust := trustFile(t, otherKey(), signer) // several certificates: any may sign

	// Tampering after signing: the IdP's signing certificate swapped for
	// an attacker's.
	swapped := strings.Replace(signed, certData(idpKey()), certData(otherKey()), 1)
	if swapped == signed {
		t.Fatal("test setup: the IdP certificate is not in the metadata")
	}
	// Signature wrapping: the signed document moved inside an
	// EntitiesDescriptor next to an unsigned IdP of the attacker's.
	wrapped := `<EntitiesDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata">` + stripDecl(signed) +
		stripDecl(strings.Replace(idpMetadataXML(t, otherKey()), idpEntity, "https://evil.test/metadata", 1)) + `</EntitiesDescriptor>`
	// A signature over another element than the root.
	inner := func() string {
		doc := etree.NewDocument()
		if err := doc.ReadFromString(plain); err != nil {
			t.Fatal(err)
		}
		d := doc.Root().FindElement("./IDPSSODescriptor")
		d.CreateAttr("ID", "id-inner")
		d.InsertChildAt(0, signEl(t, d, signer, dsig.RSASHA256SignatureMethod))
		s, _ := doc.WriteToString()
		return s
	}()
	// The inner element's signature moved up to the root: it still
	// references the inner element, not the root.
	moved := func() string {
		doc := etree.NewDocument()
		if err := doc.ReadFromString(inner); err != nil {
			t.Fatal(err)
		}
		sig := doc.Root().FindElement("./IDPSSODescriptor/Signature")
		sig.Parent().RemoveChild(sig)
		doc.Root().InsertChildAt(0, sig)
		s, _ := doc.WriteToString()
		return s
	}()
	federation := signMetadata(t, `<EntitiesDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata">`+stripDecl(plain)+`</EntitiesDescriptor>`, signer, dsig.RSASHA256SignatureMethod)

	for _, tt := range []struct {
		name, md, want string // want "" accepted, else a fragment of the error
	}{
		{"signed", signed, ""},
		{"signed with RSA-SHA512", signMetadata(t, plain, signer, dsig.RSASHA512SignatureMethod), ""},
		{"a signed federation aggregate", federation, ""},
		{"unsigned", plain, "not signed"},
		{"signed by an untrusted key", signMetadata(t, plain, rolloverKey(), dsig.RSASHA256SignatureMethod), "signature"},
		{"signed with RSA-SHA1", signMetadata(t, plain, signer, dsig.RSASHA1SignatureMethod), "weaker than SHA-256"},
		{"certificate swapped after signing", swapped, "signature"},
		{"signature wrapped in an unsigned aggregate", wrapped, "not signed"},
		{"only an inner element signed", inner, "not signed"},
		{"the root carrying a signature of an inner element", moved, "not signed"},
		{"not XML", "<EntityDescriptor", "XML"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// At load: a config error at the source's path.
			cfg := Config{IDPMetadataXML: tt.md, IDPMetadataSigningCertificateFile: trust}
			errs := cfg.Validate()
			switch {
			case tt.want == "" && len(errs) > 0:
				t.Fatalf("Validate() = %v, want none", errs)
			case tt.want != "" && (len(errs) != 1 || errs[0].Path != "idp_metadata_xml" || !strings.Contains(errs[0].Message, tt.want)):
				t.Fatalf("Validate() = %v, want one problem at idp_metadata_xml containing %q", errs, tt.want)
			}
			// Fetched from a URL: never used.
			ms := newMetadataServer(t, tt.md)
			src := &metadataSource{url: ms.srv.URL, client: ms.srv.Client(), refresh: time.Hour, now: time.Now, trust: mustTrust(t, trust)}
			ed, err := src.get(context.Background())
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("get() = %v", err)
			case tt.want == "" && ed.EntityID != idpEntity:
				t.Fatalf("get() = entity %q, want %q", ed.EntityID, idpEntity)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("get() = %v, want an error containing %q", err, tt.want)
			}
		})
	}

	// Without the setting, unsigned metadata is used as before.
	if errs := (&Config{IDPMetadataXML: plain}).Validate(); len(errs) > 0 {
		t.Errorf("unsigned metadata without idp_metadata_signing_certificate_file: %v", errs)
	}
	// A file source is checked the same way.
	mdFile := filepath.Join(t.TempDir(), "idp.xml")
	if err := os.WriteFile(mdFile, []byte(plain), 0o600); err != nil {
		t.Fatal(err)
	}
	if errs := (&Config{IDPMetadataFile: mdFile, IDPMetadataSigningCertificateFile: trust}).Validate(); len(errs) != 1 || errs[0].Path != "idp_metadata_file" {
		t.Errorf("unsigned metadata file: %v, want one problem at idp_metadata_file", errs)
	}
}

// TestIDPMetadataSignatureOpen: Open takes signed metadata, refuses
// unsigned, and a refreshed copy that is not signed never replaces the
// last good one.
func TestIDPMetadataSignatureOpen(t *testing.T) {
	signer := spKey()
	trust := trustFile(t, signer)
	plain := idpMetadataXML(t, idpKey())
	opts := connectors.Options{CallbackURL: testACS, BaseURL: testBaseURL, ReplayCache: &memReplay{}}
	if _, err := (&Config{IDPMetadataXML: plain, IDPMetadataSigningCertificateFile: trust}).Open(context.Background(), testID, opts); err == nil || !strings.Contains(err.Error(), "not signed") {
		t.Fatalf("Open with unsigned metadata = %v, want refused", err)
	}
	if _, err := (&Config{IDPMetadataXML: signMetadata(t, plain, signer, dsig.RSASHA256SignatureMethod), IDPMetadataSigningCertificateFile: trust}).Open(context.Background(), testID, opts); err != nil {
		t.Fatalf("Open with signed metadata = %v", err)
	}

	ms := newMetadataServer(t, signMetadata(t, plain, signer, dsig.RSASHA256SignatureMethod))
	now := time.Now()
	opts.HTTPClient, opts.Now = ms.srv.Client(), func() time.Time { return now }
	impl, err := (&Config{IDPMetadataURL: ms.srv.URL, IDPMetadataSigningCertificateFile: trust}).Open(context.Background(), testID, opts)
	if err != nil {
		t.Fatal(err)
	}
	src := impl.(*Connector).idp
	first, err := src.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The IdP's metadata, now unsigned and naming another certificate.
	ms.set(idpMetadataXML(t, otherKey()), http.StatusOK)
	now = now.Add(2 * time.Hour)
	_, _ = src.get(context.Background())
	waitRefreshed(t, src)
	if ed, err := src.get(context.Background()); err != nil || signingCertOf(t, ed) != signingCertOf(t, first) {
		t.Fatalf("after an unsigned refresh: %v; want the last signed copy kept", err)
	}
}

func TestIDPMetadataSigningCertificateFile(t *testing.T) {
	md := idpMetadataXML(t, idpKey())
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.pem")
	_ = os.WriteFile(empty, []byte("no PEM here\n"), 0o600)
	key := filepath.Join(dir, "key.pem")
	_, keyFile := writeKeyPair(t, spKey())
	b, _ := os.ReadFile(keyFile)
	_ = os.WriteFile(key, b, 0o600)
	for name, file := range map[string]string{
		"missing file":       filepath.Join(dir, "nope.pem"),
		"no certificate":     empty,
		"a private key only": key,
	} {
		errs := (&Config{IDPMetadataXML: md, IDPMetadataSigningCertificateFile: file}).Validate()
		if len(errs) == 0 || errs[0].Path != "idp_metadata_signing_certificate_file" {
			t.Errorf("%s: %v, want a problem at idp_metadata_signing_certificate_file", name, errs)
		}
	}
}

func mustTrust(t *testing.T, file string) *metadataTrust {
	t.Helper()
	tr, err := loadMetadataTrust(file)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func certData(kp keyPair) string {
	return base64.StdEncoding.EncodeToString(kp.cert.Raw)
}

func stripDecl(s string) string {
	if i := strings.Index(s, "?>"); strings.HasPrefix(s, "<?xml") && i >= 0 {
		return s[i+2:]
	}
	return s
}
