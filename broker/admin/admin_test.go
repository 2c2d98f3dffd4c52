package admin_test

import (
	"context"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/fedbroker/fedbroker/broker/admin"
	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/observe"
	"github.com/fedbroker/fedbroker/broker/runtime/runtimetest"
)

// TestConnectorsReportsUnreachableUpstreams: a connector whose upstream was
// down at load is served anyway and reported as unreachable, with the
// recorded sign-in health of every connector.
func TestConnectorsReportsUnreachableUpstreams(t *testing.T) {
	var node yaml.Node
	if err := yaml.Unmarshal([]byte("issuer: http://127.0.0.1:1\nclient_id: broker\nclient_secret: s3cr3t\n"), &node); err != nil {
		t.Fatal(err)
	}
	f := runtimetest.New(t, "", func(c *config.Config) {
		c.Connectors = append(c.Connectors, config.Connector{ID: "corp", Type: "oidc", Name: "Corp", Config: *node.Content[0]})
	})
	health := observe.NewHealth()
	health.Record("local", time.Unix(1700000000, 0), "")
	got := admin.Connectors(context.Background(), f.Runtime, health)
	if len(got) != 2 || got[0].ID != "local" || got[1].ID != "corp" {
		t.Fatalf("Connectors = %+v, want local then corp", got)
	}
	if got[0].Reachable != nil || got[0].Health.Successes != 1 {
		t.Errorf("local = %+v; want its health and no probe (it has no upstream)", got[0])
	}
	if got[1].Reachable == nil || *got[1].Reachable || got[1].Problem == "" {
		t.Errorf("corp = %+v; want unreachable with the problem", got[1])
	}
}
