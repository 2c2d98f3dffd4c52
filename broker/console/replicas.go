package console

import (
	"context"
	"encoding/json"
	"time"

	"github.com/fedbroker/fedbroker/broker/observe"
	"github.com/fedbroker/fedbroker/broker/storage"
)

// replicaView is one replica on the overview.
type replicaView struct {
	storage.Replica
	// This marks the replica serving the page; Live one seen within
	// storage.ReplicaStale.
	This, Live bool
}

// fleetView is what the console knows of all the replicas: their records
// and their counters added up.
type fleetView struct {
	Replicas []replicaView
	// Live counts the replicas seen recently.
	Live int
	// Err says why the other replicas' records could not be read (the
	// charts then show this replica alone).
	Err string
	// Every and Stale are how often replicas write their records and
	// after how long without one a replica is shown as gone.
	Every, Stale time.Duration
	// Series are the per-minute counters of every replica that wrote a
	// record in the last hour, added up.
	Series []observe.Series
}

// fleet reads the replicas' heartbeat records and adds up their activity.
// This replica's own entry is taken live, not from storage.
func (c *Console) fleet(ctx context.Context) fleetView {
	f := fleetView{Every: storage.ReplicaEvery, Stale: storage.ReplicaStale}
	now := c.deps.Now()
	var acts []observe.Activity
	var self storage.Replica
	if c.deps.Replica != nil {
		self = c.deps.Replica(ctx)
		f.Replicas = append(f.Replicas, replicaView{Replica: self, This: true, Live: true})
	}
	if c.deps.Samples != nil {
		c.deps.Samples.SampleIfStale()
		acts = append(acts, c.deps.Samples.Activity(chartMinutes))
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	recs, err := c.deps.Store.ListReplicas(rctx)
	cancel()
	if err != nil {
		f.Err = err.Error()
	}
	for _, r := range recs {
		if self.ID != "" && r.ID == self.ID {
			continue
		}
		v := replicaView{Replica: r, Live: now.Sub(r.Seen) < storage.ReplicaStale && r.Status != "stopped"}
		f.Replicas = append(f.Replicas, v)
		var a observe.Activity
		if len(r.Activity) > 0 && json.Unmarshal(r.Activity, &a) == nil {
			acts = append(acts, a)
		}
	}
	for _, r := range f.Replicas {
		if r.Live {
			f.Live++
		}
	}
	f.Series = observe.MergeActivity(now, chartMinutes, acts...)
	return f
}
