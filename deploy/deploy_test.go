// Package deploy holds the Dockerfile, compose file, Kubernetes manifests
// and example configurations; its test loads every configuration the way
// `fedbroker check --offline` does.
package deploy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/fedbroker/fedbroker/broker"
	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/connectors/workload"
)

// env supplies plausible values for every ${VAR} the deploy configurations
// use, and records which ones were asked for.
type env struct {
	t      *testing.T
	values map[string]string

	mu   sync.Mutex
	used map[string]bool
}

func newEnv(t *testing.T) *env {
	t.Helper()
	kek := make([]byte, 32)
	if _, err := rand.Read(kek); err != nil {
		t.Fatal(err)
	}
	bc, err := bcrypt.GenerateFromPassword([]byte("a break-glass password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	secretHash := func() string {
		h, err := config.HashSecret(config.GenerateSecret())
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	certFile, keyFile := spKeyPair(t)
	examples, err := filepath.Abs("examples")
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, used: map[string]bool{}, values: map[string]string{
		"FEDBROKER_KEK":             base64.StdEncoding.EncodeToString(kek),
		"FEDBROKER_REDIS_URL":       "rediss://:s3cret-redis-password@redis.internal:6380/0",
		"FEDBROKER_ADMIN_TOKEN":     base64.StdEncoding.EncodeToString(kek[:24]),
		"FEDBROKER_CONFIG_DIR":      examples,
		"GOOGLE_CLIENT_ID":          "123456789012-abcdefghijklmnopqrstuvwxyz012345.apps.googleusercontent.com",
		"GOOGLE_CLIENT_SECRET":      "GOCSPX-AbCdEfGhIjKlMnOpQrStUvWxYz01",
		"ENTRA_CLIENT_ID":           "5f1e0c3a-8b7d-4e2f-9a6b-1c2d3e4f5a6b",
		"ENTRA_CLIENT_SECRET":       "Qx8Q~abcdefghijklmnopqrstuvwxyz0123456",
		"SAML_SP_CERT_FILE":         certFile,
		"SAML_SP_KEY_FILE":          keyFile,
		"BREAKGLASS_PASSWORD_HASH":  string(bc),
		"ADMIN_PASSWORD_HASH":       string(bc),
		"WIKI_SECRET_HASH":          secretHash(),
		"GRAFANA_SECRET_HASH":       secretHash(),
		"DEPLOYER_SECRET_HASH":      secretHash(),
		"METRICS_AGENT_SECRET_HASH": secretHash(),
		"AWS_DEPLOYER_SECRET_HASH":  secretHash(),
		"GCP_BATCH_SECRET_HASH":     secretHash(),
		"AZURE_BACKUP_SECRET_HASH":  secretHash(),
		"VAULT_LOGIN_SECRET_HASH":   secretHash(),
	}}
}

// getenv returns the value of name; a name the test does not know is an
// error (an undocumented variable in a configuration).
func (e *env) getenv(name string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.used[name] = true
	v, ok := e.values[name]
	if !ok {
		e.t.Errorf("a configuration uses ${%s}, which the deploy test does not know", name)
	}
	return v
}

// take returns and forgets the variables used since the last call.
func (e *env) take() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var names []string
	for n := range e.used {
		names = append(names, n)
	}
	sort.Strings(names)
	e.used = map[string]bool{}
	return names
}

