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
	var cfgPath, logLevel string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the broker",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(cmd.ErrOrStderr(), logLevel)
			if err != nil {
				return err
			}
			cfg, err := config.Load(cfgPath)
			if err != nil {
				printProblems(cmd.ErrOrStderr(), cfgPath, err)
				return exitCode(1)
			}
			return serve(cmd.Context(), cfgPath, cfg, logger)
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "path to the YAML configuration (required)")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
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

func serve(ctx context.Context, cfgPath string, cfg *config.Config, logger *slog.Logger) error {
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

	srv := newMainServer(in.Server.Handler(), logger)
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

	doReload := func(ctx context.Context) error { return reload(ctx, cfgPath, in, logger) }
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			_ = doReload(ctx)
		}
	}()

	adminSrv, err := startAdmin(cfg, in, doReload, logger)
	if err != nil {
		_ = ln.Close()
		return err
	}
	if adminSrv != nil {
		defer adminSrv.Close()
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// reload loads, validates and compiles the configuration again and swaps it
// in; an invalid configuration is refused and the old one keeps serving.
func reload(ctx context.Context, cfgPath string, in *broker.Instance, logger *slog.Logger) error {
	cfg, err := config.Load(cfgPath)
	if err == nil {
		err = in.Server.Reload(ctx, cfg)
	}
	if err != nil {
		logger.Error("reload refused; the previous configuration keeps serving", "err", err)
		return err
	}
	logger.Info("reload applied")
	return nil
}

// startAdmin starts the admin API on its own listener when admin.token or
// admin.tls.client_ca_file is configured (loopback by default).
func startAdmin(cfg *config.Config, in *broker.Instance, doReload func(context.Context) error, logger *slog.Logger) (*http.Server, error) {
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
		Token:        a.Token,
		ClientCertOK: mtls,
		Reload:       doReload,
		Gatherer:     in.Server.Gatherer(),
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
