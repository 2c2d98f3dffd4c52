package grants

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"time"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/tokens"
	"github.com/fedbroker/fedbroker/dpop"
)

// DPoPNonceHeader is the response header that gives a client the nonce to
// put in its next DPoP proof (RFC 9449 §8).
const DPoPNonceHeader = "DPoP-Nonce"

// proofNamespace is the storage namespace that remembers the proofs
// accepted (RFC 9449 §11.1), shared by every replica, until they are too
// old to be accepted anyway.
const proofNamespace = "dpop"

// maxNonceBytes caps a nonce before it is decoded.
const maxNonceBytes = 128

// invalidProof is a 400 invalid_dpop_proof (RFC 9449 §5).
func invalidProof(format string, args ...any) *oauth.Error {
	return oauth.NewError(http.StatusBadRequest, oauth.ErrInvalidDPoPProof, format, args...)
}

// useNonce is a 400 use_dpop_nonce (RFC 9449 §8); the caller's response
// carries a fresh nonce in DPoPNonceHeader.
func useNonce() *oauth.Error {
	return oauth.NewError(http.StatusBadRequest, oauth.ErrUseDPoPNonce, "the DPoP proof must carry the nonce of the DPoP-Nonce header")
}

// BoundKey is the thumbprint of the key of the request's verified DPoP
// proof: the cnf.jkt its access token is bound to; "" without a proof.
// Only Token sets it, after checking the proof.
func (r Request) BoundKey() string { return r.dpopJKT }

// checkDPoP checks the DPoP proof of a token request (RFC 9449 §4.3, §5)
// and returns req with the proof's key thumbprint. Without a proof the
// request goes on unbound, unless the client must use DPoP: then it is
// invalid_dpop_proof. RFC 9449 §5.2 says only that such a request is
// rejected; invalid_dpop_proof rather than invalid_request, because what
// is wrong is the proof (missing here), and that is the code a DPoP client
// acts on. The code and refresh grants on a storage.GrantStore check the
// proof themselves (pendingProof), so that its jti is recorded in their
// one storage step: checkDPoP leaves their requests alone.
func (g *Grants) checkDPoP(ctx context.Context, rt *runtime.Runtime, cl *runtime.Client, req Request) (Request, error) {
	if g.defersProof(req) {
		return req, nil
	}
	req, mark, err := g.pendingProof(rt, cl, req)
	if err != nil || mark.ID == "" {
		return req, err
	}
	fresh, err := g.store.MarkSeen(ctx, mark.Namespace, mark.ID, mark.Until)
	if err != nil {
		return req, err
	}
	if !fresh {
		return req, g.proofSeen(cl)
	}
	return req, nil
}

// defersProof reports whether req's grant records its DPoP proof's jti
// in its own storage step (see checkDPoP).
func (g *Grants) defersProof(req Request) bool {
	if _, ok := g.store.(storage.GrantStore); !ok {
		return false
	}
	return req.GrantType == config.GrantAuthorizationCode || req.GrantType == config.GrantRefreshToken
}

// pendingProof checks the DPoP proof of a token request as checkDPoP
// does, without recording it: it returns req with the proof's key
// thumbprint and the record to make (no ID without a proof), which the
// caller makes with spendProof or in its storage step, on every path.
func (g *Grants) pendingProof(rt *runtime.Runtime, cl *runtime.Client, req Request) (Request, storage.Mark, error) {
	if len(req.DPoP) == 0 {
		if cl.RequireDPoP {
			g.audit.Event("dpop_rejected", "client_id", cl.ID, "reason", "no proof from a client that must send one")
			return req, storage.Mark{}, invalidProof("this client must send a DPoP proof")
		}
		return req, storage.Mark{}, nil
	}
	p, mark, err := g.verifyProof(rt, req.DPoP, http.MethodPost, g.tokens.Issuer()+"/token", "", rt.Tokens.DPoP.Nonce)
	if err != nil {
		var oe *oauth.Error
		if errors.As(err, &oe) {
			g.audit.Event("dpop_rejected", "client_id", cl.ID, "reason", oe.Description)
		}
		return req, storage.Mark{}, err
	}
	req.dpopJKT = p.Thumbprint
	return req, mark, nil
}

