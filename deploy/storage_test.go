package deploy

// The deployments on durable SQL storage: compose-postgres.yaml and
// kubernetes/postgres/ (PostgreSQL for a fleet), compose-sqlite.yaml (one
// node), and their configurations under examples/postgres/ and
// examples/sqlite/. The tests beside them in deploy_test.go cover the
// Redis shape; these check the same things for these files, plus what
// PostgreSQL and SQLite need: the password only in the environment, the
// durability settings, the data on a volume.

import (
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/fedbroker/fedbroker/broker/config"
)

// storageExamples are the configurations of the SQL deployments, by the
// storage type each must have.
var storageExamples = map[string]string{
	"examples/postgres/compose.yaml": "postgres",
	"examples/sqlite/compose.yaml":   "sqlite",
}

// TestStorageExamples loads each SQL example as TestExampleConfigs does
// the others, and runs the check command its header documents as
// TestExampleCommands does.
func TestStorageExamples(t *testing.T) {
	files, err := filepath.Glob("examples/*/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if _, ok := storageExamples[f]; !ok {
			t.Errorf("%s is not among the storage examples this test checks", f)
		}
	}
	bin := buildFedbroker(t)
	e := newEnv(t)
	needRe := regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)
	for f, typ := range storageExamples {
		t.Run(f, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			cfg, used := loadConfig(t, e, f, data)
			if want := []string{"FEDBROKER_KEK"}; !slices.Equal(used, want) {
				t.Errorf("variables used = %v, want %v", used, want)
			}
			if cfg.Storage.Type != typ || cfg.Signing.KeyEncryptionKey == "" {
				t.Errorf("storage %q, KEK set %v: want %s with a key encryption key", cfg.Storage.Type, cfg.Signing.KeyEncryptionKey != "", typ)
			}
			if host, _, _ := strings.Cut(cfg.HTTP.Addr, ":"); host == "127.0.0.1" || host == "localhost" {
				t.Errorf("http.addr %s is loopback inside the container: the published port cannot reach it", cfg.HTTP.Addr)
			}
			switch typ {
			case "postgres":
				checkPostgresURL(t, cfg.Storage.Postgres.URL)
			case "sqlite":
				if p := cfg.Storage.SQLite.Path; !filepath.IsAbs(p) {
					t.Errorf("storage.sqlite.path %q: want an absolute path on the volume", p)
				}
			}

			// The documented check command, run as written.
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
				return known || strings.HasPrefix(name, "PG")
			})
			for _, v := range vars {
				env = append(env, v+"="+e.values[v])
			}
			cmd := exec.Command(bin, args...)
			cmd.Dir = ".."
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), args[len(args)-1]+": OK") {
				t.Errorf("fedbroker %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		})
	}
}

// checkPostgresURL: a postgres:// URL with a user, a database and an
// sslmode, and no password (PGPASSWORD carries it).
func checkPostgresURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "postgres" {
		t.Fatalf("storage.postgres.url %q: want postgres://user@host:port/database (%v)", raw, err)
	}
	if _, set := u.User.Password(); set {
		t.Errorf("storage.postgres.url %q holds a password: leave it to PGPASSWORD", raw)
	}
	if u.User.Username() == "" || strings.Trim(u.Path, "/") == "" || u.Port() == "" {
		t.Errorf("storage.postgres.url %q: want a user, a port and a database", raw)
	}
	if u.Query().Get("sslmode") == "" {
		t.Errorf("storage.postgres.url %q: state the sslmode", raw)
	}
	return u
}

// checkDurable: PostgreSQL's arguments turn fsync, synchronous_commit and
// full_page_writes on, and nothing turns them off.
func checkDurable(t *testing.T, what string, args []string) {
	t.Helper()
	for _, setting := range []string{"fsync", "synchronous_commit", "full_page_writes"} {
		on := false
		for i := 0; i+1 < len(args); i++ {
			on = on || args[i] == "-c" && args[i+1] == setting+"=on"
		}
		if !on {
			t.Errorf("%s: arguments %v lack -c %s=on", what, args, setting)
		}
		for _, a := range args {
			if v, ok := strings.CutPrefix(a, setting+"="); ok && v != "on" {
				t.Errorf("%s: %s", what, a)
			}
		}
	}
}

