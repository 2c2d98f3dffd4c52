// Package logout is single logout at the broker: ending sessions (one, or
// every one of a person) together with their refresh families and access
// tokens, and telling the applications they signed into, by back-channel
// logout tokens delivered from storage (any replica sends them; one that
// dies leaves them to the others) and by front-channel iframes.
package logout

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/observe"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/tokens"
)

// Settings are the back-channel delivery's timing.
type Settings struct {
	// Timeout bounds one delivery attempt (default
	// config.DefaultBackchannelTimeout).
	Timeout time.Duration
	// RetryFor is how long after a logout its delivery is retried
	// (default config.DefaultBackchannelRetryFor).
	RetryFor time.Duration
	// Poll is how often Run looks for due deliveries (default 1s).
	Poll time.Duration
}

// DefaultPoll is how often Run looks for due deliveries unless Settings
// say otherwise.
const DefaultPoll = time.Second

// SettingsOf returns the Settings of the logout.backchannel section (Poll
// left to its default).
func SettingsOf(b config.Backchannel) Settings {
	return Settings{Timeout: b.AttemptTimeout(), RetryFor: b.RetryPeriod()}
}

// withDefaults fills in what s leaves zero.
func (s Settings) withDefaults() Settings {
	if s.Timeout <= 0 {
		s.Timeout = config.DefaultBackchannelTimeout
	}
	if s.RetryFor <= 0 {
		s.RetryFor = config.DefaultBackchannelRetryFor
	}
	if s.Poll <= 0 {
		s.Poll = DefaultPoll
	}
	return s
}

// Deps are a Service's dependencies; Store, Tokens and Runtime are
// required.
type Deps struct {
	Store   storage.Storage
	Tokens  *tokens.Authority
	Runtime func() *runtime.Runtime
	// Metrics, when not nil, counts deliveries and their backlog.
	Metrics *observe.Metrics
	Audit   observe.Audit
	// Log receives storage and delivery errors (default: discarded).
	Log *slog.Logger
	// HTTP sends the deliveries (default: a client with Settings.Timeout).
	// Its redirects are never followed.
	HTTP *http.Client
	Now  func() time.Time
}

// Service ends sessions and delivers back-channel logout.
type Service struct {
	deps Deps
	now  func() time.Time
	log  *slog.Logger
	http *http.Client
	// wake tells Run that End queued deliveries; buffered 1.
	wake chan struct{}

	mu       sync.Mutex
	settings Settings
}

// New returns a Service.
func New(deps Deps, s Settings) *Service {
	svc := &Service{deps: deps, now: deps.Now, log: deps.Log, wake: make(chan struct{}, 1), settings: s.withDefaults()}
	if svc.now == nil {
		svc.now = time.Now
	}
	if svc.log == nil {
		svc.log = slog.New(slog.DiscardHandler)
	}
	// A copy, so that the caller's client keeps following redirects.
	c := http.Client{}
	if deps.HTTP != nil {
		c = *deps.HTTP
	}
	// A logout token goes to the registered URI and nowhere else.
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	svc.http = &c
	return svc
}

// Configure applies new settings (a reload).
func (s *Service) Configure(st Settings) {
	s.mu.Lock()
	s.settings = st.withDefaults()
	s.mu.Unlock()
}

func (s *Service) current() Settings {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.settings
}

// Ended is what End did.
type Ended struct {
	// Sessions are the sessions that ended.
	Sessions []storage.Session
	// Families is how many refresh families were revoked.
	Families int
	// Queued is how many back-channel deliveries were queued.
	Queued int
	// Unqueued is how many back-channel deliveries could not be queued
	// (a storage error, logged and audited): those applications are not
	// told.
	Unqueued int
}