// spKeyPair writes a SAML SP certificate and key (RSA 2048) to temporary
// files, as a Secret volume would provide them.
func spKeyPair(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "sso.acme.com SAML SP"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "sp.crt"), filepath.Join(dir, "sp.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// loadConfig parses and checks one configuration offline and returns it
// with the variables it used.
func loadConfig(t *testing.T, e *env, name string, data []byte) (*config.Config, []string) {
	t.Helper()
	e.take()
	cfg, err := config.Parse(data, e.getenv)
	if err != nil {
		t.Fatalf("%s: config.Parse:\n%v", name, err)
	}
	if err := broker.Check(context.Background(), cfg, broker.Options{}, true); err != nil {
		t.Fatalf("%s: broker.Check (offline):\n%v", name, err)
	}
	// Static workload keys are read only when the issuer is opened:
	// check the files here.
	for _, w := range cfg.Workloads {
		var wc workload.Config
		if ps := w.Decode(&wc); len(ps) > 0 {
			t.Errorf("%s: workload %s: %v", name, w.ID, ps)
			continue
		}
		if wc.JWKSFile == "" {
			continue
		}
		b, err := os.ReadFile(wc.JWKSFile)
		if err != nil {
			t.Errorf("%s: workload %s: %v", name, w.ID, err)
			continue
		}
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(b, &set); err != nil || len(set.Keys) == 0 {
			t.Errorf("%s: workload %s: jwks_file is not a JWKS with keys: %v", name, w.ID, err)
		}
		for _, k := range set.Keys {
			if !k.Valid() || !k.IsPublic() || k.KeyID == "" || !slices.Contains(wc.Algorithms, k.Algorithm) {
				t.Errorf("%s: workload %s: key %q must be a valid public key with a kid and an allowed alg", name, w.ID, k.KeyID)
			}
		}
	}
	return cfg, e.take()
}

// manifests reads every YAML document of a Kubernetes manifest file.
func manifests(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, len(docs)+1, err)
		}
		if doc == nil {
			continue
		}
		for _, key := range []string{"apiVersion", "kind"} {
			if s, _ := doc[key].(string); s == "" {
				t.Errorf("%s: document %d has no %s", path, len(docs)+1, key)
			}
		}
		if get(doc, "metadata", "name") == nil {
			t.Errorf("%s: document %d has no metadata.name", path, len(docs)+1)
		}
		docs = append(docs, doc)
	}
	return docs
}

// get walks maps and lists: string keys index maps, ints index lists.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func kubeObjects(t *testing.T) map[string]map[string]any {
	t.Helper()
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests under kubernetes/: %v", err)
	}
	objs := map[string]map[string]any{}
	for _, f := range files {
		for _, doc := range manifests(t, f) {
			key := doc["kind"].(string) + "/" + get(doc, "metadata", "name").(string)
			if _, dup := objs[key]; dup {
				t.Errorf("%s defined twice", key)
			}
			objs[key] = doc
		}
	}
	return objs
}

// TestExampleConfigs loads every broker configuration under examples/.
func TestExampleConfigs(t *testing.T) {
	e := newEnv(t)
	files, err := filepath.Glob("examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	for _, want := range []string{"compose.yaml", "enterprise.yaml", "local.yaml", "workloads.yaml", "platforms.yaml"} {
		if !slices.Contains(names, want) {
			t.Errorf("examples/%s is missing (have %v)", want, names)
		}
	}
	wantVars := map[string][]string{
		"local.yaml":      nil,
		"compose.yaml":    {"FEDBROKER_KEK"},
		"enterprise.yaml": {"BREAKGLASS_PASSWORD_HASH", "ENTRA_CLIENT_ID", "ENTRA_CLIENT_SECRET", "FEDBROKER_ADMIN_TOKEN", "FEDBROKER_CONFIG_DIR", "FEDBROKER_KEK", "FEDBROKER_REDIS_URL", "GOOGLE_CLIENT_ID", "GOOGLE_CLIENT_SECRET", "GRAFANA_SECRET_HASH", "SAML_SP_CERT_FILE", "SAML_SP_KEY_FILE", "WIKI_SECRET_HASH"},
		"workloads.yaml":  {"BREAKGLASS_PASSWORD_HASH", "DEPLOYER_SECRET_HASH", "FEDBROKER_CONFIG_DIR", "FEDBROKER_KEK", "FEDBROKER_REDIS_URL", "METRICS_AGENT_SECRET_HASH"},
		"platforms.yaml":  {"AWS_DEPLOYER_SECRET_HASH", "AZURE_BACKUP_SECRET_HASH", "BREAKGLASS_PASSWORD_HASH", "FEDBROKER_CONFIG_DIR", "FEDBROKER_KEK", "FEDBROKER_REDIS_URL", "GCP_BATCH_SECRET_HASH", "VAULT_LOGIN_SECRET_HASH"},
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			cfg, used := loadConfig(t, e, f, data)
			if want, ok := wantVars[name]; ok && !slices.Equal(used, want) {
				t.Errorf("variables used = %v, want %v", used, want)
			}
			// Anything that is not a single machine keeps state in Redis
			// with the keys encrypted.
			if name != "local.yaml" && (cfg.Storage.Type != "redis" || cfg.Signing.KeyEncryptionKey == "") {
				t.Errorf("storage %q, KEK set %v: want redis with a key encryption key", cfg.Storage.Type, cfg.Signing.KeyEncryptionKey != "")
			}
		})
	}
}