// spendProof records a checked proof (see pendingProof) on a path that
// ends before the grant's storage step; a proof seen before is
// invalid_dpop_proof. A mark without an ID records nothing.
func (g *Grants) spendProof(ctx context.Context, cl *runtime.Client, mark storage.Mark) error {
	if mark.ID == "" {
		return nil
	}
	fresh, err := g.store.MarkSeen(ctx, mark.Namespace, mark.ID, mark.Until)
	if err != nil {
		return err
	}
	if !fresh {
		return g.proofSeen(cl)
	}
	return nil
}

// proofSeen refuses a proof recorded before: a replay.
func (g *Grants) proofSeen(cl *runtime.Client) *oauth.Error {
	const msg = "the DPoP proof was already used"
	g.audit.Event("dpop_rejected", "client_id", cl.ID, "reason", msg)
	return invalidProof(msg)
}

// VerifyProof checks the DPoP proofs sent with one request to url (the
// endpoint's public URL) with method: exactly one (RFC 9449 §4.3),
// valid, bound to accessToken when it is not empty (ath), carrying a
// nonce the broker issued when needNonce, and never seen before by any
// replica (its jti is recorded in storage until it is too old to pass).
// Refusals are *oauth.Error with invalid_dpop_proof, or use_dpop_nonce;
// anything else is a storage failure.
func (g *Grants) VerifyProof(ctx context.Context, rt *runtime.Runtime, proofs []string, method, url, accessToken string, needNonce bool) (*dpop.Proof, error) {
	p, mark, err := g.verifyProof(rt, proofs, method, url, accessToken, needNonce)
	if err != nil {
		return nil, err
	}
	fresh, err := g.store.MarkSeen(ctx, mark.Namespace, mark.ID, mark.Until)
	if err != nil {
		return nil, err
	}
	if !fresh {
		return nil, invalidProof("the DPoP proof was already used")
	}
	return p, nil
}

// verifyProof is VerifyProof without the record: it returns the record
// to make, in proofNamespace until the proof is too old to pass.
func (g *Grants) verifyProof(rt *runtime.Runtime, proofs []string, method, url, accessToken string, needNonce bool) (*dpop.Proof, storage.Mark, error) {
	switch len(proofs) {
	case 0:
		return nil, storage.Mark{}, invalidProof("a DPoP proof is required")
	case 1:
	default:
		return nil, storage.Mark{}, invalidProof("exactly one DPoP header is allowed")
	}
	now := g.now()
	skew := rt.Tokens.DPoP.Skew()
	p, err := dpop.Verify(proofs[0], dpop.Check{Method: method, URL: url, Now: now, Skew: skew, AccessToken: accessToken})
	switch {
	case errors.Is(err, dpop.ErrInvalidProof):
		// The detail names the failed check of the client's own proof;
		// it holds nothing of the broker's.
		return nil, storage.Mark{}, invalidProof("%s", err.Error())
	case err != nil:
		return nil, storage.Mark{}, err
	}
	if needNonce && !g.nonces.valid(p.Nonce, now, rt) {
		return nil, storage.Mark{}, useNonce()
	}
	until := p.IssuedAt.Add(skew + time.Second)
	if !until.After(now) {
		until = now.Add(time.Second)
	}
	return p, storage.Mark{Namespace: proofNamespace, ID: proofID(p, url), Until: until}, nil
}

