package e2e

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
)

// TestConsoleSeesTheFleet: two replicas on one Redis. The console of the
// first lists both from their heartbeat records; the second issues
// tokens and is stopped with SIGTERM; the first's console then shows it
// gone (it said it stopped) and still counts its token responses in the
// charts and on the clients page.
func TestConsoleSeesTheFleet(t *testing.T) {
	rs := redistest.StartServer(t)
	cl := startStateCluster(t, rs.URL(), fleetNode(), fleetNode())
	r0, r1 := cl.Nodes[0], cl.Nodes[1]

	jar, _ := cookiejar.New(nil)
	console := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := console.PostForm(r0.Admin+"/console/login", url.Values{"token": {stateAdminToken}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	page := func(path string) string {
		t.Helper()
		resp, err := console.Get(r0.Admin + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	if body := page("/console/"); !strings.Contains(body, "2 seen in the last 45s") || strings.Count(body, `<span class="ok">ready</span></td></tr>`) != 2 {
		t.Errorf("overview does not list two ready replicas:\n%s", body)
	}

	for range 3 {
		if tr, err := clientCredentials(r1.URL); err != nil || tr.status != http.StatusOK {
			t.Fatalf("client_credentials at replica 1: %+v %v", tr, err)
		}
	}
	r1.signal(t, syscall.SIGTERM)
	if code, _ := r1.waitExit(30 * time.Second); code != 0 {
		t.Fatalf("replica 1 exit code %d after SIGTERM\n%s", code, r1.log())
	}
	body := page("/console/")
	for _, want := range []string{"1 seen in the last 45s", `<span class="bad">gone</span> (stopped)`, "client_credentials: 3 in the last hour"} {
		if !strings.Contains(body, want) {
			t.Errorf("after replica 1 stopped, overview lacks %q:\n%s", want, body)
		}
	}
	if body := page("/console/clients"); !strings.Contains(body, "client_credentials: 3") {
		t.Errorf("clients page lacks replica 1's three responses for svc:\n%s", body)
	}
}