// postgresDataMount is where the official postgres image of a tag keeps
// its data: PGDATA's default, or the volume the image declares.
func postgresDataMount(t *testing.T, image string) string {
	t.Helper()
	name, tag, _ := strings.Cut(image, ":")
	major, err := strconv.Atoi(strings.SplitN(tag, ".", 2)[0])
	if name != "postgres" || err != nil {
		t.Fatalf("image %q: want postgres:<major version>", image)
	}
	if major >= 18 {
		return "/var/lib/postgresql" // PGDATA /var/lib/postgresql/18/docker
	}
	return "/var/lib/postgresql/data"
}

// composeEnvVar returns the variable a compose environment value is read
// from: FOO for ${FOO}, ${FOO:?…} or ${FOO:-…}.
func composeEnvVar(v any) string {
	s, _ := v.(string)
	m := regexp.MustCompile(`^\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?][^}]*)?\}$`).FindStringSubmatch(s)
	if m == nil {
		return ""
	}
	return m[1]
}

// composeMount returns the source mounted at dst in a service's volumes.
func composeMount(svc any, dst string) string {
	for _, v := range fmtList(get(svc, "volumes")) {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == dst {
			return parts[0]
		}
	}
	return ""
}

// composeBroker checks the fedbroker service of a compose file the way
// TestCompose does, and returns it with its loaded configuration.
func composeBroker(t *testing.T, docs map[string]any, wantConfig string) (any, *config.Config) {
	t.Helper()
	svc := get(docs, "services", "fedbroker")
	if svc == nil {
		t.Fatal("no compose service fedbroker")
	}
	if src := composeMount(svc, "/etc/fedbroker/config.yaml"); src != "./"+wantConfig {
		t.Fatalf("compose mounts %q as the configuration, want ./%s", src, wantConfig)
	}
	data, err := os.ReadFile(wantConfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg, used := loadConfig(t, newEnv(t), wantConfig, data)
	envs := asMap(get(svc, "environment"))
	for _, v := range used {
		if _, ok := envs[v]; !ok {
			t.Errorf("the configuration uses ${%s}; the compose service does not set it", v)
		}
	}
	if !slices.Contains(fmtList(get(svc, "ports")), "5556:5556") {
		t.Errorf("fedbroker ports %v, want 5556:5556", get(svc, "ports"))
	}
	if _, port, _ := strings.Cut(cfg.HTTP.Addr, ":"); port != "5556" {
		t.Errorf("http.addr %s: want port 5556, which compose publishes", cfg.HTTP.Addr)
	}
	if host, _, _ := strings.Cut(cfg.HTTP.Addr, ":"); host == "127.0.0.1" || host == "localhost" {
		t.Errorf("http.addr %s is loopback inside the container: the published port cannot reach it", cfg.HTTP.Addr)
	}
	if get(svc, "healthcheck", "test") == nil {
		t.Errorf("fedbroker has no healthcheck")
	}
	return svc, cfg
}

// TestComposePostgres checks compose-postgres.yaml against the
// configuration it mounts and the PostgreSQL service it runs.
func TestComposePostgres(t *testing.T) {
	docs := manifestsLoose(t, "compose-postgres.yaml")
	svc, cfg := composeBroker(t, docs, "examples/postgres/compose.yaml")
	if cfg.Storage.Type != "postgres" {
		t.Fatalf("storage %q, want postgres", cfg.Storage.Type)
	}
	u := checkPostgresURL(t, cfg.Storage.Postgres.URL)
	pg := get(docs, "services", u.Hostname())
	if pg == nil {
		t.Fatalf("the storage URL's host %q is not a compose service", u.Hostname())
	}
	if u.Port() != "5432" {
		t.Errorf("storage URL port %s, want the postgres image's 5432", u.Port())
	}
	pgEnv := asMap(get(pg, "environment"))
	if user, db := pgEnv["POSTGRES_USER"], pgEnv["POSTGRES_DB"]; user != u.User.Username() || db != strings.Trim(u.Path, "/") {
		t.Errorf("postgres creates user %v and database %v; the storage URL wants %s and %s", user, db, u.User.Username(), strings.Trim(u.Path, "/"))
	}
	// The broker's PGPASSWORD is the password the database user is
	// created with, from one variable of the operator's.
	pass := composeEnvVar(pgEnv["POSTGRES_PASSWORD"])
	if pass == "" || !strings.Contains(pgEnv["POSTGRES_PASSWORD"].(string), ":?") {
		t.Errorf("postgres POSTGRES_PASSWORD %v: want ${VAR:?message}, required from the environment", pgEnv["POSTGRES_PASSWORD"])
	}
	if got := composeEnvVar(asMap(get(svc, "environment"))["PGPASSWORD"]); got != pass {
		t.Errorf("fedbroker PGPASSWORD reads ${%s}; postgres POSTGRES_PASSWORD reads ${%s}: want the same variable", got, pass)
	}
	if cond := get(svc, "depends_on", u.Hostname(), "condition"); cond != "service_healthy" {
		t.Errorf("fedbroker depends_on %s condition %v, want service_healthy", u.Hostname(), cond)
	}
	if test := fmtList(get(pg, "healthcheck", "test")); !slices.Contains(test, "pg_isready") {
		t.Errorf("postgres healthcheck %v, want pg_isready", test)
	}
	// Durable: the data on a named volume where the image keeps it, and
	// fsync and its kin on.
	image, _ := get(pg, "image").(string)
	vol := composeMount(pg, postgresDataMount(t, image))
	if vol == "" || strings.ContainsAny(vol, "./") {
		t.Errorf("postgres mounts %q at %s, want a named volume", vol, postgresDataMount(t, image))
	} else if _, ok := asMap(get(docs, "volumes"))[vol]; !ok {
		t.Errorf("volume %q is not declared under volumes:", vol)
	}
	cmd := fmtList(get(pg, "command"))
	if len(cmd) == 0 || cmd[0] != "postgres" {
		t.Errorf("postgres command %v, want postgres -c …", cmd)
	}
	checkDurable(t, "compose postgres command", cmd)
}

// TestComposeSQLite checks compose-sqlite.yaml: one broker, its database
// on a named volume that the image's user owns.
func TestComposeSQLite(t *testing.T) {
	docs := manifestsLoose(t, "compose-sqlite.yaml")
	svc, cfg := composeBroker(t, docs, "examples/sqlite/compose.yaml")
	if cfg.Storage.Type != "sqlite" {
		t.Fatalf("storage %q, want sqlite", cfg.Storage.Type)
	}
	if r := get(svc, "deploy", "replicas"); r != nil && r != 1 {
		t.Errorf("fedbroker deploy.replicas %v: one process owns a SQLite file", r)
	}
	dir := filepath.Dir(cfg.Storage.SQLite.Path)
	vol := composeMount(svc, dir)
	if vol == "" || strings.ContainsAny(vol, "./") {
		t.Fatalf("fedbroker mounts %q at %s (the directory of storage.sqlite.path, with its -wal and -shm files), want a named volume", vol, dir)
	}
	if _, ok := asMap(get(docs, "volumes"))[vol]; !ok {
		t.Errorf("volume %q is not declared under volumes:", vol)
	}
	// A new named volume is root's; the image runs as nonroot (65532),
	// so a one-shot service hands it over before the broker starts.
	dockerfile, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^USER nonroot:nonroot$`).Match(dockerfile) || !strings.Contains(string(dockerfile), "distroless/static-debian12:nonroot") {
		t.Fatalf("the Dockerfile no longer runs as distroless nonroot (65532): update the volume's owner in compose-sqlite.yaml")
	}
	owned := false
	for name, s := range asMap(get(docs, "services")) {
		if name == "fedbroker" || composeMount(s, dir) != vol {
			continue
		}
		if cmd := fmtList(get(s, "command")); len(cmd) == 3 && cmd[0] == "chown" && cmd[1] == "65532:65532" && cmd[2] == dir {
			owned = true
			if cond := get(svc, "depends_on", name, "condition"); cond != "service_completed_successfully" {
				t.Errorf("fedbroker depends_on %s condition %v, want service_completed_successfully", name, cond)
			}
		}
	}
	if !owned {
		t.Errorf("no service chowns volume %s at %s to 65532:65532 before the broker starts", vol, dir)
	}
}

// TestKubernetesPostgres checks kubernetes/postgres/: the broker's
// objects are those of kubernetes/ but for PGPASSWORD, its ConfigMap
// loads with the Secret's variables and reaches PostgreSQL through its
// Service, and PostgreSQL keeps its data on a PersistentVolume with its
// durability settings on.
func TestKubernetesPostgres(t *testing.T) {
	files, err := filepath.Glob("kubernetes/postgres/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests under kubernetes/postgres/: %v", err)
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
	redis := kubeObjects(t)

	// The broker runs exactly as with Redis, plus PGPASSWORD.
	dep := objs["Deployment/fedbroker"]
	if dep == nil {
		t.Fatalf("no Deployment fedbroker among %v", keys(objs))
	}
	c := get(dep, "spec", "template", "spec", "containers", 0)
	pgpass := envEntry(c, "PGPASSWORD")
	if pgpass == nil {
		t.Fatalf("the fedbroker container has no env PGPASSWORD")
	}
	if !equalYAML(withoutContainerEnv(t, dep), withoutContainerEnv(t, redis["Deployment/fedbroker"])) {
		t.Errorf("Deployment fedbroker differs from kubernetes/fedbroker.yaml's by more than its env")
	}
	if len(asList(get(c, "env"))) != 1 {
		t.Errorf("fedbroker env %v: want PGPASSWORD alone (the rest comes from the Secret)", get(c, "env"))
	}
	for _, k := range []string{"Service/fedbroker", "PodDisruptionBudget/fedbroker", "Secret/fedbroker"} {
		if !equalYAML(objs[k], redis[k]) {
			t.Errorf("%s differs from kubernetes/'s", k)
		}
	}

	// The configuration.
	data, _ := get(objs["ConfigMap/fedbroker"], "data", "config.yaml").(string)
	if data == "" {
		t.Fatal("no ConfigMap fedbroker with data config.yaml")
	}
	cfg, used := loadConfig(t, newEnv(t), "kubernetes/postgres ConfigMap fedbroker config.yaml", []byte(data))
	var secretKeys []string
	for k := range asMap(get(objs["Secret/fedbroker"], "stringData")) {
		secretKeys = append(secretKeys, k)
	}
	sort.Strings(secretKeys)
	if !slices.Equal(used, secretKeys) {
		t.Errorf("the configuration uses %v; the Secret provides %v", used, secretKeys)
	}
	if cfg.Storage.Type != "postgres" {
		t.Fatalf("storage %q, want postgres", cfg.Storage.Type)
	}
	if !strings.HasPrefix(cfg.Issuer, "https://") {
		t.Errorf("issuer %s: want https in production", cfg.Issuer)
	}
	if _, port, _ := strings.Cut(cfg.HTTP.Addr, ":"); port != "5556" || strings.HasPrefix(cfg.HTTP.Addr, "127.") {
		t.Errorf("http.addr %s: want a non-loopback address on port 5556", cfg.HTTP.Addr)
	}
	checkDrain(t, get(dep, "spec", "template", "spec"), c, cfg)

	// The URL reaches the PostgreSQL StatefulSet through its Service.
	u := checkPostgresURL(t, cfg.Storage.Postgres.URL)
	svc := objs["Service/"+u.Hostname()]
	if svc == nil {
		t.Fatalf("the storage URL's host %q is not a Service in kubernetes/postgres/", u.Hostname())
	}
	sts := objs["StatefulSet/"+u.Hostname()]
	if sts == nil {
		t.Fatalf("no StatefulSet %s", u.Hostname())
	}
	if !equalYAML(get(svc, "spec", "selector"), get(sts, "spec", "template", "metadata", "labels")) {
		t.Errorf("Service %s selects %v; the PostgreSQL pods are labelled %v", u.Hostname(), get(svc, "spec", "selector"), get(sts, "spec", "template", "metadata", "labels"))
	}
	if p := strconv.Itoa(asInt(get(svc, "spec", "ports", 0, "port"))); p != u.Port() {
		t.Errorf("Service %s port %s; the storage URL's %s", u.Hostname(), p, u.Port())
	}
	if r := asInt(get(sts, "spec", "replicas")); r != 1 {
		t.Errorf("StatefulSet %s replicas %d, want 1 (a single PostgreSQL node)", u.Hostname(), r)
	}
	pg := get(sts, "spec", "template", "spec", "containers", 0)
	if p := asInt(get(pg, "ports", 0, "containerPort")); strconv.Itoa(p) != u.Port() {
		t.Errorf("PostgreSQL container port %d; the storage URL's %s", p, u.Port())
	}
	if user, db := get(envEntry(pg, "POSTGRES_USER"), "value"), get(envEntry(pg, "POSTGRES_DB"), "value"); user != u.User.Username() || db != strings.Trim(u.Path, "/") {
		t.Errorf("PostgreSQL creates user %v and database %v; the storage URL wants %s and %s", user, db, u.User.Username(), strings.Trim(u.Path, "/"))
	}
	// One Secret key is both the user's password and the broker's.
	ref := get(pgpass, "valueFrom", "secretKeyRef")
	if !equalYAML(ref, get(envEntry(pg, "POSTGRES_PASSWORD"), "valueFrom", "secretKeyRef")) {
		t.Errorf("fedbroker PGPASSWORD comes from %v, PostgreSQL's POSTGRES_PASSWORD from %v: want the same Secret key", ref, get(envEntry(pg, "POSTGRES_PASSWORD"), "valueFrom", "secretKeyRef"))
	}
	secretName, _ := get(ref, "name").(string)
	secretKey, _ := get(ref, "key").(string)
	if _, ok := asMap(get(objs["Secret/"+secretName], "stringData"))[secretKey]; !ok || secretName == "fedbroker" {
		t.Errorf("PGPASSWORD's Secret %q key %q: want a Secret of PostgreSQL's own (not the broker's, which holds the KEK) defined here", secretName, secretKey)
	}

	// Durable: fsync and its kin on, the data on the claim's volume.
	checkDurable(t, "PostgreSQL args", fmtList(get(pg, "args")))
	image, _ := get(pg, "image").(string)
	mount := postgresDataMount(t, image)
	var claim string
	for _, m := range asList(get(pg, "volumeMounts")) {
		if get(m, "mountPath") == mount {
			claim, _ = get(m, "name").(string)
		}
	}
	if claim == "" || get(sts, "spec", "volumeClaimTemplates", 0, "metadata", "name") != claim {
		t.Errorf("PostgreSQL mounts %q at %s; want the StatefulSet's volumeClaimTemplate there", claim, mount)
	}
	pgdata, _ := get(envEntry(pg, "PGDATA"), "value").(string)
	if !strings.HasPrefix(pgdata, mount+"/") {
		t.Errorf("PGDATA %q: want a directory below the volume at %s (whose root may hold lost+found)", pgdata, mount)
	}
	if stop := fmtList(get(pg, "lifecycle", "preStop", "exec", "command")); !hasArg(stop, "-D", pgdata) || !hasArg(stop, "-m", "fast") {
		t.Errorf("PostgreSQL preStop %v: want pg_ctl stop -D %s -m fast (SIGTERM's smart shutdown waits on the brokers' pooled connections)", stop, pgdata)
	}
	if g := asInt(get(sts, "spec", "template", "spec", "terminationGracePeriodSeconds")); g < 30 {
		t.Errorf("PostgreSQL terminationGracePeriodSeconds %d: want time for a shutdown checkpoint", g)
	}
	for _, probe := range []string{"readinessProbe", "livenessProbe"} {
		if cmd := fmtList(get(pg, probe, "exec", "command")); len(cmd) == 0 || cmd[0] != "pg_isready" {
			t.Errorf("PostgreSQL %s %v, want pg_isready", probe, cmd)
		}
	}
}

// envEntry returns a container's env entry called name.
func envEntry(container any, name string) any {
	for _, e := range asList(get(container, "env")) {
		if get(e, "name") == name {
			return e
		}
	}
	return nil
}

// withoutContainerEnv returns a copy of a Deployment without its
// containers' env.
func withoutContainerEnv(t *testing.T, dep map[string]any) any {
	t.Helper()
	b, err := json.Marshal(dep)
	if err != nil {
		t.Fatal(err)
	}
	var cp map[string]any
	if err := json.Unmarshal(b, &cp); err != nil {
		t.Fatal(err)
	}
	for _, c := range asList(get(cp, "spec", "template", "spec", "containers")) {
		delete(asMap(c), "env")
	}
	return cp
}

func asInt(v any) int {
	switch n := v.(type) {
	case int:
		return n
	case float64:
		return int(n)
	}
	return 0
}
