package main

import (
	"context"
	"crypto/tls"
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

	srv := &http.Server{
		Addr:              cfg.HTTP.Addr,
		Handler:           in.Server.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
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
	} else if host, _, _ := net.SplitHostPort(ln.Addr().String()); !isLoopback(host) && strings.HasPrefix(cfg.Issuer, "http://") {
		logger.Warn("SERVING PLAIN HTTP ON A NON-LOOPBACK ADDRESS: tokens and cookies travel unencrypted; put TLS in front or set http.tls", "addr", ln.Addr().String())
	}
	logger.Info("fedbroker serving", "issuer", cfg.Issuer, "addr", ln.Addr().String(), "storage", cfg.Storage.Type)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			reload(ctx, cfgPath, in, logger)
		}
	}()

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
func reload(ctx context.Context, cfgPath string, in *broker.Instance, logger *slog.Logger) {
	cfg, err := config.Load(cfgPath)
	if err == nil {
		err = in.Server.Reload(ctx, cfg)
	}
	if err != nil {
		logger.Error("reload refused; the previous configuration keeps serving", "err", err)
		return
	}
	logger.Info("reload applied")
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
