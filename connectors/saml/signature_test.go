package saml

import (
	"errors"
	"testing"

	"github.com/beevik/etree"
	dsig "github.com/russellhaering/goxmldsig"
)

func TestCheckAlgorithms(t *testing.T) {
	kp := idpKey()
	tests := []struct {
		name    string
		method  string
		nested  bool // sign a child instead of el itself
		wantErr bool
	}{
		{"rsa-sha256", dsig.RSASHA256SignatureMethod, false, false},
		{"rsa-sha384", dsig.RSASHA384SignatureMethod, false, false},
		{"rsa-sha1", dsig.RSASHA1SignatureMethod, false, true},
		{"rsa-sha1 on a nested element", dsig.RSASHA1SignatureMethod, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			el := etree.NewElement("Assertion")
			el.CreateAttr("ID", "id-1")
			child := el.CreateElement("Child")
			child.CreateAttr("ID", "id-2")
			target := el
			if tt.nested {
				target = child
			}
			target.AddChild(signEl(t, target.Copy(), kp, tt.method))
			method, err := checkAlgorithms(el)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("checkAlgorithms() error = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, errWeakSignature) {
				t.Errorf("checkAlgorithms() error = %v, want errWeakSignature", err)
			}
			if err == nil && !tt.nested && method != tt.method {
				t.Errorf("checkAlgorithms() method = %q, want %q", method, tt.method)
			}
		})
	}
}
