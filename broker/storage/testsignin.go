package storage

import "time"

// TestSignIn is what a test sign-in keeps in AuthRequest records. The
// admin console's mapping workbench starts one to see what a connector
// really hands the broker; it ends on a page, never with a session, a
// code or an identity link. Three kinds of record carry it:
//
//   - the start record, with a random id (the handle the console keeps and
//     puts in the login URL it opens), unbound to any browser (Start set);
//   - the sign-in itself, with a new random id, bound to the browser that
//     opened the login URL first: authflow takes the start record
//     (TakeAuthRequest, so only one browser ever gets it) and creates this
//     one (Handle set, Start unset);
//   - the result record, under TestSignInResultID(handle), created once
//     when the connector vouched for someone (Result set, or Failure when
//     the connector refused the sign-in).
//
// ClientID and RedirectURI of these records are empty: no client is
// involved, so nothing can be sent to one.
type TestSignIn struct {
	// Start marks the start record.
	Start bool `json:"start,omitempty"`
	// Handle is the start record's id: the result record is stored under
	// TestSignInResultID(Handle).
	Handle string `json:"handle,omitempty"`
	// Connector is the connector the test signs in with.
	Connector string `json:"connector"`
	// Started is when the console started it.
	Started time.Time `json:"started"`
	// Result is the upstream identity, on the result record.
	Result *TestSignInResult `json:"result,omitempty"`
	// Failure is the error the connector gave, on the result record of a
	// sign-in that failed upstream.
	Failure string `json:"failure,omitempty"`
}

// TestSignInResult is the upstream identity a connector vouched for in a
// test sign-in: what the mapping would have been evaluated on.
type TestSignInResult struct {
	UpstreamSubject string         `json:"upstream_sub"`
	Claims          map[string]any `json:"claims"`
	Sources         map[string]any `json:"sources,omitempty"`
	// UpstreamSID is the upstream's session id, when it gave one.
	UpstreamSID string    `json:"upstream_sid,omitempty"`
	Finished    time.Time `json:"finished"`
}

// TestSignInResultID is the id of the result record of the test sign-in
// whose start record had id handle. The handle is a secret only the
// console and the browser it opened know; the result is stored under its
// hash.
func TestSignInResultID(handle string) string { return "test-result:" + Hash(handle) }
