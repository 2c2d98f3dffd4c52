package console

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/workbench"
)

// workbenchRoutes adds the mapping workbench's routes to g, the console's
// authenticated group (mounted at /console; CSRF checked on every POST).
//
// This file is owned by the workbench: its engineer edits it, not the
// console's.
func (c *Console) workbenchRoutes(g *echo.Group) {
	g.GET("/workbench", c.handleWorkbench)
	g.POST("/workbench", c.handleWorkbenchPost)
	g.POST("/workbench/test-signin", c.handleWorkbenchTestSignIn)
	g.POST("/workbench/compile", c.handleWorkbenchCompile)
	g.GET("/workbench/test-status", c.handleWorkbenchTestStatus)
}

// The workbench's per-console state: the workbench over the console's
// dependencies, and what each console session saved (samples, test
// sign-ins), in this process's memory like the console's sessions.
var benches sync.Map // *Console → *bench

type bench struct {
	wb *workbench.Workbench

	mu       sync.Mutex
	sessions map[[32]byte]*benchSession
}

// benchSession is one console session's workbench state, keyed by the
// session's CSRF token (hashed): it ends with the session.
type benchSession struct {
	samples  []workbench.Sample
	tests    []pendingTest
	lastUsed time.Time
}

// pendingTest is a test sign-in this session started.
type pendingTest struct {
	handle, connector string
	started           time.Time
}

// Bounds of the in-memory state.
const (
	maxBenchSessions = 200
	maxSessionSample = 50
	maxPendingTests  = 10
	benchIdle        = 12 * time.Hour
)

func (c *Console) bench() *bench {
	if b, ok := benches.Load(c); ok {
		return b.(*bench)
	}
	d := c.deps
	wb := workbench.New(workbench.Deps{Issuer: d.Issuer, Runtime: d.Runtime, Config: d.Config, Store: d.Store, Now: d.Now})
	b, _ := benches.LoadOrStore(c, &bench{wb: wb, sessions: make(map[[32]byte]*benchSession)})
	return b.(*bench)
}

// session returns the workbench state of the console session of r, under
// b.mu.
func (c *Console) benchSession(b *bench, r *http.Request) *benchSession {
	_, csrf := c.Admin(r)
	k := sha256.Sum256([]byte("workbench\x00" + csrf))
	now := c.deps.Now()
	s, ok := b.sessions[k]
	if !ok {
		for key, o := range b.sessions {
			if now.Sub(o.lastUsed) > benchIdle {
				delete(b.sessions, key)
			}
		}
		if len(b.sessions) >= maxBenchSessions {
			var oldest [32]byte
			var at time.Time
			for key, o := range b.sessions {
				if at.IsZero() || o.lastUsed.Before(at) {
					oldest, at = key, o.lastUsed
				}
			}
			delete(b.sessions, oldest)
		}
		s = &benchSession{}
		b.sessions[k] = s
	}
	s.lastUsed = now
	return s
}

// workbenchForm is the page's form, as submitted (or its defaults).
type workbenchForm struct {
	Target string // workbench.Target.Key
	Client string
	Scopes string
	Claims string
	Draft  string
	// DraftFor is the target the draft text was loaded for: choosing
	// another target loads that one's running mapping.
	DraftFor   string
	SampleName string
}

// workbenchData fills workbench.html.
type workbenchData struct {
	Available bool
	Form      workbenchForm
	Targets   []workbench.TargetInfo
	Target    workbench.TargetInfo
	Clients   []clientOption
	// Problems are the draft's problems with their positions.
	Problems []workbench.Problem
	// Message is a notice (what was done); Error what went wrong.
	Message, Error string
	// InputForm names what the upstream data was read as.
	InputForm string
	// Result is the evaluation shown.
	Result *workbench.Evaluation
	// Comparisons are the draft against the running mapping on samples.
	Comparisons  []workbench.Comparison
	CompareNotes []string
	// Samples are the session's saved samples; SamplesDir the configured
	// directory ("" when none).
	Samples    []workbench.Sample
	SamplesDir string
	// Tests are the session's test sign-ins; TestURL the login URL of
	// the one just started (for the link when the tab did not open).
	Tests   []testView
	TestURL string
}

type clientOption struct{ ID, Name string }

type testView struct {
	Handle, Connector string
	Started           time.Time
}