// exampleCommand returns the command an example documents at its top for
// checking it: the environment variables it sets (VAR=... before the
// command; a value may be a $(...) substitution) and the arguments after
// `go run ./cmd/fedbroker`. A command may go on over several comment
// lines that end in a backslash.
func exampleCommand(t *testing.T, data []byte) (vars, args []string) {
	t.Helper()
	var logical []string
	cont := false
	for _, l := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(l, "#") {
			break // the header ends with the first line that is not a comment
		}
		l = strings.TrimSpace(strings.TrimPrefix(l, "#"))
		if cont {
			logical[len(logical)-1] += " " + l
		} else {
			logical = append(logical, l)
		}
		cont = strings.HasSuffix(l, "\\")
		if cont {
			logical[len(logical)-1] = strings.TrimSuffix(logical[len(logical)-1], "\\")
		}
	}
	subst := regexp.MustCompile(`\$\([^)]*\)`)
	assign := regexp.MustCompile(`^([A-Z_][A-Z0-9_]*)=\S*$`)
	for _, l := range logical {
		if !strings.Contains(l, "go run ./cmd/fedbroker check") {
			continue
		}
		if args != nil {
			t.Fatalf("the header documents more than one check command")
		}
		fields := strings.Fields(subst.ReplaceAllString(l, "X"))
		for len(fields) > 0 && assign.MatchString(fields[0]) {
			vars = append(vars, assign.FindStringSubmatch(fields[0])[1])
			fields = fields[1:]
		}
		if len(fields) < 4 || strings.Join(fields[:3], " ") != "go run ./cmd/fedbroker" {
			t.Fatalf("documented command %q: want VAR=... go run ./cmd/fedbroker check ...", l)
		}
		args = fields[3:]
	}
	if args == nil {
		t.Fatal("the header documents no `go run ./cmd/fedbroker check` command")
	}
	sort.Strings(vars)
	return vars, args
}

// buildFedbroker builds the fedbroker command into a temporary directory.
func buildFedbroker(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fedbroker")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/fedbroker")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/fedbroker: %v\n%s", err, out)
	}
	return bin
}

// TestExampleCommands runs the check command each example documents at its
// top, as written, from the root of a clone, with a value for each
// variable it sets: it must pass, and it must set exactly the variables
// the file needs (those it reads without a default).
func TestExampleCommands(t *testing.T) {
	files, err := filepath.Glob("examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	bin := buildFedbroker(t)
	e := newEnv(t)
	needRe := regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			vars, args := exampleCommand(t, data)
			if args[0] != "check" || args[len(args)-1] != "deploy/"+filepath.ToSlash(f) {
				t.Fatalf("documented command checks %v, want check ... deploy/%s", args, filepath.ToSlash(f))
			}
			var need []string
			for _, m := range needRe.FindAllStringSubmatch(string(data), -1) {
				if !slices.Contains(need, m[1]) {
					need = append(need, m[1])
				}
			}
			sort.Strings(need)
			if !slices.Equal(vars, need) {
				t.Errorf("the documented command sets %v; the file needs %v", vars, need)
			}
			env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
				name, _, _ := strings.Cut(kv, "=")
				_, known := e.values[name]
				return known
			})
			for _, v := range vars {
				value, ok := e.values[v]
				if !ok {
					t.Fatalf("the documented command sets %s, which the deploy test has no value for", v)
				}
				env = append(env, v+"="+value)
			}
			cmd := exec.Command(bin, args...)
			cmd.Dir = ".."
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), args[len(args)-1]+": OK") {
				t.Errorf("fedbroker %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			// Static workload keys are read only when the issuer is opened,
			// which --offline skips: their default path must work from the
			// root of a clone too.
			cfg, err := config.Parse(data, func(name string) string {
				if slices.Contains(vars, name) {
					return e.values[name]
				}
				return ""
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range cfg.Workloads {
				var wc workload.Config
				if w.Decode(&wc) != nil || wc.JWKSFile == "" {
					continue
				}
				if _, err := os.Stat(filepath.Join("..", wc.JWKSFile)); filepath.IsAbs(wc.JWKSFile) || err != nil {
					t.Errorf("workload %s: jwks_file %s is not in the clone: %v", w.ID, wc.JWKSFile, err)
				}
			}
		})
	}
}

