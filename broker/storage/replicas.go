package storage

import (
	"context"
	"time"
)

// Replica is what one broker process last said about itself. Every
// process writes its record every few seconds (a heartbeat); the admin
// console lists the replicas seen recently and adds up their activity,
// so that an admin looking at one replica's console sees the fleet.
type Replica struct {
	// ID is random per process start: a restarted process is a new
	// replica (the old record ages out).
	ID string `json:"id"`
	// Host is the machine's host name; Version the build version.
	Host    string `json:"host"`
	Version string `json:"version"`
	// Started is when the process started; Seen when it wrote this record.
	Started time.Time `json:"started"`
	Seen    time.Time `json:"seen"`
	// Status is "ready", "draining" or why the process is not ready.
	Status string `json:"status"`
	// Activity is the process's recent counters, encoded by the process
	// (opaque to storage), at most MaxReplicaActivity bytes.
	Activity []byte `json:"activity,omitempty"`
}

// ReplicaEvery is how often a broker process writes its record;
// ReplicaKeep how long a record outlives its last write, so that the
// activity of a replica that stopped still counts in the last hour; a
// replica not seen for ReplicaStale is shown as gone.
const (
	ReplicaEvery = 15 * time.Second
	ReplicaKeep  = time.Hour
	ReplicaStale = 3 * ReplicaEvery
)

// MaxReplicaActivity caps Replica.Activity; PutReplica refuses a larger
// record with an error.
const MaxReplicaActivity = 64 << 10

// ReplicaRegistry keeps the replicas' heartbeat records. Records are
// ephemeral: they are not exported by Export, and losing them loses
// nothing but the console's view.
type ReplicaRegistry interface {
	// PutReplica stores r under r.ID, replacing that ID's record, until
	// the time until; after it the record is gone from ListReplicas.
	PutReplica(ctx context.Context, r Replica, until time.Time) error
	// ListReplicas returns every record not yet expired, ordered by ID.
	ListReplicas(ctx context.Context) ([]Replica, error)
}
