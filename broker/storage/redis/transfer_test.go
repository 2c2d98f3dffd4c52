package redis

import (
	"testing"

	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
	"github.com/fedbroker/fedbroker/broker/storage/storagetest"
)

// TestTransfer copies one Redis store into another (as `fedbroker storage
// copy` does between any two backends).
func TestTransfer(t *testing.T) {
	src := open(t, redistest.StartServer(t).URL(), Options{})
	defer src.Close()
	dst := open(t, redistest.StartServer(t).URL(), Options{KeyPrefix: "other"})
	defer dst.Close()
	storagetest.RunTransfer(t, src, dst)
}