// TestEnterpriseLinking: the acme.com Google account and the acquired.com
// Entra account of one person compute the same link key; look-alikes and
// unverified addresses link nothing.
func TestEnterpriseLinking(t *testing.T) {
	e := newEnv(t)
	data, err := os.ReadFile("examples/enterprise.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := loadConfig(t, e, "enterprise.yaml", data)
	if len(cfg.Links.Groups) != 1 || !slices.Equal(cfg.Links.Groups[0], []string{"google", "entra"}) {
		t.Fatalf("links.groups = %v, want [[google entra]]", cfg.Links.Groups)
	}
	run := func(connector string, claims map[string]any) runtime.MappingReport {
		t.Helper()
		m, typ, err := runtime.CompileMapping(cfg, connector)
		if err != nil {
			t.Fatal(err)
		}
		return runtime.RunMapping(context.Background(), m, typ, runtime.MappingInput{Connector: connector, Claims: claims}, false)
	}
	const tid = "9188040d-6c67-4c5b-b112-36a304b66dad"
	tests := []struct {
		name, connector string
		claims          map[string]any
		decision, link  string
	}{
		{"google pat", "google", map[string]any{"sub": "1001", "hd": "acme.com", "email": "Pat@Acme.com", "email_verified": true}, "accepted", "pat@acme.com"},
		{"entra pat", "entra", map[string]any{"sub": "x", "tid": tid, "preferred_username": "PAT@acquired.com", "name": "Pat"}, "accepted", "pat@acme.com"},
		{"entra not in the table", "entra", map[string]any{"sub": "y", "tid": tid, "preferred_username": "lee@acquired.com"}, "accepted", ""},
		{"entra other tenant", "entra", map[string]any{"sub": "z", "tid": "00000000-0000-0000-0000-000000000000", "preferred_username": "pat@acquired.com"}, "rejected", ""},
		{"google unverified", "google", map[string]any{"sub": "1002", "hd": "acme.com", "email": "pat@acme.com", "email_verified": false}, "rejected", ""},
		{"google look-alike domain", "google", map[string]any{"sub": "1003", "hd": "acme.com", "email": "pat@acme.c\u03bfm", "email_verified": true}, "rejected", ""},
		{"google double at", "google", map[string]any{"sub": "1004", "hd": "acme.com", "email": "pat@evil.com@acme.com", "email_verified": true}, "rejected", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := run(tt.connector, tt.claims)
			if rep.Decision != tt.decision || rep.LinkKey != tt.link {
				t.Errorf("decision %q link %q (%s %s), want %q link %q", rep.Decision, rep.LinkKey, rep.Message, rep.Error, tt.decision, tt.link)
			}
		})
	}
}

