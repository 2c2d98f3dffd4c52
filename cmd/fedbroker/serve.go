package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/fedbroker/fedbroker/broker"
	"github.com/fedbroker/fedbroker/broker/config"
)

func newServeCmd() *cobra.Command {
	var cfgPath, logLevel, logPath string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the broker",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out io.Writer = cmd.ErrOrStderr()
			var lf *logFile
			if logPath != "" {
				var err error
				if lf, err = openLogFile(logPath); err != nil {
					return err
				}
				defer lf.Close()
				out = lf
			}
			logger, err := newLogger(out, logLevel)
			if err != nil {
				return err
			}
			cfg, err := config.Load(cfgPath)
			if err != nil {
				printProblems(cmd.ErrOrStderr(), cfgPath, err)
				return exitCode(1)
			}
			return serve(cmd.Context(), cfgPath, cfg, logger, lf)
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "path to the YAML configuration (required)")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().StringVar(&logPath, "log-file", "", "write the log (JSON lines, audit included) to this file instead of standard error; reopened on SIGHUP, tailed by the admin console")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// serve runs the broker until ctx ends. lf, when not nil, is the file the
// log goes to: reopened on SIGHUP and shown by the admin console.
func serve(ctx context.Context, cfgPath string, cfg *config.Config, logger *slog.Logger, lf *logFile) error {
	in, err := broker.Start(ctx, cfg, logger)
	if err != nil {
		var problems config.Errors
		if errors.As(err, &problems) {
			printProblems(os.Stderr, cfgPath, err)
			return exitCode(1)
		}
		return err
	}
	defer in.Close()

	srv := newMainServer(closeWhileDraining(in.Server, in.Server.Handler()), logger)
	srv.Addr = cfg.HTTP.Addr
	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("http.addr: %w", err)
	}
	if cfg.HTTP.TLS != nil {
		cert, err := tls.LoadX509KeyPair(cfg.HTTP.TLS.CertFile, cfg.HTTP.TLS.KeyFile)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("http.tls: %w", err)
		}
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		ln = tls.NewListener(ln, srv.TLSConfig)
	} else if host, _, _ := net.SplitHostPort(ln.Addr().String()); !config.IsLoopback(host) && strings.HasPrefix(cfg.Issuer, "http://") {
		logger.Warn("SERVING PLAIN HTTP ON A NON-LOOPBACK ADDRESS: tokens and cookies travel unencrypted; put TLS in front or set http.tls", "addr", ln.Addr().String())
	}
	logger.Info("fedbroker serving", "issuer", cfg.Issuer, "addr", ln.Addr().String(), "storage", cfg.Storage.Type)

	doReload := func(ctx context.Context) (config.ReloadReport, error) { return reload(ctx, cfgPath, in, logger) }
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if lf != nil {
				if err := lf.Reopen(); err != nil {
					logger.Error("reopen the log file", "err", err)
				}
			}
			_, _ = doReload(ctx)
		}
	}()

	auditFile := ""
	if lf != nil {
		auditFile = lf.path
	}
	adminSrv, err := startAdmin(cfg, in, doReload, logger, auditFile)
	if err != nil {
		_ = ln.Close()
		return err
	}
	if adminSrv != nil {
		defer adminSrv.Close()
	}

	// main cancels ctx on SIGTERM and SIGINT; sigc receives the same
	// signals, so that a second one can end the drain.
	sigc := make(chan os.Signal, 4)
	signal.Notify(sigc, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(sigc)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	// pending counts signals on their way to sigc that are the one which
	// started the drain: a signal cancels ctx and reaches sigc, in either
	// order.
	pending := 0
	select {
	case err := <-errc:
		return err
	case <-sigc:
	case <-ctx.Done():
		if cancelledBySignal(ctx) {
			pending = 1
		}
	}
	return shutdown(srv, in.Server, cfg.HTTP.Drain(), sigc, pending, errc, logger)
}

// shutdownTimeout bounds how long serve waits for requests in flight once
// its listener is closed.
const shutdownTimeout = 20 * time.Second

// shutdown drains, then stops srv: /readyz answers 503 at once while every
// request is still served for drain (so that load balancers stop sending
// new requests here), or until a second signal arrives on sigc (pending
// signals there belong to the first); then the listener closes and the
// requests in flight finish, for shutdownTimeout at most.
func shutdown(srv *http.Server, b *broker.Server, drain time.Duration, sigc <-chan os.Signal, pending int, errc <-chan error, logger *slog.Logger) error {
	b.Drain()
	logger.Info("draining: /readyz answers 503, requests are still served", "drain_period", drain.String())
	if drain > 0 {
		timer := time.NewTimer(drain)
		defer timer.Stop()
	wait:
		for {
			select {
			case err := <-errc:
				return err
			case <-timer.C:
				break wait
			case sig := <-sigc:
				if pending > 0 {
					pending--
					continue
				}
				logger.Info("second signal: drain ended early", "signal", sig.String())
				break wait
			}
		}
	}
	logger.Info("listener closed: finishing requests in flight", "timeout", shutdownTimeout.String())
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		logger.Error("stopped with requests still in flight", "err", err)
		return err
	}
	logger.Info("stopped")
	return nil
}

