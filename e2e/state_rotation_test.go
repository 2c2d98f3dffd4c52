package e2e

// Scenarios 7 and 8 of issue 13: an admin rotation reaches every replica
// within a second, and POST /admin/keys/rotate answers (and audits) what
// really happened.

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
)

// propagationBound is the bound for a rotation to reach every
// replica (1s) plus 1s of scheduling margin for a loaded machine.
const propagationBound = 2 * time.Second

// rotateAudits returns the admin_rotate_keys audit lines of r.
func rotateAudits(r *stateReplica) []logRecord {
	return r.find(func(rec logRecord) bool { return rec.str("msg") == "admin_rotate_keys" && rec["audit"] == true })
}

// converged waits until every replica publishes the same keys and signs
// with the same one, and returns them.
func converged(t *testing.T, nodes []*stateReplica) (kids []string, signer string) {
	t.Helper()
	err := eventually(10*time.Second, func() error {
		kids, signer = nil, ""
		for i, r := range nodes {
			k := kidsAt(t, r.URL)
			s := signingKid(t, r.URL)
			if i == 0 {
				kids, signer = k, s
				continue
			}
			if !slices.Equal(k, kids) || s != signer {
				return fmt.Errorf("replica %d publishes %v and signs with %s; replica 0 %v and %s", i, k, s, kids, signer)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("replicas do not agree on the keys: %v", err)
	}
	return kids, signer
}

// call is one rotate request and its answer.
type call struct {
	replica int
	answer  rotateAnswer
}

// checkTruthful checks answers against what happened: before and after
// are the kids published before and after the calls (each rotation
// publishes one new key, and nothing is dropped within minutes); every
// "rotated" answer stands for one real rotation with its own version, every
// already_rotated answer names the version of a real rotation, and each
// replica's audit lines (audits[i] the count before the calls) record its
// answers. It returns the number of real rotations.
func checkTruthful(t *testing.T, nodes []*stateReplica, calls []call, before, after []string, audits []int) int {
	t.Helper()
	real := len(missingFrom(before, after))
	if m := missingFrom(after, before); len(m) > 0 {
		t.Errorf("keys %v were dropped from the JWKS by a rotation", m)
	}
	versions := map[int64]bool{}
	for _, c := range calls {
		if c.answer.Code == http.StatusOK {
			if c.answer.Status != "rotated" || versions[c.answer.Version] {
				t.Errorf("replica %d answered %+v: want status rotated with a version no other answer has", c.replica, c.answer)
			}
			versions[c.answer.Version] = true
		}
	}
	if len(versions) != real {
		t.Errorf("%d answers said rotated (%+v) but %d rotations happened (JWKS %v → %v)", len(versions), calls, real, before, after)
	}
	for _, c := range calls {
		switch c.answer.Code {
		case http.StatusOK:
		case http.StatusConflict:
			if c.answer.Error != "already_rotated" || !versions[c.answer.Version] {
				t.Errorf("replica %d answered %+v: want already_rotated with the version of a real rotation (%v)", c.replica, c.answer, versions)
			}
		case http.StatusServiceUnavailable:
			t.Logf("replica %d answered 503 (lease busy): %+v", c.replica, c.answer)
		default:
			t.Errorf("replica %d answered %+v", c.replica, c.answer)
		}
	}
	for i, r := range nodes {
		lines := rotateAudits(r)[audits[i]:]
		var want []rotateAnswer
		for _, c := range calls {
			if c.replica == i && c.answer.Code != http.StatusServiceUnavailable {
				want = append(want, c.answer)
			}
		}
		if len(lines) != len(want) {
			t.Errorf("replica %d wrote %d admin_rotate_keys audit lines for %d answers: %v", i, len(lines), len(want), lines)
			continue
		}
		for k, a := range want {
			outcome := map[int]string{http.StatusOK: "rotated", http.StatusConflict: "already_rotated"}[a.Code]
			v, _ := lines[k]["version"].(float64)
			if lines[k].str("outcome") != outcome || int64(v) != a.Version {
				t.Errorf("replica %d audit line %v does not record its answer %+v", i, lines[k], a)
			}
		}
	}
	return real
}

func auditCounts(nodes []*stateReplica) []int {
	var out []int
	for _, r := range nodes {
		out = append(out, len(rotateAudits(r)))
	}
	return out
}

// TestStateRotation: three replicas on one Redis, rotated through the
// admin API.
func TestStateRotation(t *testing.T) {
	rs := redistest.StartServer(t)
	cl := startStateCluster(t, rs.URL(), fleetNode(), fleetNode(), fleetNode())
	n := cl.Nodes

	// Scenario 8: after a rotation at replica 0, replicas 1 and 2 publish
	// the new key and sign with the new active key within a second (plus
	// the scheduling margin), several times in a row.
	t.Run("propagation", func(t *testing.T) {
		for round := range 3 {
			before, _ := converged(t, n)
			if a := n[0].rotate(t); a.Code != http.StatusOK {
				t.Fatalf("round %d: rotate = %+v, want 200", round, a)
			}
			at := time.Now()
			after := kidsAt(t, n[0].URL)
			active := signingKid(t, n[0].URL)
			if !slices.Contains(before, active) || len(missingFrom(before, after)) != 1 {
				t.Fatalf("round %d: replica 0 signs with %s and publishes %v after the rotation, before %v: want the published next key to sign and one new key", round, active, after, before)
			}
			for _, i := range []int{1, 2} {
				var took time.Duration
				for {
					if len(missingFrom(kidsAt(t, n[i].URL), after)) == 0 && signingKid(t, n[i].URL) == active {
						took = time.Since(at)
						break
					}
					if time.Since(at) > 10*time.Second {
						t.Fatalf("round %d: replica %d does not publish and sign with the new keys 10s after the rotation", round, i)
					}
					time.Sleep(20 * time.Millisecond)
				}
				t.Logf("round %d: replica %d publishes and signs with the new key %s after the rotation", round, i, took.Round(time.Millisecond))
				if took > propagationBound {
					t.Errorf("round %d: replica %d took %s to publish and sign with the new key, want within 1s (+1s margin)", round, i, took)
				}
			}
		}
	})

	// Scenario 7: two calls on two replicas two seconds apart. By then the
	// second replica has loaded the first rotation, so it rotates again:
	// two answers "rotated" must mean two rotations with two versions.
	t.Run("two_calls_2s_apart", func(t *testing.T) {
		before, _ := converged(t, n)
		audits := auditCounts(n)
		first := n[0].rotate(t)
		time.Sleep(2 * time.Second)
		second := n[1].rotate(t)
		after, _ := converged(t, n)
		calls := []call{{0, first}, {1, second}}
		real := checkTruthful(t, n, calls, before, after, audits)
		t.Logf("answers %+v, %+v; %d rotations", first, second, real)
		if first.Code != http.StatusOK || real < 1 {
			t.Errorf("the first call = %+v with %d rotations, want rotated", first, real)
		}
		if second.Code == http.StatusOK && second.Version <= first.Version {
			t.Errorf("the second rotation's version %d is not after the first's %d", second.Version, first.Version)
		}
	})

	// Scenario 7: the three replicas asked at the same moment; typically
	// one rotates and the others answer already_rotated.
	t.Run("simultaneous", func(t *testing.T) {
		before, _ := converged(t, n)
		audits := auditCounts(n)
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			calls = make([]call, len(n))
		)
		for i, r := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				a, err := r.tryRotate()
				if err != nil {
					t.Errorf("rotate at replica %d: %v", i, err)
				}
				calls[i] = call{i, a}
			}()
		}
		close(start)
		wg.Wait()
		after, _ := converged(t, n)
		real := checkTruthful(t, n, calls, before, after, audits)
		t.Logf("simultaneous answers %+v; %d rotations", calls, real)
		if real < 1 {
			t.Errorf("three simultaneous rotate calls made no rotation")
		}
	})
}
