package main

import (
	"context"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage/memory"
	"github.com/fedbroker/fedbroker/broker/workbench"
)

// The console's mapping workbench reports what `fedbroker mapping test
// --explain` prints for the same input: for the running mapping, and for
// a draft of the same text.
func TestWorkbenchMatchesMappingTest(t *testing.T) {
	b, err := os.ReadFile(mappingConfig)
	if err != nil {
		t.Fatal(err)
	}
	base := string(b)
	// The workload issuer would be opened (discovery over the network):
	// the workbench runs on a compiled configuration.
	head, _, _ := strings.Cut(base, "workloads:")
	_, conns, _ := strings.Cut(base, "connectors:")
	yml := head + "connectors:" + conns
	dir := t.TempDir()
	cfgPath := writeFile(t, dir, "fedbroker.yaml", yml)
	samples := map[string]string{
		"accepted": `{"connector": "corp", "claims": {"sub": "alice", "email": "Alice@acme.com", "email_verified": true, "groups": ["admins"]}}`,
		"rejected": `{"connector": "corp", "claims": {"sub": "eve", "email": "eve@evil.com", "email_verified": true}}`,
		"error":    `{"connector": "corp", "claims": {"sub": "x", "email_verified": true}}`,
		"default":  `{"connector": "backup", "claims": {"sub": "bob", "username": "bob", "email": "bob@acme.com", "email_verified": true, "groups": []}}`,
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := runtime.Compile(context.Background(), cfg, runtime.Deps{Issuer: cfg.Issuer})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	wb := workbench.New(workbench.Deps{Issuer: cfg.Issuer, Runtime: func() *runtime.Runtime { return rt }, Config: func() *config.Config { return cfg }, Store: memory.New()})
	for name, sample := range samples {
		t.Run(name, func(t *testing.T) {
			_, out, errOut := run(t, "", "mapping", "test", "--config", cfgPath, "--explain", "--claims", writeFile(t, dir, name+".json", sample))
			var want map[string]any
			if err := json.Unmarshal([]byte(out), &want); err != nil {
				t.Fatalf("mapping test printed %q (%s): %v", out, errOut, err)
			}
			delete(want, "linking") // the workbench reads storage instead: Evaluation.Linking
			in, _, err := workbench.ParseInput(sample)
			if err != nil {
				t.Fatal(err)
			}
			target := workbench.Target{ID: in.Connector}
			running, err := wb.Evaluate(context.Background(), workbench.Request{Target: target, Input: in})
			if err != nil {
				t.Fatal(err)
			}
			text, err := wb.RunningText(target)
			if err != nil {
				t.Fatal(err)
			}
			drafted, err := wb.Evaluate(context.Background(), workbench.Request{Target: target, Input: in, Draft: workbench.CompileDraft(text)})
			if err != nil {
				t.Fatal(err)
			}
			for label, ev := range map[string]*workbench.Evaluation{"running": running, "draft": drafted} {
				b, _ := json.Marshal(ev.Report)
				var got map[string]any
				_ = json.Unmarshal(b, &got)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s: workbench report\n%s\nmapping test\n%s", label, b, out)
				}
			}
		})
	}
}