// JSON renders v indented for a <pre>.
func (workbenchData) JSON(v any) string {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// Decision is the report's decision in words.
func (d workbenchData) Decision() string {
	if d.Result == nil {
		return ""
	}
	r := d.Result.Report
	switch r.Decision {
	case "accepted":
		return "Accepted"
	case "rejected":
		return fmt.Sprintf("Refused by require[%d]: %s", *r.Rule, r.Message)
	}
	return "Failed: " + r.Error
}

const defaultScopes = "openid profile email groups"

func (c *Console) workbenchData(r *http.Request, f workbenchForm) workbenchData {
	d := workbenchData{Form: f}
	if c.deps.Config == nil || c.deps.Runtime == nil || c.deps.Store == nil {
		return d
	}
	d.Available = true
	b := c.bench()
	d.Targets = b.wb.Targets()
	cfg := c.deps.Config()
	for _, cl := range cfg.Clients {
		name := cl.Name
		if name == "" {
			name = cl.ID
		}
		d.Clients = append(d.Clients, clientOption{cl.ID, name})
	}
	d.SamplesDir = cfg.Admin.Workbench.SamplesDir
	if d.Form.Target == "" && len(d.Targets) > 0 {
		d.Form.Target = d.Targets[0].Key()
	}
	if d.Form.Client == "" && len(d.Clients) > 0 && r.Method == http.MethodGet {
		d.Form.Client = d.Clients[0].ID
	}
	if d.Form.Scopes == "" && r.Method == http.MethodGet {
		d.Form.Scopes = defaultScopes
	}
	if t, ok := workbench.ParseTarget(d.Form.Target); ok {
		if ti, err := b.wb.Info(t); err == nil {
			d.Target = ti
			if d.Form.DraftFor != d.Form.Target || strings.TrimSpace(d.Form.Draft) == "" {
				d.Form.Draft, _ = b.wb.RunningText(t)
				d.Form.DraftFor = d.Form.Target
			}
		}
	}
	b.mu.Lock()
	s := c.benchSession(b, r)
	d.Samples = slices.Clone(s.samples)
	for _, t := range s.tests {
		d.Tests = append(d.Tests, testView{Handle: t.handle, Connector: t.connector, Started: t.started})
	}
	b.mu.Unlock()
	return d
}

func (c *Console) handleWorkbench(ec echo.Context) error {
	r := ec.Request()
	q := r.URL.Query()
	f := workbenchForm{Target: q.Get("target"), Client: q.Get("client")}
	// Links from the other pages name a connector (or a workload issuer),
	// and from a person's session, the person.
	if id := q.Get("connector"); id != "" && f.Target == "" {
		f.Target = workbench.Target{ID: id}.Key()
	}
	if id := q.Get("workload"); id != "" && f.Target == "" {
		f.Target = workbench.Target{ID: id, Workload: true}.Key()
	}
	d := c.workbenchData(r, f)
	if sub := q.Get("sub"); sub != "" && d.Target.ID != "" {
		d.Message = fmt.Sprintf("To see what %s sends for %s, press Test sign-in and sign in as them in the new tab (nothing is issued), or paste their upstream claims.", d.Target.Name, sub)
	}
	return c.render(ec.Response(), r, http.StatusOK, "workbench.html", d)
}

// readForm reads the workbench form; an uploaded claims file replaces the
// pasted claims.
func readForm(ec echo.Context) (workbenchForm, error) {
	r := ec.Request()
	f := workbenchForm{
		Target: r.PostFormValue("target"), Client: r.PostFormValue("client"), Scopes: r.PostFormValue("scopes"),
		Claims: r.PostFormValue("claims"), Draft: r.PostFormValue("draft"), DraftFor: r.PostFormValue("draft_for"),
		SampleName: strings.TrimSpace(r.PostFormValue("sample_name")),
	}
	if fh, err := ec.FormFile("claims_file"); err == nil && fh.Size > 0 {
		if fh.Size > workbench.MaxInputBytes {
			return f, fmt.Errorf("the uploaded file is larger than %d KiB", workbench.MaxInputBytes>>10)
		}
		file, err := fh.Open()
		if err != nil {
			return f, err
		}
		defer file.Close()
		b, err := io.ReadAll(io.LimitReader(file, workbench.MaxInputBytes+1))
		if err != nil {
			return f, err
		}
		f.Claims = string(b)
	}
	return f, nil
}

// handleWorkbenchPost runs the button pressed: evaluate (the draft),
// running (the running mapping), compare, save (a sample in the session),
// reset (the draft to the running mapping), load-test (a test sign-in's
// result into the claims).
func (c *Console) handleWorkbenchPost(ec echo.Context) error {
	r := ec.Request()
	f, err := readForm(ec)
	action := r.PostFormValue("action")
	if action == "reset" {
		f.Draft = ""
	}
	d := c.workbenchData(r, f)
	if !d.Available {
		return c.render(ec.Response(), r, http.StatusServiceUnavailable, "workbench.html", d)
	}
	if err != nil {
		d.Error = err.Error()
		return c.render(ec.Response(), r, http.StatusBadRequest, "workbench.html", d)
	}
	status := http.StatusOK
	if action == "reset" {
		d.Message = "The draft is the running " + d.Target.MappingLabel() + " again."
	}
	if err := c.workbenchAction(ec, action, &d); err != nil {
		d.Error = err.Error()
		status = http.StatusUnprocessableEntity
	}
	return c.render(ec.Response(), r, status, "workbench.html", d)
}

func (c *Console) workbenchAction(ec echo.Context, action string, d *workbenchData) error {
	r := ec.Request()
	ctx := r.Context()
	b := c.bench()
	target, ok := workbench.ParseTarget(d.Form.Target)
	if !ok || d.Target.ID == "" {
		return errors.New("choose a connector or workload issuer")
	}
	draft := workbench.CompileDraft(d.Form.Draft)
	d.Problems = draft.Problems
	switch action {
	case "reset":
		return nil
	case "load-test":
		return c.loadTest(ec, d)
	case "save":
		in, form, err := workbench.ParseInput(d.Form.Claims)
		if err != nil {
			return err
		}
		d.InputForm = form
		in.Connector, in.Workload = target.ID, target.Workload
		name := d.Form.SampleName
		if name == "" {
			name = fmt.Sprintf("%s-%d", target.ID, len(d.Samples)+1)
		}
		b.mu.Lock()
		s := c.benchSession(b, r)
		if len(s.samples) >= maxSessionSample {
			b.mu.Unlock()
			return fmt.Errorf("this session holds %d samples already", maxSessionSample)
		}
		s.samples = append(s.samples, workbench.Sample{Name: name, Origin: "session", Input: in})
		d.Samples = slices.Clone(s.samples)
		b.mu.Unlock()
		d.Message = fmt.Sprintf("Saved sample %q for this console session.", name)
		return nil
	case "compare":
		if !draft.OK() {
			return errors.New("the draft does not compile: fix the problems shown first")
		}
		samples, notes, err := workbench.LoadSamples(d.SamplesDir)
		if err != nil {
			return err
		}
		samples = append(samples, d.Samples...)
		if len(samples) == 0 {
			return errors.New("there are no samples: set admin.workbench.samples_dir, or save samples in this session")
		}
		cs, err := b.wb.Compare(ctx, target, draft, samples)
		if err != nil {
			return err
		}
		d.Comparisons, d.CompareNotes = cs, notes
		n := 0
		for _, cmp := range cs {
			if cmp.Status == "differs" {
				n++
			}
		}
		d.Message = fmt.Sprintf("%d of %d samples differ between the draft and the running mapping.", n, len(cs))
		return nil
	case "evaluate", "running", "":
		in, form, err := workbench.ParseInput(d.Form.Claims)
		if err != nil {
			return err
		}
		d.InputForm = form
		if form == workbench.FormSample && in.Connector != "" && (in.Connector != target.ID || in.Workload != target.Workload) {
			return fmt.Errorf("the pasted sample is for %s, but %s is chosen above", in.Connector, target.ID)
		}
		req := workbench.Request{Target: target, Input: in, Client: d.Form.Client, Scopes: strings.Fields(d.Form.Scopes)}
		if action != "running" {
			if !draft.OK() {
				return errors.New("the draft does not compile: fix the problems shown first, or evaluate the running mapping")
			}
			req.Draft = draft
		}
		ev, err := b.wb.Evaluate(ctx, req)
		if err != nil {
			return err
		}
		d.Result = ev
		c.auditAdmin(r, "workbench_evaluate", "target", target.Key(), "draft", ev.Draft, "decision", ev.Report.Decision)
		return nil
	}
	return fmt.Errorf("unknown action %q", action)
}

// loadTest puts the result of the session's latest finished test sign-in
// into the claims field and evaluates it with the draft.
func (c *Console) loadTest(ec echo.Context, d *workbenchData) error {
	r := ec.Request()
	b := c.bench()
	b.mu.Lock()
	s := c.benchSession(b, r)
	tests := slices.Clone(s.tests)
	b.mu.Unlock()
	if len(tests) == 0 {
		return errors.New("no test sign-in was started in this session")
	}
	handle := r.PostFormValue("test")
	for i := len(tests) - 1; i >= 0; i-- {
		t := tests[i]
		if handle != "" && t.handle != handle {
			continue
		}
		res, err := b.wb.TestSignInResult(r.Context(), t.handle)
		if errors.Is(err, workbench.ErrTestPending) {
			if handle != "" {
				return fmt.Errorf("the test sign-in with %s started %s ago has not finished: complete it in its tab", t.connector, humanDuration(c.deps.Now().Sub(t.started)))
			}
			continue
		}
		if err != nil {
			return err
		}
		c.forgetTest(r, t.handle)
		if res.Failure != "" {
			return fmt.Errorf("the test sign-in with %s did not give an identity: %s", t.connector, maskText(res.Failure))
		}
		in := workbench.InputOf(res)
		text, _ := json.MarshalIndent(in, "", "  ")
		d.Form.Claims = string(text)
		if d.Form.Target != (workbench.Target{ID: t.connector}).Key() {
			d.Form.Target = (workbench.Target{ID: t.connector}).Key()
			*d = c.workbenchData(r, d.Form)
		}
		d.Message = fmt.Sprintf("Loaded the test sign-in with %s: upstream subject %s.", t.connector, in.UpstreamSubject)
		return c.workbenchAction(ec, "evaluate", d)
	}
	return errors.New("no test sign-in has finished yet: complete it in its tab, then load it")
}

func (c *Console) forgetTest(r *http.Request, handle string) {
	b := c.bench()
	b.mu.Lock()
	defer b.mu.Unlock()
	s := c.benchSession(b, r)
	s.tests = slices.DeleteFunc(s.tests, func(t pendingTest) bool { return t.handle == handle })
}

// handleWorkbenchTestSignIn starts a test sign-in and sends the browser
// (a new tab: the button's formtarget) to the connector's public login
// URL.
func (c *Console) handleWorkbenchTestSignIn(ec echo.Context) error {
	r := ec.Request()
	f, _ := readForm(ec)
	d := c.workbenchData(r, f)
	if !d.Available {
		return c.render(ec.Response(), r, http.StatusServiceUnavailable, "workbench.html", d)
	}
	t, ok := workbench.ParseTarget(f.Target)
	if !ok || t.Workload {
		d.Error = "A test sign-in needs a connector (a workload issuer has no browser sign-in)."
		return c.render(ec.Response(), r, http.StatusBadRequest, "workbench.html", d)
	}
	b := c.bench()
	handle, loginURL, err := b.wb.StartTestSignIn(r.Context(), t.ID, strings.Fields(f.Scopes))
	if err != nil {
		d.Error = err.Error()
		return c.render(ec.Response(), r, http.StatusUnprocessableEntity, "workbench.html", d)
	}
	b.mu.Lock()
	s := c.benchSession(b, r)
	s.tests = append(s.tests, pendingTest{handle: handle, connector: t.ID, started: c.deps.Now()})
	if len(s.tests) > maxPendingTests {
		s.tests = s.tests[len(s.tests)-maxPendingTests:]
	}
	b.mu.Unlock()
	c.auditAdmin(r, "workbench_test_signin_started", "connector", t.ID)
	return ec.Redirect(http.StatusSeeOther, loginURL)
}

// compileAnswer is the compile endpoint's JSON.
type compileAnswer struct {
	OK       bool                `json:"ok"`
	Problems []workbench.Problem `json:"problems"`
}

// handleWorkbenchCompile compiles the posted draft (the form field
// "draft", or the raw body) and answers its problems with their
// positions, for the page's script.
func (c *Console) handleWorkbenchCompile(ec echo.Context) error {
	r := ec.Request()
	text := r.PostFormValue("draft")
	if text == "" && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") && !strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/") {
		b, err := io.ReadAll(io.LimitReader(r.Body, workbench.MaxDraftBytes+1))
		if err != nil {
			return ec.JSON(http.StatusBadRequest, map[string]string{"error": "cannot read the draft"})
		}
		text = string(b)
	}
	d := workbench.CompileDraft(text)
	a := compileAnswer{OK: d.OK(), Problems: d.Problems}
	if a.Problems == nil {
		a.Problems = []workbench.Problem{}
	}
	return ec.JSON(http.StatusOK, a)
}

// handleWorkbenchTestStatus answers, for the page's script, how many of
// the session's test sign-ins have finished.
func (c *Console) handleWorkbenchTestStatus(ec echo.Context) error {
	r := ec.Request()
	b := c.bench()
	b.mu.Lock()
	tests := slices.Clone(c.benchSession(b, r).tests)
	b.mu.Unlock()
	out := struct {
		Pending  int `json:"pending"`
		Finished int `json:"finished"`
	}{}
	for _, t := range tests {
		if _, err := b.wb.TestSignInResult(r.Context(), t.handle); err == nil {
			out.Finished++
		} else {
			out.Pending++
		}
	}
	return ec.JSON(http.StatusOK, out)
}
