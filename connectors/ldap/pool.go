package ldap

import (
	"context"
	"errors"
	"sync"
	"time"
)

// pool keeps connections bound as bind_dn between sign-ins, so that a
// sign-in does not dial, negotiate TLS and bind the service account each
// time. A connection is in the pool only while no call uses it, and only
// while bound as bind_dn: a call that bound as the user binds as bind_dn
// again before giving it back, and a call that failed closes it.
type pool struct {
	max         int           // idle connections kept; 0 keeps none
	idleTimeout time.Duration // an idle connection older than this is closed
	now         func() time.Time

	mu     sync.Mutex
	idle   []*session // most recently used last
	closed bool
}

// get returns an idle connection, or nil. Connections idle for longer
// than idleTimeout, or that the directory closed, are closed on the way.
func (p *pool) get() *session {
	var stale []*session
	defer func() {
		for _, s := range stale {
			s.close()
		}
	}()
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	for len(p.idle) > 0 {
		s := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if now.Sub(s.idleSince) > p.idleTimeout || s.l.IsClosing() {
			stale = append(stale, s)
			continue
		}
		return s
	}
	return nil
}

// put gives s, bound as bind_dn and detached from its call, back to the
// pool; it is closed when the pool is full or closed.
func (p *pool) put(s *session) {
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.max {
		p.mu.Unlock()
		s.close()
		return
	}
	s.idleSince = p.now()
	p.idle = append(p.idle, s)
	p.mu.Unlock()
}

// close closes every idle connection; connections in use are closed when
// their call gives them back.
func (p *pool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, s := range idle {
		s.close()
	}
}

// Close closes the connections kept between sign-ins. The connector
// still works afterwards, one connection per call.
func (c *Connector) Close() error {
	c.pool.close()
	return nil
}

// serviceSession returns a connection bound as bind_dn for ctx: an idle
// one from the pool (reused reports it), or a new one.
func (c *Connector) serviceSession(ctx context.Context) (s *session, reused bool, err error) {
	if s := c.pool.get(); s != nil {
		s.attach(ctx)
		return s, true, nil
	}
	if s, err = c.dial(ctx); err != nil {
		return nil, false, c.failure("connect", err)
	}
	if err := s.bind(c.cfg.BindDN, c.cfg.BindPassword); err != nil {
		s.close()
		return nil, false, c.failure("bind as bind_dn", err)
	}
	return s, false, nil
}

// withService runs first, the first step of a call, on a connection bound
// as bind_dn. When that connection came from the pool and first fails
// because the connection is gone (the directory, a firewall or a load
// balancer closed it while it was idle), it runs once more on a new one.
// Nothing has been sent as the user by then, so trying again changes
// nothing the directory sees. Errors are c.failure's, first's named step.
func (c *Connector) withService(ctx context.Context, step string, first func(*session) error) (*session, error) {
	for {
		s, reused, err := c.serviceSession(ctx)
		if err != nil {
			return nil, err
		}
		err = first(s)
		if err == nil {
			return s, nil
		}
		s.close()
		var u errUnavailable
		if !reused || !errors.As(err, &u) || ctx.Err() != nil {
			return nil, c.failure(step, err)
		}
		c.log.Debug("ldap: a pooled connection failed; trying a new one", "connector", c.id, "err", err)
	}
}

// release ends a call's use of s: bound as bind_dn (boundAsService) and
// with its context not yet done, it goes back to the pool; otherwise it is
// closed.
func (c *Connector) release(s *session, boundAsService bool) {
	if !s.detach() || !boundAsService {
		s.close()
		return
	}
	// The last operation's deadline would end the connection while it
	// waits (go-ldap closes a connection whose read fails); the next
	// call sets its own before each operation.
	if err := s.clearDeadline(); err != nil {
		s.close()
		return
	}
	c.pool.put(s)
}