// cancelledBySignal reports whether ctx was cancelled by
// signal.NotifyContext rather than by its caller or a deadline. Its cause
// names the signal but also matches context.Canceled (errors.Is), so it is
// told apart from a plain cancel by identity: cancel() leaves exactly
// context.Canceled as the cause.
func cancelledBySignal(ctx context.Context) bool {
	cause := context.Cause(ctx)
	return cause != nil && cause != context.Canceled && !errors.Is(cause, context.DeadlineExceeded)
}

// closeWhileDraining asks clients to close their connection after each
// answer once the broker drains, so that keep-alive connections move to
// other replicas before the listener closes.
func closeWhileDraining(b *broker.Server, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b.Draining() {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}

// reload loads, validates and compiles the configuration again and swaps
// in what the running server can take; an invalid configuration is refused
// and the old one keeps serving. It logs one line listing each changed
// field (its path, never its value) as applied or needing a restart.
func reload(ctx context.Context, cfgPath string, in *broker.Instance, logger *slog.Logger) (config.ReloadReport, error) {
	cfg, err := config.Load(cfgPath)
	var rep config.ReloadReport
	if err == nil {
		rep, err = in.Server.ReloadWithReport(ctx, cfg)
	}
	if err != nil {
		logger.Error("reload refused; the previous configuration keeps serving", "err", err)
		return rep, err
	}
	applied := rep.Applied
	if applied == nil {
		applied = []config.Change{} // logged as [], not null
	}
	switch {
	case len(rep.RestartRequired) > 0:
		logger.Warn("reload applied; some changes need a restart", "applied", applied, "restart_required", rep.RestartRequired)
	case len(rep.Applied) > 0:
		logger.Info("reload applied", "applied", rep.Applied, "restart_required", []config.Change{})
	default:
		logger.Info("reload: no changes")
	}
	return rep, nil
}

// startAdmin starts the admin API on its own listener when admin.token or
// admin.tls.client_ca_file is configured (loopback by default).
func startAdmin(cfg *config.Config, in *broker.Instance, doReload func(context.Context) (config.ReloadReport, error), logger *slog.Logger, auditFile string) (*http.Server, error) {
	a := cfg.Admin
	mtls := a.TLS != nil && a.TLS.ClientCAFile != ""
	if a.Token == "" && !mtls {
		if a.Addr != "" {
			logger.Warn("admin.addr is set but neither admin.token nor admin.tls.client_ca_file: the admin API stays off")
		}
		return nil, nil
	}
	addr := a.Addr
	if addr == "" {
		addr = "127.0.0.1:5557"
	}
	srv := newAdminServer(in.Server.AdminHandler(broker.AdminOptions{
		Token:            a.Token,
		ClientCertOK:     mtls,
		ReloadWithReport: doReload,
		Gatherer:         in.Server.Gatherer(),
		AuditFile:        auditFile,
	}), logger)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin.addr: %w", err)
	}
	if a.TLS != nil {
		cert, err := tls.LoadX509KeyPair(a.TLS.CertFile, a.TLS.KeyFile)
		if err != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("admin.tls: %w", err)
		}
		tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		if mtls {
			pem, err := os.ReadFile(a.TLS.ClientCAFile)
			if err != nil {
				_ = ln.Close()
				return nil, fmt.Errorf("admin.tls.client_ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				_ = ln.Close()
				return nil, errors.New("admin.tls.client_ca_file: no certificate found")
			}
			tc.ClientCAs = pool
			// Bearer-token requests may come without a certificate; a
			// presented certificate must verify.
			tc.ClientAuth = tls.VerifyClientCertIfGiven
		}
		ln = tls.NewListener(ln, tc)
	}
	if host, _, _ := net.SplitHostPort(ln.Addr().String()); !config.IsLoopback(host) && a.TLS == nil {
		logger.Warn("admin API on a non-loopback address without TLS: the bearer token travels in clear", "addr", ln.Addr().String())
	}
	logger.Info("admin API listening", "addr", ln.Addr().String())
	consoleScheme := "http"
	if a.TLS != nil {
		consoleScheme = "https"
	}
	logger.Info("admin console", "url", consoleScheme+"://"+ln.Addr().String()+"/console/")
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("admin API stopped", "err", err)
		}
	}()
	return srv, nil
}

// listenerTimeouts bound one listener's connections: ReadHeader and Read
// for the request (headers; headers and body), Write from the end of the
// request headers to the end of the response, Idle for a keep-alive
// connection between requests.
type listenerTimeouts struct {
	ReadHeader, Read, Write, Idle time.Duration
}

var (
	mainTimeouts = listenerTimeouts{ReadHeader: 10 * time.Second, Read: 30 * time.Second, Write: 30 * time.Second, Idle: 120 * time.Second}
	// adminTimeouts allow a longer response: POST /admin/reload opens
	// every connector again, each discovery bounded by 15s.
	adminTimeouts = listenerTimeouts{ReadHeader: 10 * time.Second, Read: 30 * time.Second, Write: 2 * time.Minute, Idle: 120 * time.Second}
)

// maxHeaderBytes bounds the request headers on both listeners.
const maxHeaderBytes = 64 << 10

// newMainServer is the broker's public listener.
func newMainServer(h http.Handler, logger *slog.Logger) *http.Server {
	return newHTTPServer(h, logger, mainTimeouts)
}

// newAdminServer is the admin API's listener.
func newAdminServer(h http.Handler, logger *slog.Logger) *http.Server {
	return newHTTPServer(h, logger, adminTimeouts)
}

func newHTTPServer(h http.Handler, logger *slog.Logger, t listenerTimeouts) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}
