package keys

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"slices"
)

// loadStatic reads PEM private keys into a snapshot. Per algorithm, the
// first key listed signs; the others are published and verified only.
func (m *Manager) loadStatic(files []StaticKey) (*state, error) {
	var groups []group
	for _, f := range files {
		k, err := readPEMKey(f)
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(groups, func(g group) bool { return g.alg == k.alg })
		if i < 0 {
			groups = append(groups, group{alg: k.alg})
			i = len(groups) - 1
		}
		groups[i].keys = append(groups[i].keys, k)
		m.log.Info("static signing key loaded", "file", f.File, "kid", k.kid, "alg", k.alg)
	}
	slices.SortStableFunc(groups, func(a, b group) int {
		return rank(m.algs, a.alg) - rank(m.algs, b.alg)
	})
	return m.newState(groups, nil, 0)
}

// rank orders configured algorithms first, in configuration order.
func rank(algs []string, a string) int {
	if i := slices.Index(algs, a); i >= 0 {
		return i
	}
	return len(algs)
}

// readPEMKey parses the first private key block of a PEM file: PKCS#8
// ("PRIVATE KEY"), SEC 1 ("EC PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY").
func readPEMKey(f StaticKey) (key, error) {
	data, err := os.ReadFile(f.File)
	if err != nil {
		return key{}, fmt.Errorf("keys: static key: %w", err)
	}
	var priv any
scan:
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return key{}, fmt.Errorf("keys: static key %s: no PEM private key found", f.File)
		}
		switch b.Type {
		case "PRIVATE KEY":
			priv, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			priv, err = x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			priv, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		default:
			continue
		}
		break scan
	}
	if err != nil {
		return key{}, fmt.Errorf("keys: static key %s: %w", f.File, err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return key{}, fmt.Errorf("keys: static key %s: %T cannot sign", f.File, priv)
	}
	alg, err := algFor(signer.Public())
	if err != nil {
		return key{}, fmt.Errorf("keys: static key %s: %w", f.File, err)
	}
	kid := f.KeyID
	if kid == "" {
		if kid, err = thumbprint(signer.Public()); err != nil {
			return key{}, err
		}
	}
	return key{kid: kid, alg: alg, public: signer.Public(), private: signer}, nil
}