// TestKubernetes checks the manifests and loads the configuration the
// ConfigMap holds with the Secret's variables only.
func TestKubernetes(t *testing.T) {
	objs := kubeObjects(t)
	dep := objs["Deployment/fedbroker"]
	if dep == nil {
		t.Fatalf("no Deployment fedbroker among %v", keys(objs))
	}
	if r, _ := get(dep, "spec", "replicas").(int); r != 3 {
		t.Errorf("Deployment replicas = %v, want 3", get(dep, "spec", "replicas"))
	}
	c := get(dep, "spec", "template", "spec", "containers", 0)
	ports := map[string]int{}
	for _, p := range asList(get(c, "ports")) {
		n, _ := get(p, "name").(string)
		v, _ := get(p, "containerPort").(int)
		ports[n] = v
	}
	for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
		if got := get(c, probe, "httpGet", "path"); got != path {
			t.Errorf("%s path = %v, want %s", probe, got, path)
		}
		port, _ := get(c, probe, "httpGet", "port").(string)
		if ports[port] == 0 {
			t.Errorf("%s port %q is not a container port (%v)", probe, port, ports)
		}
	}
	labels := get(dep, "spec", "template", "metadata", "labels")
	pdb := objs["PodDisruptionBudget/fedbroker"]
	if pdb == nil {
		t.Fatal("no PodDisruptionBudget fedbroker")
	}
	if sel := get(pdb, "spec", "selector", "matchLabels"); !equalYAML(sel, labels) {
		t.Errorf("PodDisruptionBudget selects %v, the pods are labelled %v", sel, labels)
	}
	if min, _ := get(pdb, "spec", "minAvailable").(int); min < 1 || min >= 3 {
		t.Errorf("PodDisruptionBudget minAvailable = %v, want 1 or 2 of 3", get(pdb, "spec", "minAvailable"))
	}

	redis := objs["StatefulSet/fedbroker-redis"]
	args := fmtList(get(redis, "spec", "template", "spec", "containers", 0, "args"))
	if i := slices.Index(args, "--maxmemory-policy"); i < 0 || i+1 >= len(args) || args[i+1] != "noeviction" {
		t.Errorf("Redis args %v, want --maxmemory-policy noeviction", args)
	}

	// The ConfigMap the Deployment mounts holds a full configuration.
	var cmName string
	for _, v := range asList(get(dep, "spec", "template", "spec", "volumes")) {
		if n, _ := get(v, "configMap", "name").(string); n != "" {
			cmName = n
		}
	}
	cm := objs["ConfigMap/"+cmName]
	if cmName != "fedbroker" || cm == nil {
		t.Fatalf("the Deployment mounts ConfigMap %q; want fedbroker defined in kubernetes/", cmName)
	}
	data, _ := get(cm, "data", "config.yaml").(string)
	if data == "" {
		t.Fatal("ConfigMap fedbroker has no data config.yaml")
	}
	e := newEnv(t)
	cfg, used := loadConfig(t, e, "ConfigMap fedbroker config.yaml", []byte(data))
	// Redis keeps AOF on, and the broker refuses to start if it is not.
	if !hasArg(args, "--appendonly", "yes") {
		t.Errorf("Redis args %v, want --appendonly yes", args)
	}
	if cfg.Storage.Redis.RequireDurability != "aof" {
		t.Errorf("ConfigMap fedbroker: storage.redis.require_durability %q, want aof", cfg.Storage.Redis.RequireDurability)
	}

	// Every variable comes from the Secret the pods read, and the Secret
	// holds nothing the configuration does not use.
	secretName, _ := get(c, "envFrom", 0, "secretRef", "name").(string)
	secret := objs["Secret/"+secretName]
	if secret == nil {
		t.Fatalf("the Deployment reads Secret %q, which is not defined", secretName)
	}
	var secretKeys []string
	for k := range asMap(get(secret, "stringData")) {
		secretKeys = append(secretKeys, k)
	}
	sort.Strings(secretKeys)
	if !slices.Equal(used, secretKeys) {
		t.Errorf("the configuration uses %v; the Secret provides %v", used, secretKeys)
	}

	// The configuration listens where the probes and the Service look,
	// and reaches Redis through its Service.
	_, port, _ := strings.Cut(cfg.HTTP.Addr, ":")
	if port != "5556" || ports["http"] != 5556 {
		t.Errorf("http.addr %s, container port http %d: want both 5556", cfg.HTTP.Addr, ports["http"])
	}
	if strings.HasPrefix(cfg.HTTP.Addr, "127.") {
		t.Errorf("http.addr %s is loopback: the probes and the Service cannot reach it", cfg.HTTP.Addr)
	}
	u, err := url.Parse(cfg.Storage.Redis.URL)
	if err != nil || cfg.Storage.Type != "redis" {
		t.Fatalf("storage %s %q: want redis", cfg.Storage.Type, cfg.Storage.Redis.URL)
	}
	if objs["Service/"+u.Hostname()] == nil {
		t.Errorf("redis URL host %q is not a Service in kubernetes/", u.Hostname())
	}
	if !strings.HasPrefix(cfg.Issuer, "https://") {
		t.Errorf("issuer %s: want https in production", cfg.Issuer)
	}
	checkDrain(t, get(dep, "spec", "template", "spec"), c, cfg)
}

// serveShutdownTimeout is how long fedbroker serve waits for requests in
// flight once its listener is closed (cmd/fedbroker/serve.go).
const serveShutdownTimeout = 20 * time.Second

