package templates

// TestSignInData fills test_signin_done.html, the page a test sign-in
// started from the admin console's mapping workbench ends on.
type TestSignInData struct {
	Page
	// ConnectorName is the connector signed in with.
	ConnectorName string
	// UpstreamSubject is who the connector said signed in; empty when the
	// test ended without an identity (Failed).
	UpstreamSubject string
	// Failed is set when the sign-in did not work upstream, or was
	// cancelled: the console shows why.
	Failed bool
}