// proofID names an accepted proof in storage: its jti, scoped by its key
// and URL, hashed to a fixed length.
func proofID(p *dpop.Proof, url string) string {
	h := sha256.New()
	for _, s := range []string{p.Thumbprint, url, p.JTI} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// DPoPNonce returns a fresh nonce for the DPoP-Nonce header of a token
// response when tokens.dpop.nonce is on, else "".
func (g *Grants) DPoPNonce(rt *runtime.Runtime) string {
	if !rt.Tokens.DPoP.Nonce {
		return ""
	}
	return g.nonces.issue(g.now())
}

// dpopCode binds an authorization code's tokens: a code issued for a key
// (grant.DPoPJKT, the dpop_jkt of RFC 9449 §10) is redeemed only with a
// proof of it; a public client's refresh family is bound to the proof's
// key (RFC 9449 §5), a confidential client's is not.
func (g *Grants) dpopCode(cl *runtime.Client, gr *storage.Grant, req Request) error {
	if gr.DPoPJKT != "" && gr.DPoPJKT != req.dpopJKT {
		g.audit.Event("dpop_rejected", "client_id", cl.ID, "sub", gr.Subject, "reason", "code bound to another key")
		return oauth.InvalidGrant("the code is bound to another DPoP key")
	}
	gr.DPoPJKT = ""
	if cl.Public {
		gr.DPoPJKT = req.dpopJKT
	}
	return nil
}

// dpopRefresh refuses the refresh of a family bound to a key (RFC 9449
// §5) without a proof of that key: no proof is invalid_dpop_proof, a
// proof of another key invalid_grant (the refresh token is not valid for
// this holder). An unbound family refreshes with or without a proof.
func (g *Grants) dpopRefresh(cl *runtime.Client, gr storage.Grant, req Request) error {
	switch req.dpopJKT {
	case gr.DPoPJKT:
		return nil
	case "":
		return invalidProof("this refresh token is bound to a DPoP key: send a proof of it")
	}
	if gr.DPoPJKT == "" {
		return nil
	}
	g.audit.Event("dpop_rejected", "client_id", cl.ID, "sub", gr.Subject, "reason", "refresh token bound to another key")
	return oauth.InvalidGrant("the refresh token is bound to another DPoP key")
}

// dpopSubject refuses to exchange one of the broker's own DPoP-bound
// access tokens without a proof of its key: the new token would be a
// bearer (or another key's) copy of a token that only the key's holder
// may use. claims are the subject token's, verified (delegate).
func dpopSubject(claims map[string]any, req Request) error {
	var jkt any
	switch cnf := claims["cnf"].(type) {
	case nil:
		return nil
	case map[string]any:
		jkt = cnf["jkt"]
	default:
		return exchangeError("subject_token claims are malformed")
	}
	switch k := jkt.(type) {
	case nil:
		return nil
	case string:
		if k != "" && k != req.dpopJKT {
			return exchangeError("the subject token is DPoP-bound: send a DPoP proof of its key")
		}
		return nil
	default:
		return exchangeError("subject_token claims are malformed")
	}
}

// tokenType is the token_type of an access token minted from gr.
func tokenType(gr storage.Grant) string {
	if gr.DPoPJKT != "" {
		return tokens.TokenTypeDPoP
	}
	return "Bearer"
}

// nonceAD binds a sealed nonce to its use. The sealer binds its blobs to
// "connector-data\x00" + a session id; no session id begins with NUL.
const nonceAD = "\x00fedbroker dpop nonce v1"

// dpopNonces issues and checks the token endpoint's nonces, statelessly:
// a nonce is its issue time sealed by the broker's sealer (a key derived
// from signing.key_encryption_key), so any replica accepts any other's
// until tokens.dpop.nonce_lifetime has passed. Without a key-encryption
// key a key drawn at start seals them: one process holds all state then
// (validation refuses the nonce on shared storage without that key).
type dpopNonces struct{ sealer *tokens.Sealer }

func newDPoPNonces(s *tokens.Sealer) *dpopNonces {
	probe := []byte("probe")
	if s != nil && !bytes.Equal(s.Seal(probe, nonceAD), probe) {
		return &dpopNonces{sealer: s}
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key) // never fails on supported platforms (Go 1.24+)
	own, err := tokens.NewSealer(key)
	if err != nil {
		panic("grants: a 32-byte key is refused: " + err.Error())
	}
	return &dpopNonces{sealer: own}
}

func (n *dpopNonces) issue(now time.Time) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(now.Unix()))
	return base64.RawURLEncoding.EncodeToString(n.sealer.Seal(b[:], nonceAD))
}

// valid reports whether nonce was issued by a replica within the nonce
// lifetime (and not later than the skew ahead of this replica's clock).
func (n *dpopNonces) valid(nonce string, now time.Time, rt *runtime.Runtime) bool {
	if nonce == "" || len(nonce) > maxNonceBytes {
		return false
	}
	blob, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil {
		return false
	}
	plain, err := n.sealer.Open(blob, nonceAD)
	if err != nil || len(plain) != 8 {
		return false
	}
	issued := time.Unix(int64(binary.BigEndian.Uint64(plain)), 0)
	d := rt.Tokens.DPoP
	return !issued.After(now.Add(d.Skew())) && now.Sub(issued) < d.NonceTTL()
}
