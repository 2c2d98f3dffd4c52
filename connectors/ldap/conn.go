package ldap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/fedbroker/fedbroker/connectors"
)

// session is a connection in use by one login (or refresh): its context
// is that call's. Before each operation the deadline of the TCP connection
// is moved to now+timeout, so a directory that stops answering fails the
// operation in time (TLS handshakes included); a cancelled context fails
// whatever is in flight at once. A session bound as bind_dn may go back to
// the connector's pool (pool.go) between calls, detached from any context.
type session struct {
	l       *goldap.Conn
	raw     net.Conn
	ctx     context.Context
	timeout time.Duration
	stop    func() bool

	mu sync.Mutex // orders deadline against the cancellation hook

	idleSince time.Time // when it went back to the pool
}

// errUnavailable marks transport failures: refused, reset, timed out.
type errUnavailable struct{ err error }

func (e errUnavailable) Error() string { return e.err.Error() }
func (e errUnavailable) Unwrap() error { return e.err }

func (c *Connector) dial(ctx context.Context) (*session, error) {
	d := net.Dialer{Timeout: c.timeout}
	dctx, cancel := context.WithTimeout(ctx, c.timeout)
	raw, err := d.DialContext(dctx, "tcp", c.cfg.Host)
	cancel()
	if err != nil {
		return nil, errUnavailable{fmt.Errorf("dial %s: %w", c.cfg.Host, err)}
	}
	s := &session{raw: raw, timeout: c.timeout}
	s.attach(ctx)
	if err := s.deadline(); err != nil {
		s.closeRaw()
		return nil, err
	}
	var nc net.Conn = raw
	if c.cfg.TLS == TLSLDAPS {
		tc := tls.Client(raw, c.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			s.closeRaw()
			return nil, errUnavailable{fmt.Errorf("TLS handshake with %s: %w", c.cfg.Host, err)}
		}
		nc = tc
	}
	s.l = goldap.NewConn(nc, c.cfg.TLS == TLSLDAPS)
	s.l.Start()
	s.l.SetTimeout(c.timeout)
	if c.cfg.TLS == TLSStartTLS {
		if err := s.deadline(); err != nil {
			s.close()
			return nil, err
		}
		if err := s.l.StartTLS(c.tls); err != nil {
			s.close()
			return nil, classify(fmt.Errorf("StartTLS with %s: %w", c.cfg.Host, err))
		}
	}
	return s, nil
}

// attach makes ctx the context of the session's next operations: once
// it is done, whatever is in flight fails at once.
func (s *session) attach(ctx context.Context) {
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()
	raw := s.raw
	s.stop = context.AfterFunc(ctx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		_ = raw.SetDeadline(time.Unix(1, 0))
	})
}

// detach ends the link to the current context. It reports false when the
// context was done first (the connection's deadline may then be spent:
// the session is not to be used again).
func (s *session) detach() bool {
	return s.stop()
}

// clearDeadline lifts the deadline of a detached session.
func (s *session) clearDeadline() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.raw.SetDeadline(time.Time{})
}

// deadline gives the next operation its timeout, unless ctx is done.
func (s *session) deadline() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ctx.Err(); err != nil {
		return errUnavailable{err}
	}
	return s.raw.SetDeadline(time.Now().Add(s.timeout))
}

func (s *session) closeRaw() {
	s.stop()
	_ = s.raw.Close()
}

func (s *session) close() {
	s.stop()
	// Close waits for the connection's goroutines; an expired deadline
	// makes sure they stop now.
	s.mu.Lock()
	_ = s.raw.SetDeadline(time.Unix(1, 0))
	s.mu.Unlock()
	_ = s.l.Close()
}

// bind is a simple bind; the error is classified (see classify).
func (s *session) bind(dn, password string) error {
	if err := s.deadline(); err != nil {
		return err
	}
	_, err := s.l.SimpleBind(&goldap.SimpleBindRequest{Username: dn, Password: password})
	return classify(err)
}

func (s *session) search(req *goldap.SearchRequest) (*goldap.SearchResult, error) {
	if err := s.deadline(); err != nil {
		return nil, err
	}
	req.TimeLimit = int(s.timeout / time.Second)
	res, err := s.l.Search(req)
	return res, classify(err)
}

// classify wraps a transport failure (no LDAP result came back) or a
// directory that says it cannot serve now in errUnavailable; an LDAP result
// code stays a *goldap.Error.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var le *goldap.Error
	if !errors.As(err, &le) || le.ResultCode >= goldap.ErrorNetwork {
		return errUnavailable{err}
	}
	switch le.ResultCode {
	case goldap.LDAPResultBusy, goldap.LDAPResultUnavailable, goldap.LDAPResultTimeLimitExceeded, goldap.LDAPResultAdminLimitExceeded:
		return errUnavailable{err}
	}
	return err
}

// Codes of the *connectors.UserError values Login returns, for the audit log.
const (
	CodeUnavailable   = "upstream_unavailable" // wraps connectors.ErrUnavailable
	CodeUpstreamError = "upstream_error"       // wraps connectors.ErrUpstream
)

// failure turns an error of a login step into a *connectors.UserError.
func (c *Connector) failure(step string, err error) error {
	var u errUnavailable
	if errors.As(err, &u) {
		return &connectors.UserError{Code: CodeUnavailable, Message: "The directory could not be reached. Please try again later.",
			Err: fmt.Errorf("ldap %s: %s: %w: %w", c.id, step, connectors.ErrUnavailable, err)}
	}
	return &connectors.UserError{Code: CodeUpstreamError, Message: "The directory could not check your sign-in. Please tell your administrator.",
		Err: fmt.Errorf("ldap %s: %s: %w: %w", c.id, step, connectors.ErrUpstream, err)}
}

// userBindFailed reports whether err is the directory refusing the user's
// credentials (wrong password, unknown DN, locked, disabled, expired), as
// opposed to a failure of the check itself.
func userBindFailed(err error) bool {
	var le *goldap.Error
	if errors.As(err, &errUnavailable{}) || !errors.As(err, &le) {
		return false
	}
	return true
}
