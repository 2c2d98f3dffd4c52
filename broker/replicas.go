package broker

import (
	"context"
	"encoding/json"
	"os"
	"time"

	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/observe"
	"github.com/fedbroker/fedbroker/broker/storage"
)

// replicaSelf is what this process says about itself in its heartbeat
// record: an id random per start, the host, the version, when it started.
type replicaSelf struct {
	id, host, version string
	started           time.Time
	now               func() time.Time
}

func newReplicaSelf(now func() time.Time) replicaSelf {
	if now == nil {
		now = time.Now
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return replicaSelf{id: oauth.RandomToken(9), host: host, version: observe.Version(), started: now(), now: now}
}

// replicaRecord is this process's heartbeat record as of now: its
// readiness and its counters' last hour (observe.Activity; minutes
// without any increase are left out to keep the record small).
func (s *Server) replicaRecord(ctx context.Context) storage.Replica {
	r := storage.Replica{ID: s.replica.id, Host: s.replica.host, Version: s.replica.version, Started: s.replica.started, Seen: s.replica.now(), Status: "ready"}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if err := s.readiness(rctx); err != nil {
		r.Status = err.Error()
	}
	cancel()
	act := s.samples.Activity(60)
	kept := act.Series[:0]
	for _, se := range act.Series {
		if se.Total > 0 {
			kept = append(kept, se)
		}
	}
	act.Series = kept
	if b, err := json.Marshal(act); err == nil && len(b) <= storage.MaxReplicaActivity {
		r.Activity = b
	}
	return r
}

// heartbeat writes this replica's record every storage.ReplicaEvery until
// ctx ends, and then once more saying it stopped.
func (s *Server) heartbeat(ctx context.Context) {
	defer close(s.beatDone)
	put := func(ctx context.Context, r storage.Replica) {
		if err := s.store.PutReplica(ctx, r, r.Seen.Add(storage.ReplicaKeep)); err != nil {
			s.log.Debug("replica heartbeat not stored", "err", err)
		}
	}
	t := time.NewTicker(storage.ReplicaEvery)
	defer t.Stop()
	for {
		s.samples.SampleIfStale()
		put(ctx, s.replicaRecord(ctx))
		select {
		case <-ctx.Done():
			bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			s.samples.Sample() // the counters up to the end
			r := s.replicaRecord(bg)
			r.Status = "stopped"
			put(bg, r)
			cancel()
			return
		case <-t.C:
		}
	}
}

// WaitStopped waits, at most timeout, for the heartbeat started by Run to
// write its last record after Run's context ended (so that storage is not
// closed under it). It returns at once if Run was not called.
func (s *Server) WaitStopped(timeout time.Duration) {
	if !s.beating.Load() {
		return
	}
	select {
	case <-s.beatDone:
	case <-time.After(timeout):
	}
}
