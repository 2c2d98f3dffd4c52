package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/fedbroker/fedbroker/broker"
	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/jwks"
	"github.com/fedbroker/fedbroker/connectors/registry"
	"github.com/fedbroker/fedbroker/connectors/workload"
)

func newCheckCmd() *cobra.Command {
	var cfgPath string
	var offline, live bool
	cmd := &cobra.Command{
		Use:   "check [CONFIG]",
		Short: "Load, validate and compile a configuration; print every problem with its YAML path and line",
		Long: `check reads, validates and compiles a configuration without serving it and
prints every problem as "path: line N: message". It connects to no
storage, and to upstreams only for their discovery documents (--offline
skips that too).

--live checks the file offline, then connects to the storage (Redis: a
ping and its eviction policy) and to every upstream (OpenID Connect
discovery and keys, SAML metadata, workload issuers' discovery and keys)
as serving would, and prints each one's status; it exits 1 when any of
them fails.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				cfgPath = args[0]
			}
			if cfgPath == "" {
				return errors.New("check: give the configuration file as an argument or with --config")
			}
			if live && offline {
				return errors.New("check: --live connects to what --offline leaves alone: give one of them")
			}
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			// With --live, opening the upstreams is the live check's part:
			// one that does not answer is a status, not a problem.
			cfg, err := checkConfig(cmd.Context(), cfgPath, offline || live)
			if err != nil {
				printProblems(errOut, cfgPath, err)
				return exitCode(1)
			}
			fmt.Fprintf(out, "%s: OK\n", cfgPath)
			fmt.Fprintf(out, "  issuer:     %s\n", cfg.Issuer)
			fmt.Fprintf(out, "  storage:    %s\n", cfg.Storage.Type)
			fmt.Fprintf(out, "  signing:    %s\n", cfg.Signing.Algorithm)
			fmt.Fprintf(out, "  connectors: %d\n", len(cfg.Connectors))
			for _, c := range cfg.Connectors {
				fmt.Fprintf(out, "    - %s (%s)\n", c.ID, c.Type)
			}
			fmt.Fprintf(out, "  mappings:   %d\n", len(cfg.Mappings))
			fmt.Fprintf(out, "  clients:    %d\n", len(cfg.Clients))
			for _, c := range cfg.Clients {
				kind := "confidential"
				if c.Public {
					kind = "public"
				}
				fmt.Fprintf(out, "    - %s (%s)\n", c.ID, kind)
			}
			for _, n := range locateProblems(cfgPath, cfg.Notes()) {
				fmt.Fprintf(out, "  note: %s: %s\n", n.Path, n.Message)
			}
			if !live {
				return nil
			}
			results := liveCheck(cmd.Context(), cfg, nil)
			fmt.Fprintf(out, "  live:\n")
			failed := 0
			for _, r := range results {
				if r.Err != nil {
					failed++
					fmt.Fprintf(out, "    %s: error: %s\n", r.What, liveReason(r.Err))
					continue
				}
				fmt.Fprintf(out, "    %s: %s\n", r.What, r.OK)
			}
			if failed > 0 {
				fmt.Fprintf(errOut, "%s: %d of %d failed the live check\n", cfgPath, failed, len(results))
				return exitCode(1)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "path to the YAML configuration")
	cmd.Flags().BoolVar(&offline, "offline", false, "validate connectors without contacting upstreams (no discovery)")
	cmd.Flags().BoolVar(&live, "live", false, "also connect to the storage and every upstream, print each one's status, and exit 1 if any fails")
	return cmd
}

// printProblems prints every configuration problem of the file at path,
// one per line as "  path: line N: message" (a problem of the file as a
// whole shows the path "(file)"), or the error as is. Problems that do not
// name their line yet are placed at it (locateProblems).
func printProblems(w io.Writer, path string, err error) {
	var problems config.Errors
	if errors.As(err, &problems) {
		problems = locateProblems(path, problems)
		fmt.Fprintf(w, "%s: %d problem(s):\n", path, len(problems))
		for _, p := range problems {
			where := p.Path
			if where == "" {
				where = "(file)"
			}
			fmt.Fprintf(w, "  %s: %s\n", where, p.Message)
		}
		return
	}
	fmt.Fprintf(w, "%s: %v\n", path, err)
}

// locateProblems places every problem of ps at its line in the
// configuration file at path (config.Lines): config.Load's and Inspect's
// problems name theirs already, those that compiling finds (connector and
// workload blocks, mappings, the storage URL) are known by their YAML path
// only. When path is not a regular file, ps is returned as it is.
func locateProblems(path string, ps []config.Problem) config.Errors {
	if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
		return ps
	}
	lines, err := config.ReadLines(path)
	if err != nil {
		return ps
	}
	return lines.Locate(ps)
}

// checkConfig reports every problem of the file at path in one pass: the
// file's own (config.Inspect), then what compiling it finds (connector and
// workload blocks, mappings, client keys), leaving out a problem at or
// below a path already reported. A file with problems is compiled offline:
// nothing is fetched for a configuration that cannot be served anyway.
func checkConfig(ctx context.Context, path string, offline bool) (*config.Config, error) {
	cfg, err := config.Inspect(path)
	var ps config.Errors
	if err != nil && !errors.As(err, &ps) || cfg == nil {
		return nil, err
	}
	cerr := broker.Check(ctx, cfg, broker.Options{}, offline || len(ps) > 0)
	var more config.Errors
	switch {
	case cerr == nil:
	case errors.As(cerr, &more):
		ps = ps.Merge(more)
	default:
		ps = append(ps, config.Problem{Message: cerr.Error()})
	}
	if len(ps) > 0 {
		return nil, ps
	}
	return cfg, nil
}

// liveTimeout bounds the live check of one storage or upstream.
const liveTimeout = 20 * time.Second

// liveResult is what the live check found for one thing the broker
// connects to.
type liveResult struct {
	What string // "storage (redis)", "connectors[1] corp (oidc)", "workloads[0] ci"
	OK   string // what it found when nothing failed: "ok", "ok (no upstream)"
	Err  error
}

// liveCheck connects to the storage and to every connector's and workload
// issuer's upstream of cfg (which passed check) the way serving would,
// all at once, and returns their statuses in that order: storage first.
// It reuses what the broker runs: OpenStorage (Redis: ping and eviction
// policy), each connector type's Open (OpenID Connect discovery, SAML
// metadata) and HealthChecker, and each workload issuer's Open and key
// set. client makes the upstream requests (nil: a client with a timeout).
func liveCheck(ctx context.Context, cfg *config.Config, client *http.Client) []liveResult {
	if client == nil {
		client = &http.Client{Timeout: 15 * time.Second}
	}
	out := make([]liveResult, 1+len(cfg.Connectors)+len(cfg.Workloads))
	var wg sync.WaitGroup
	probe := func(i int, what string, check func(context.Context) (string, error)) {
		out[i].What = what
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, liveTimeout)
			defer cancel()
			out[i].OK, out[i].Err = check(ctx)
		})
	}
	probe(0, "storage ("+cfg.Storage.Type+")", func(ctx context.Context) (string, error) {
		return liveStorage(ctx, cfg)
	})
	for i, c := range cfg.Connectors {
		probe(1+i, fmt.Sprintf("connectors[%d] %s (%s)", i, c.ID, c.Type), func(ctx context.Context) (string, error) {
			return liveConnector(ctx, cfg, c, client)
		})
	}
	for i, w := range cfg.Workloads {
		probe(1+len(cfg.Connectors)+i, fmt.Sprintf("workloads[%d] %s", i, w.ID), func(ctx context.Context) (string, error) {
			return liveWorkload(ctx, cfg, w, client)
		})
	}
	wg.Wait()
	return out
}

var liveLogger = slog.New(slog.DiscardHandler)

// liveStorage opens the storage as serve does: for Redis, a ping and the
// eviction policy check.
func liveStorage(ctx context.Context, cfg *config.Config) (string, error) {
	switch cfg.Storage.Type {
	case "redis":
	case "sqlite", "postgres":
		if p := cfg.Storage.SQLite.Path; cfg.Storage.Type == "sqlite" {
			if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
				if fi, err := os.Stat(filepath.Dir(p)); err != nil || !fi.IsDir() {
					return "", fmt.Errorf("storage.sqlite.path: the directory of %s does not exist", p)
				}
				return "ok (" + p + " will be created at start)", nil
			}
		}
		// Opened without migrating: check changes nothing.
		st, err := openSQL(ctx, cfg)
		if err != nil {
			return "", err
		}
		defer st.Close()
		pending, err := st.PendingMigrations(ctx)
		if err != nil {
			return "", err
		}
		if len(pending) > 0 {
			return fmt.Sprintf("ok (%d schema migrations to apply at start, or with fedbroker storage migrate)", len(pending)), nil
		}
		return "ok", nil
	default:
		return "ok (nothing to connect to)", nil
	}
	st, err := broker.OpenStorage(ctx, cfg, liveLogger)
	if err != nil {
		return "", err
	}
	_ = st.Close()
	return "ok", nil
}

// liveConnector opens the connector as the broker does (OpenID Connect:
// discovery; SAML: the IdP metadata) and asks it whether its upstream
// answers: HealthChecker when it has one (OpenID Connect: the upstream's
// keys); for a SAML connector, starting a sign-in, which needs the IdP
// metadata and fails with the error of fetching it when that failed.
func liveConnector(ctx context.Context, cfg *config.Config, c config.Connector, client *http.Client) (string, error) {
	typed, ps := c.Decode(registry.Types())
	if len(ps) > 0 {
		return "", config.Errors(ps)
	}
	impl, err := typed.Open(ctx, c.ID, connectors.Options{
		Logger:      liveLogger,
		HTTPClient:  client,
		CallbackURL: runtime.CallbackURL(cfg.Issuer, c.ID),
		BaseURL:     cfg.Issuer,
		ReplayCache: refuseReplays{},
	})
	if err != nil {
		return "", err
	}
	if cl, ok := impl.(io.Closer); ok {
		defer cl.Close()
	}
	switch impl := impl.(type) {
	case connectors.HealthChecker:
		return "ok", impl.CheckHealth(ctx)
	case connectors.POSTConnector:
		_, _, err := impl.LoginRequest(ctx, connectors.Scopes{}, "", "")
		return "ok", err
	case connectors.PasswordConnector:
		return "ok (no upstream)", nil
	}
	return "ok (opened)", nil
}

// liveKeyID is the key id of the live check's probe token: no issuer
// publishes it.
const liveKeyID = "fedbroker-check-live-probe"

// liveWorkload opens the workload issuer as the broker does (discovery,
// unless its keys are given) and makes it fetch its keys: it verifies a
// token signed with a key id nobody publishes, which fetches the key set
// and then finds no such key.
func liveWorkload(ctx context.Context, cfg *config.Config, w config.Workload, client *http.Client) (string, error) {
	var wcfg workload.Config
	if ps := w.Decode(&wcfg); len(ps) > 0 {
		return "", config.Errors(ps)
	}
	v, err := wcfg.Open(ctx, w.ID, connectors.Options{Logger: liveLogger, HTTPClient: client, BaseURL: cfg.Issuer})
	if err != nil {
		return "", err
	}
	if wcfg.JWKSFile != "" {
		return "ok (keys from jwks_file)", nil
	}
	alg := "RS256"
	if len(wcfg.Algorithms) > 0 {
		alg = wcfg.Algorithms[0]
	}
	enc := base64.RawURLEncoding.EncodeToString
	token := enc([]byte(`{"alg":"`+alg+`","kid":"`+liveKeyID+`"}`)) + "." + enc([]byte("{}")) + "." + enc([]byte{0})
	_, err = v.VerifyToken(ctx, token)
	// The verifier words the key set's error without wrapping it.
	if err == nil || strings.HasSuffix(err.Error(), jwks.ErrUnknownKey.Error()) {
		return "ok", nil
	}
	return "", fmt.Errorf("keys: %s", strings.TrimPrefix(err.Error(), workload.ErrUntrusted.Error()+": "))
}

// refuseReplays is the replay cache of connectors opened by the live
// check, which accepts no sign-in.
type refuseReplays struct{}

func (refuseReplays) MarkSeen(context.Context, string, string, time.Time) (bool, error) {
	return false, errors.New("check: a configuration check accepts no sign-in")
}

// liveReason is what failed, without the words a person signing in would see.
func liveReason(err error) string {
	var ue *connectors.UserError
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err.Error()
	}
	return err.Error()
}
