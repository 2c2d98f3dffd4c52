package logout

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
)

const (
	// claimLimit is how many deliveries one DeliverDue claims.
	claimLimit = 32
	// parallel bounds the deliveries sent at once.
	parallel = 8
	// leaseMargin is added to the attempt timeout for the claim's lease:
	// time to record the outcome before another replica may take it.
	leaseMargin = 5 * time.Second
	// firstBackoff and maxBackoff bound the wait between attempts:
	// 1s·2^(attempts-1), at most a minute.
	firstBackoff = time.Second
	maxBackoff   = time.Minute
	// maxResponseBytes of an application's answer are read (and ignored).
	maxResponseBytes = 4 << 10
)

// Outcomes of a delivery attempt, the metric's outcome label.
const (
	OutcomeDelivered = "delivered"
	OutcomeRetry     = "retry"
	OutcomeFailed    = "failed"
	// OutcomeDropped: the client is gone from the configuration, or no
	// longer registers a backchannel_logout_uri.
	OutcomeDropped = "dropped"
)

// Run delivers due back-channel logout tokens until ctx is done. Every
// replica runs it.
func (s *Service) Run(ctx context.Context) {
	for {
		n, _ := s.DeliverDue(ctx) // errors are logged
		if ctx.Err() != nil {
			return
		}
		if n == claimLimit {
			continue // there may be more due
		}
		t := time.NewTimer(s.current().Poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// DeliverDue sends the deliveries due now once and returns how many it
// claimed.
func (s *Service) DeliverDue(ctx context.Context) (int, error) {
	st := s.current()
	ds, err := s.deps.Store.ClaimDeliveries(ctx, s.now(), st.Timeout+leaseMargin, claimLimit)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("logout: claim back-channel logout deliveries", "error", err)
		}
		return 0, err
	}
	if len(ds) > 0 {
		rt := s.deps.Runtime()
		sem := make(chan struct{}, parallel)
		var wg sync.WaitGroup
		for _, d := range ds {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				s.deliver(ctx, rt, st, d)
			}()
		}
		wg.Wait()
	}
	if s.deps.Metrics != nil && ctx.Err() == nil {
		if n, err := s.deps.Store.PendingDeliveries(ctx); err == nil {
			s.deps.Metrics.BackchannelLogoutPending(n)
		} else {
			s.log.Warn("logout: count pending back-channel logout deliveries", "error", err)
		}
	}
	return len(ds), nil
}

// deliver makes one attempt at d, which this replica has claimed, and
// records its outcome: deleted when delivered or given up, put back with
// a later Due to retry. When ctx ends first it records nothing: the lease
// runs out and another replica (or this one, restarted) takes it.
func (s *Service) deliver(ctx context.Context, rt *runtime.Runtime, st Settings, d storage.Delivery) {
	log := s.log.With("delivery", d.ID, "client_id", d.ClientID, "sid", d.SID, "attempt", d.Attempts)
	if d.Kind != storage.DeliveryBackchannelLogout {
		// Another version's kind: left to the replica that knows it.
		log.Warn("logout: unknown delivery kind left in storage", "kind", d.Kind)
		return
	}
	cl, ok := rt.Client(d.ClientID)
	if !ok || cl.BackchannelLogoutURI == "" {
		s.finish(ctx, log, d, OutcomeDropped, "backchannel_logout_failed", "client no longer registers a backchannel_logout_uri")
		return
	}
	retryable, reason := s.send(ctx, log, st, cl, d)
	if ctx.Err() != nil {
		if reason != "" {
			// Stopped, not refused: the lease runs out and another
			// replica (or this one, restarted) sends it again.
			return
		}
		// Delivered as the replica stops: record it within the lease's
		// margin, so that it is not sent twice.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), leaseMargin)
		defer cancel()
	}
	switch {
	case reason == "":
		s.finish(ctx, log, d, OutcomeDelivered, "backchannel_logout_delivered", "")
	case !retryable:
		s.finish(ctx, log, d, OutcomeFailed, "backchannel_logout_failed", reason)
	case s.now().After(d.Created.Add(st.RetryFor)):
		s.finish(ctx, log, d, OutcomeFailed, "backchannel_logout_failed", reason+" (retried for "+st.RetryFor.String()+")")
	default:
		d.Due = s.now().Add(Backoff(d.Attempts))
		d.LastError = reason
		if err := s.deps.Store.PutDelivery(ctx, d); err != nil {
			// The lease runs out and the delivery is retried then.
			log.Error("logout: reschedule a back-channel logout", "error", err)
		}
		s.count(d.ClientID, OutcomeRetry)
		log.Info("logout: back-channel logout will be retried", "reason", reason, "due", d.Due)
	}
}

// Backoff is the wait after the attempts-th failed attempt: 1s·2^(attempts-1),
// at most a minute.
func Backoff(attempts int) time.Duration {
	if attempts < 1 {
		attempts = 1
	}
	if attempts > 7 { // 2^6 s > a minute
		return maxBackoff
	}
	return min(firstBackoff<<(attempts-1), maxBackoff)
}

// finish deletes d and records outcome: metric, audit event (identifiers
// only), log.
func (s *Service) finish(ctx context.Context, log *slog.Logger, d storage.Delivery, outcome, event, reason string) {
	if err := s.deps.Store.DeleteDelivery(ctx, d.ID); err != nil {
		// Claimed again when its lease ends: a delivered one is sent
		// twice, which the application's jti check makes harmless.
		log.Error("logout: delete a back-channel logout delivery", "error", err)
	}
	s.count(d.ClientID, outcome)
	kv := []any{"client_id", d.ClientID, "sub", d.Subject, "sid", d.SID, "attempts", d.Attempts}
	if reason != "" {
		kv = append(kv, "reason", reason)
	}
	s.deps.Audit.Event(event, kv...)
	log.Info("logout: back-channel logout "+outcome, "reason", reason)
}

// send mints a logout token and POSTs it to the client's
// backchannel_logout_uri. It returns "" when the
// application accepted it (2xx), and otherwise why not and whether that
// is worth another attempt: a network error, a timeout, 408, 429 and 5xx
// are; any other answer is the application refusing the token.
func (s *Service) send(ctx context.Context, log *slog.Logger, st Settings, cl *runtime.Client, d storage.Delivery) (retryable bool, reason string) {
	if d.SID == "" && cl.BackchannelLogoutSessionRequired {
		return false, "the client requires sid and the session has none"
	}
	tok, err := s.deps.Tokens.LogoutToken(cl, d.Subject, d.SID, s.now())
	if err != nil {
		log.Warn("logout: mint a logout token", "error", err)
		return true, "could not sign the logout token"
	}
	ctx, cancel := context.WithTimeout(ctx, st.Timeout)
	defer cancel()
	body := url.Values{"logout_token": {tok}}.Encode()
	// The client's URI now: a reload may have moved it since d was queued.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cl.BackchannelLogoutURI, strings.NewReader(body))
	if err != nil {
		return false, "invalid backchannel_logout_uri"
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := s.http.Do(req)
	if err != nil {
		// The error names the URL and the address, never the token.
		log.Warn("logout: send a back-channel logout", "error", err)
		if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			return true, "timeout"
		}
		return true, "network error"
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBytes))
	_ = resp.Body.Close()
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return false, ""
	case code >= 500 || code == http.StatusRequestTimeout || code == http.StatusTooManyRequests:
		return true, "status " + strconv.Itoa(code)
	case code >= 300 && code < 400:
		return false, "redirect (status " + strconv.Itoa(code) + ", not followed)"
	default:
		return false, "status " + strconv.Itoa(code)
	}
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