// checkDrain: before SIGTERM the kubelet runs the preStop sleep (its own
// sleep action: the distroless image has no shell, so never an exec);
// then a pod answers /readyz with 503 for http.drain_period, closes its
// listener and finishes requests in flight for up to
// serveShutdownTimeout. Kubernetes must not kill it before all of that
// (terminationGracePeriodSeconds), and the drain must last long enough for
// the readiness probe to see the 503 (its period times its failure
// threshold).
func checkDrain(t *testing.T, podSpec, container any, cfg *config.Config) {
	t.Helper()
	drain := cfg.HTTP.Drain()
	if cfg.HTTP.DrainPeriod == nil {
		t.Errorf("the ConfigMap does not set http.drain_period; set it next to terminationGracePeriodSeconds")
	}
	grace, ok := get(podSpec, "terminationGracePeriodSeconds").(int)
	if !ok {
		t.Fatalf("terminationGracePeriodSeconds = %v, want a number of seconds", get(podSpec, "terminationGracePeriodSeconds"))
	}
	sleep, _ := get(container, "lifecycle", "preStop", "sleep", "seconds").(int)
	if sleep <= 0 {
		t.Errorf("preStop sleep = %v, want a positive number of seconds (lifecycle.preStop.sleep.seconds)", get(container, "lifecycle", "preStop"))
	}
	if g, pre := time.Duration(grace)*time.Second, time.Duration(sleep)*time.Second; g <= pre+drain+serveShutdownTimeout {
		t.Errorf("terminationGracePeriodSeconds %d must exceed the preStop sleep %s + http.drain_period %s + the shutdown timeout %s", grace, pre, drain, serveShutdownTimeout)
	}
	period, _ := get(container, "readinessProbe", "periodSeconds").(int)
	failures, _ := get(container, "readinessProbe", "failureThreshold").(int)
	if period == 0 {
		period = 10 // Kubernetes' defaults
	}
	if failures == 0 {
		failures = 3
	}
	if seen := time.Duration(period*failures) * time.Second; drain < seen {
		t.Errorf("http.drain_period %s is shorter than the %s the readiness probe (every %ds, %d failures) takes to see the 503", drain, seen, period, failures)
	}
	if cmd := get(container, "lifecycle", "preStop", "exec"); cmd != nil {
		t.Errorf("preStop exec %v: the distroless image has no shell or sleep; rely on http.drain_period", cmd)
	}
}

// TestCompose checks deploy/compose.yaml against the configuration it
// mounts.
func TestCompose(t *testing.T) {
	docs := manifestsLoose(t, "compose.yaml")
	svc := get(docs, "services", "fedbroker")
	var mounted string
	for _, v := range fmtList(get(svc, "volumes")) {
		if src, dst, _ := strings.Cut(v, ":"); strings.HasPrefix(dst, "/etc/fedbroker/config.yaml") {
			mounted = src
		}
	}
	if mounted != "./examples/compose.yaml" {
		t.Fatalf("compose mounts %q as the configuration, want ./examples/compose.yaml", mounted)
	}
	data, err := os.ReadFile(mounted)
	if err != nil {
		t.Fatal(err)
	}
	cfg, used := loadConfig(t, newEnv(t), mounted, data)
	envs := asMap(get(svc, "environment"))
	for _, v := range used {
		if _, ok := envs[v]; !ok {
			t.Errorf("the configuration uses ${%s}; the compose service does not set it", v)
		}
	}
	u, err := url.Parse(cfg.Storage.Redis.URL)
	if err != nil || u.Host != "redis:6379" {
		t.Errorf("redis URL %q, want redis://redis:6379", cfg.Storage.Redis.URL)
	}
	if get(docs, "services", u.Hostname()) == nil {
		t.Errorf("no compose service %q", u.Hostname())
	}
	if cmd := fmtList(get(docs, "services", "redis", "command")); !slices.Contains(cmd, "noeviction") {
		t.Errorf("compose redis command %v, want --maxmemory-policy noeviction", cmd)
	}
	// Redis keeps AOF on, and the broker refuses to start if it is not.
	if cmd := fmtList(get(docs, "services", "redis", "command")); !hasArg(cmd, "--appendonly", "yes") {
		t.Errorf("compose redis command %v, want --appendonly yes", cmd)
	}
	if cfg.Storage.Redis.RequireDurability != "aof" {
		t.Errorf("%s: storage.redis.require_durability %q, want aof", mounted, cfg.Storage.Redis.RequireDurability)
	}
	if host, _, _ := strings.Cut(cfg.HTTP.Addr, ":"); host == "127.0.0.1" || host == "localhost" {
		t.Errorf("http.addr %s is loopback inside the container: the published port cannot reach it", cfg.HTTP.Addr)
	}
}

func manifestsLoose(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return doc
}

func asList(v any) []any         { l, _ := v.([]any); return l }
func asMap(v any) map[string]any { m, _ := v.(map[string]any); return m }

func fmtList(v any) []string {
	var out []string
	for _, x := range asList(v) {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

func equalYAML(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return a != nil && bytes.Equal(ja, jb)
}

func keys(m map[string]map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// hasArg reports whether args holds name followed by value.
func hasArg(args []string, name, value string) bool {
	i := slices.Index(args, name)
	return i >= 0 && i+1 < len(args) && args[i+1] == value
}
