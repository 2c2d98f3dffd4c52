package memory

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// Codes and refresh families, the records of the token endpoint's hot
// path, are kept as values rather than JSON: a copy in and a copy out, so
// callers never share them, without the cost of encoding and decoding.
// The copies are what a JSON round trip (the other records, and the other
// stores) would give: claims hold only the types encoding/json decodes
// into (float64, string, bool, nil, []any, map[string]any), monotonic
// clock readings are dropped, empty omitempty fields come back nil, and a
// value JSON cannot encode is refused the same way.

// cloneCode is c as a JSON round trip would return it.
func cloneCode(c storage.AuthCode) (storage.AuthCode, error) {
	g, err := cloneGrant(c.Grant)
	if err != nil {
		return storage.AuthCode{}, err
	}
	c.Grant = g
	c.Expiry, c.Created = wallClock(c.Expiry), wallClock(c.Created)
	return c, nil
}

// cloneFamily is f as a JSON round trip would return it.
func cloneFamily(f storage.RefreshFamily) (storage.RefreshFamily, error) {
	g, err := cloneGrant(f.Grant)
	if err != nil {
		return storage.RefreshFamily{}, err
	}
	f.Grant = g
	f.CreatedAt, f.LastUsed = wallClock(f.CreatedAt), wallClock(f.LastUsed)
	f.IdleExpiry, f.AbsoluteExpiry = wallClock(f.IdleExpiry), wallClock(f.AbsoluteExpiry)
	return f, nil
}

// cloneGrant deep-copies g, field by field as storage.Grant's JSON tags
// encode it.
func cloneGrant(g storage.Grant) (storage.Grant, error) {
	var err error
	if g.Scopes != nil {
		g.Scopes = append([]string{}, g.Scopes...)
	}
	g.AMR = cloneOmitEmpty(g.AMR)
	g.ConnectorData = cloneOmitEmpty(g.ConnectorData)
	if g.IDTokenClaims, err = cloneClaims(g.IDTokenClaims); err != nil {
		return storage.Grant{}, err
	}
	if g.AccessTokenClaims, err = cloneClaims(g.AccessTokenClaims); err != nil {
		return storage.Grant{}, err
	}
	g.AuthTime, g.RefreshUntil = wallClock(g.AuthTime), wallClock(g.RefreshUntil)
	g.FamilyRef = "" // json:"-"
	return g, nil
}

func cloneOmitEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return append([]T(nil), s...)
}

// wallClock is t without its monotonic reading, as RFC 3339 keeps it.
func wallClock(t time.Time) time.Time { return t.Round(0) }

func cloneClaims(m map[string]any) (map[string]any, error) {
	if len(m) == 0 {
		return nil, nil // omitempty
	}
	return cloneObject(m)
}

func cloneObject(m map[string]any) (map[string]any, error) {
	if m == nil {
		return nil, nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		c, err := cloneValue(v)
		if err != nil {
			return nil, err
		}
		out[k] = c
	}
	return out, nil
}

// cloneValue is what json.Unmarshal into an any gives for the JSON of v.
// Types a mapping commonly yields are copied directly; any other goes
// through encoding/json.
func cloneValue(v any) (any, error) {
	switch v := v.(type) {
	case nil, string, bool:
		return v, nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return viaJSON(v)
		}
		return v, nil
	case int:
		return float64(v), nil
	case int64:
		return float64(v), nil
	case map[string]any:
		return cloneObject(v)
	case []any:
		if v == nil {
			return nil, nil
		}
		out := make([]any, len(v))
		for i, e := range v {
			c, err := cloneValue(e)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case []string:
		if v == nil {
			return nil, nil
		}
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = e
		}
		return out, nil
	}
	return viaJSON(v)
}

func viaJSON(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("memory: encode: %w", err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("memory: encode: %w", err)
	}
	return out, nil
}
