package keys

import (
	"fmt"
	"os"
	"slices"

	"github.com/fedbroker/fedbroker/jwa"
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
	signer, err := jwa.ParsePrivateKeyPEM(data)
	if err != nil {
		return key{}, fmt.Errorf("keys: static key %s: %w", f.File, err)
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
