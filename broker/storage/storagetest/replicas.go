package storagetest

import (
	"testing"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// The conformance tests of storage.ReplicaRegistry.

func testReplicas(t *testing.T, s storage.Storage) {
	t.Fatal("TODO: replica registry conformance")
}
