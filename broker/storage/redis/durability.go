package redis

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Durability modes, from most to least durable. Unknown means Redis did not
// say (INFO and CONFIG GET refused or unreadable, or the server unreachable).
const (
	DurabilityAOF     = "aof"
	DurabilityRDB     = "rdb"
	DurabilityNone    = "none"
	DurabilityUnknown = "unknown"
)

const (
	lossAOF        = "a Redis restart loses at most the last second"
	lossAOFFsyncNo = "a Redis crash loses the writes the operating system has not flushed yet (appendfsync no: typically up to 30 seconds)"
	lossRDB        = "a Redis crash rolls back to the last snapshot: refresh tokens already rotated or revoked may work again, revocations may be forgotten"
	lossNone       = "a Redis restart loses everything: all sessions, refresh tokens, revocations and signing keys"
	lossUnknown    = "unknown: Redis did not say how it persists data (INFO persistence and CONFIG GET unavailable); assume a restart may lose everything"
)

func lossOf(mode string) string {
	switch mode {
	case DurabilityAOF:
		return lossAOF
	case DurabilityRDB:
		return lossRDB
	case DurabilityNone:
		return lossNone
	}
	return lossUnknown
}

// rank orders modes for requirements and for the weakest of several
// masters: none < unknown < rdb < aof. Unknown meets no requirement above
// none.
func rank(mode string) int {
	switch mode {
	case DurabilityAOF:
		return 3
	case DurabilityRDB:
		return 2
	case DurabilityUnknown:
		return 1
	}
	return 0
}

// Durability is what a Redis outage would cost, as read from Redis's
// persistence settings.
type Durability struct {
	Mode string `json:"mode"` // aof | rdb | none | unknown
	Loss string `json:"loss"` // in words, for logs and the admin status
	// Reported is what Redis said, e.g. `aof_enabled:0, save "3600 1"`,
	// prefixed by the master's address on a Cluster.
	Reported string `json:"-"`
}

// AssessDurability classifies a server from its `INFO persistence` text
// (empty when INFO was refused) and its CONFIG GET answers for appendonly,
// appendfsync and save (nil when CONFIG was refused). INFO's aof_enabled
// decides whether AOF is on; with AOF off only CONFIG GET save can tell
// snapshots from no persistence, so without it the mode is unknown.
func AssessDurability(info string, config map[string]string) Durability {
	var said []string
	aof := "" // "1", "0" or unknown
	if info != "" {
		v, ok := infoField(info, "aof_enabled")
		switch {
		case ok && (v == "0" || v == "1"):
			aof = v
			said = append(said, "aof_enabled:"+v)
		case ok:
			said = append(said, fmt.Sprintf("aof_enabled:%q (unreadable)", v))
		default:
			said = append(said, "INFO persistence without aof_enabled")
		}
	} else {
		said = append(said, "INFO persistence refused")
	}
	save, haveSave := config["save"]
	if config != nil {
		if v, ok := config["appendonly"]; ok && info == "" {
			said = append(said, "appendonly "+v)
			switch v {
			case "yes":
				aof = "1"
			case "no":
				aof = "0"
			}
		}
		if haveSave {
			said = append(said, fmt.Sprintf("save %q", save))
		}
		if v, ok := config["appendfsync"]; ok && aof == "1" {
			said = append(said, "appendfsync "+v)
		}
	} else {
		said = append(said, "CONFIG GET refused")
	}
	d := Durability{Mode: DurabilityUnknown, Reported: strings.Join(said, ", ")}
	switch {
	case aof == "1":
		d.Mode = DurabilityAOF
	case aof == "0" && haveSave && strings.TrimSpace(save) != "":
		d.Mode = DurabilityRDB
	case aof == "0" && haveSave:
		d.Mode = DurabilityNone
	}
	d.Loss = lossOf(d.Mode)
	if d.Mode == DurabilityAOF && config["appendfsync"] == "no" {
		d.Loss = lossAOFFsyncNo
	}
	return d
}

// infoField returns the value of name in INFO text ("name:value" lines,
// CRLF or LF).
func infoField(info, name string) (string, bool) {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), name+":"); ok {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// Require returns an error when d is less durable than required (aof, rdb
// or none; empty means none). Unknown fails any requirement above none.
func (d Durability) Require(required string) error {
	switch required {
	case "", DurabilityNone:
		return nil
	case DurabilityAOF, DurabilityRDB:
	default:
		return fmt.Errorf("unknown durability requirement %q (want aof, rdb or none)", required)
	}
	if rank(d.Mode) >= rank(required) {
		return nil
	}
	return fmt.Errorf("durability %s required, but Redis persistence is %s (Redis reported: %s): %s", required, d.Mode, d.Reported, d.Loss)
}

// Durability reads the persistence settings of the Redis behind the store:
// every master of a Cluster (the weakest one counts), else the one server
// (a Sentinel URL's current primary). It never fails: what it cannot read
// is "unknown".
func (s *Store) Durability(ctx context.Context) Durability {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cc, ok := s.c.(*goredis.ClusterClient)
	if !ok {
		return assess(ctx, s.c)
	}
	var mu sync.Mutex
	var all []Durability
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
		d := assess(ctx, c)
		d.Reported = c.Options().Addr + ": " + d.Reported
		mu.Lock()
		all = append(all, d)
		mu.Unlock()
		return nil
	})
	if err != nil {
		all = append(all, Durability{Mode: DurabilityUnknown, Loss: lossUnknown, Reported: "cluster masters unreadable: " + err.Error()})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Reported < all[j].Reported })
	return weakest(all)
}

// cmdable is what assess needs of a client.
type cmdable interface {
	Info(ctx context.Context, section ...string) *goredis.StringCmd
	ConfigGet(ctx context.Context, parameter string) *goredis.MapStringStringCmd
}

func assess(ctx context.Context, c cmdable) Durability {
	info, err := c.Info(ctx, "persistence").Result()
	if err != nil {
		info = ""
	}
	var config map[string]string
	for _, p := range []string{"appendonly", "appendfsync", "save"} {
		m, err := c.ConfigGet(ctx, p).Result()
		if err != nil {
			config = nil
			break
		}
		if v, ok := m[p]; ok {
			if config == nil {
				config = map[string]string{}
			}
			config[p] = v
		}
	}
	return AssessDurability(info, config)
}

// weakest returns the least durable of ds (none < unknown < rdb < aof);
// unknown when ds is empty. Reports of several masters are joined.
func weakest(ds []Durability) Durability {
	if len(ds) == 0 {
		return Durability{Mode: DurabilityUnknown, Loss: lossUnknown, Reported: "no master answered"}
	}
	w := ds[0]
	var said []string
	for _, d := range ds {
		said = append(said, d.Reported)
		if rank(d.Mode) < rank(w.Mode) {
			w = d
		}
	}
	w.Reported = strings.Join(said, "; ")
	return w
}