// End ends subject's session sid (every session of subject when sid is
// ""): the sessions are deleted, their refresh families revoked, the
// access tokens issued from them refused by introspection and userinfo
// from then on, and a back-channel logout delivery queued for every client
// they signed into that registered a backchannel_logout_uri. by says who
// ended them, for the audit log: "rp", "admin", "upstream:<connector>".
//
// The access tokens are revoked before the sessions are deleted, so that
// an error leaves the sessions in place for the caller's retry. Once they
// are deleted End no longer fails: a delivery it cannot queue is logged,
// audited and counted in Ended.Unqueued. A session that is not there (or
// not subject's) is not an error: End ends none.
func (s *Service) End(ctx context.Context, subject, sid, by string) (Ended, error) {
	now := s.now()
	until := now.Add(config.MaxTokenLifetime + time.Minute)
	live, err := s.deps.Store.ListSessions(ctx, subject)
	if err != nil {
		return Ended{}, err
	}
	revoked := map[string]bool{}
	for _, se := range live {
		if sid == "" || se.PublicID == sid {
			if err := s.deps.Tokens.RevokeSession(ctx, se.PublicID, until); err != nil {
				return Ended{}, err
			}
			revoked[se.PublicID] = true
		}
	}
	sessions, families, err := s.deps.Store.EndSessions(ctx, subject, sid, until)
	if err != nil {
		return Ended{}, err
	}
	res := Ended{Sessions: sessions, Families: families}
	for _, se := range sessions {
		// One that started between the list and the end.
		if !revoked[se.PublicID] {
			if err := s.deps.Tokens.RevokeSession(ctx, se.PublicID, until); err != nil {
				s.log.Error("logout: revoke the access tokens of an ended session", "sid", se.PublicID, "error", err)
			}
		}
	}
	res.Queued, res.Unqueued = s.queue(ctx, s.deps.Runtime(), sessions, now)
	sids := make([]string, 0, len(sessions))
	for _, se := range sessions {
		sids = append(sids, se.PublicID)
	}
	// sid is what was asked for ("": every session), sids what ended.
	s.deps.Audit.Event("sessions_ended", "sub", subject, "sid", sid, "sids", sids, "by", by,
		"sessions", len(sessions), "families", families, "queued", res.Queued, "unqueued", res.Unqueued)
	if res.Queued > 0 {
		s.Wake()
	}
	return res, nil
}

// queue stores a back-channel logout delivery for each client of each
// session that registered a backchannel_logout_uri, once per (client,
// session); it returns how many it queued and how many it could not.
func (s *Service) queue(ctx context.Context, rt *runtime.Runtime, sessions []storage.Session, now time.Time) (queued, failed int) {
	type key struct{ client, sid string }
	seen := map[key]bool{}
	for _, se := range sessions {
		for _, id := range se.Clients {
			k := key{id, se.PublicID}
			if seen[k] {
				continue
			}
			seen[k] = true
			cl, ok := rt.Client(id)
			if !ok || cl.BackchannelLogoutURI == "" {
				continue
			}
			d := storage.Delivery{
				ID:       oauth.RandomToken(16),
				Kind:     storage.DeliveryBackchannelLogout,
				ClientID: id,
				Subject:  se.Subject,
				SID:      se.PublicID,
				Created:  now,
				Due:      now,
			}
			if err := s.deps.Store.PutDelivery(ctx, d); err != nil {
				failed++
				s.log.Error("logout: queue a back-channel logout", "client_id", id, "sid", se.PublicID, "error", err)
				s.deps.Audit.Event("backchannel_logout_failed", "client_id", id, "sub", se.Subject, "sid", se.PublicID, "reason", "could not queue: storage error")
				s.count(id, "failed")
				continue
			}
			queued++
		}
	}
	return queued, failed
}

// Wake makes Run look for due deliveries now.
func (s *Service) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// FrontChannel returns the URLs the signed-out page loads in iframes for
// the sessions that ended: each client of each session that registered a
// frontchannel_logout_uri, with iss and sid added when it asked for them
// (OpenID Connect Front-Channel Logout 1.0 §2-§4). Each URL appears once.
func (s *Service) FrontChannel(rt *runtime.Runtime, sessions []storage.Session) []string {
	var out []string
	seen := map[string]bool{}
	for _, se := range sessions {
		for _, id := range se.Clients {
			cl, ok := rt.Client(id)
			if !ok || cl.FrontchannelLogoutURI == "" {
				continue
			}
			u := cl.FrontchannelLogoutURI
			if cl.FrontchannelLogoutSessionRequired {
				u = withQuery(u, url.Values{"iss": {s.deps.Tokens.Issuer()}, "sid": {se.PublicID}})
			}
			if !seen[u] {
				seen[u] = true
				out = append(out, u)
			}
		}
	}
	return out
}

// withQuery appends q to the query of raw, keeping the query raw has as
// it was registered.
func withQuery(raw string, q url.Values) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw // validated by config; never here
	}
	if u.RawQuery == "" {
		u.RawQuery = q.Encode()
	} else {
		u.RawQuery += "&" + q.Encode()
	}
	u.ForceQuery = false
	return u.String()
}

// count records a delivery outcome when there are metrics.
func (s *Service) count(clientID, outcome string) {
	if s.deps.Metrics != nil {
		s.deps.Metrics.BackchannelLogout(clientID, outcome)
	}
}
