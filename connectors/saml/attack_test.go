package saml

import (
	"testing"
)

func TestBuiltResponseAccepted(t *testing.T) {
	f := newFixture(t, Config{})
	st, raw := f.start(t, "state-1")
	id, err := f.post(t, raw, f.build(t, defaultSpec(st.RequestID)), "state-1")
	if err != nil {
		t.Fatalf("HandlePOST() error = %v", err)
	}
	t.Logf("%+v", id)
}
