package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestProbe(t *testing.T) {
	var ready atomic.Bool
	ready.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	run := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := Main(context.Background(), append([]string{"probe"}, args...), strings.NewReader(""), &out, &errOut)
		return code, out.String() + errOut.String()
	}
	if code, out := run(srv.URL + "/readyz"); code != 0 {
		t.Fatalf("probe of a ready server = %d (%s), want 0", code, out)
	}
	ready.Store(false)
	if code, out := run(srv.URL + "/readyz"); code != 1 || !strings.Contains(out, "503") {
		t.Fatalf("probe of an unready server = %d (%s), want 1 naming 503", code, out)
	}
	srv.Close()
	if code, _ := run(srv.URL + "/readyz"); code != 1 {
		t.Fatalf("probe of a closed server = %d, want 1", code)
	}
}
