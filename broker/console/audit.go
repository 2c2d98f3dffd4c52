package console

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/observe"
)

// auditRow is one audit record as a table row.
type auditRow struct {
	Time   time.Time
	Event  string
	Fields []observe.Field
}

// rowOf is r with sensitive-looking fields masked (audit lines carry
// identifiers only; this is a second fence).
func rowOf(r observe.AuditRecord) auditRow {
	row := auditRow{Time: r.Time, Event: r.Event}
	for _, f := range r.Fields {
		if sensitive(f.Key) && f.Key != "token_client_id" {
			f.Value = setOrNot(f.Value != "")
		}
		row.Fields = append(row.Fields, observe.Field{Key: f.Key, Value: maskText(f.Value)})
	}
	return row
}

// auditFilter is the audit page's filter: each non-empty field must
// match (event exactly or by prefix ending in *, the others exactly).
type auditFilter struct {
	Event, Subject, Client, Connector string
}

func (f auditFilter) match(r observe.AuditRecord) bool {
	if f.Event != "" {
		if p, ok := strings.CutSuffix(f.Event, "*"); ok {
			if !strings.HasPrefix(r.Event, p) {
				return false
			}
		} else if r.Event != f.Event {
			return false
		}
	}
	anyOf := func(want string, keys ...string) bool {
		if want == "" {
			return true
		}
		for _, k := range keys {
			if r.Get(k) == want {
				return true
			}
		}
		return false
	}
	return anyOf(f.Subject, "sub", "subject") &&
		anyOf(f.Client, "client_id", "client", "token_client_id", "code_client_id") &&
		anyOf(f.Connector, "connector", "connector_id")
}

// auditData fills audit.html.
type auditData struct {
	Filter auditFilter
	Rows   []auditRow
	// Events are the event names seen, for the filter's suggestions.
	Events []string
	// File is the audit log file tailed, "" when the log does not go to
	// a file the broker knows; FileRows its last matching lines.
	File     string
	FileRows []auditRow
	FileErr  string
	// Capacity is how many records the in-memory ring keeps.
	Kept int
}

// maxAuditRows bounds the rows shown per source.
const maxAuditRows = 500

// auditTailBytes is how much of the end of the audit file is read.
const auditTailBytes = 1 << 20

func (c *Console) handleAudit(ec echo.Context) error {
	f := auditFilter{
		Event: strings.TrimSpace(ec.QueryParam("event")), Subject: strings.TrimSpace(ec.QueryParam("subject")),
		Client: strings.TrimSpace(ec.QueryParam("client")), Connector: strings.TrimSpace(ec.QueryParam("connector")),
	}
	d := auditData{Filter: f}
	seen := make(map[string]bool)
	if c.deps.AuditRing != nil {
		recent := c.deps.AuditRing.Recent()
		d.Kept = len(recent)
		for _, r := range recent {
			if !seen[r.Event] {
				seen[r.Event] = true
				d.Events = append(d.Events, r.Event)
			}
			if f.match(r) && len(d.Rows) < maxAuditRows {
				d.Rows = append(d.Rows, rowOf(r))
			}
		}
	}
	sort.Strings(d.Events)
	if c.deps.AuditFile != "" {
		d.File = c.deps.AuditFile
		recs, err := tailAudit(c.deps.AuditFile, auditTailBytes)
		if err != nil {
			c.deps.Logger.Warn("console: reading the audit file", "err", err)
			d.FileErr = "The audit file could not be read; see the broker's log."
		}
		for i := len(recs) - 1; i >= 0 && len(d.FileRows) < maxAuditRows; i-- {
			if f.match(recs[i]) {
				d.FileRows = append(d.FileRows, rowOf(recs[i]))
			}
		}
	}
	return c.render(ec.Response(), ec.Request(), http.StatusOK, "audit.html", d)
}

// tailAudit reads the last max bytes of the JSON log at path and returns
// its audit lines ("audit": true), oldest first.
func tailAudit(path string, max int64) ([]observe.AuditRecord, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off := st.Size() - max
	if off < 0 {
		off = 0
	}
	data, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return nil, err
	}
	if off > 0 { // drop the partial first line
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		}
	}
	var out []observe.AuditRecord
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if rec, ok := parseAuditLine(sc.Bytes()); ok {
			out = append(out, rec)
		}
	}
	return out, nil
}

// parseAuditLine reads one slog JSON line; ok only for audit lines.
func parseAuditLine(line []byte) (observe.AuditRecord, bool) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	var m map[string]any
	if dec.Decode(&m) != nil || m["audit"] != true {
		return observe.AuditRecord{}, false
	}
	rec := observe.AuditRecord{}
	rec.Event, _ = m["msg"].(string)
	if t, ok := m["time"].(string); ok {
		rec.Time, _ = time.Parse(time.RFC3339Nano, t)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		switch k {
		case "time", "level", "msg", "audit", "log":
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := m[k]
		s, ok := v.(string)
		if !ok {
			b, _ := json.Marshal(v)
			s = string(b)
		}
		rec.Fields = append(rec.Fields, observe.Field{Key: k, Value: s})
	}
	return rec, true
}
