package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// Limits of the real-browser tests: one step (a navigation and the wait for
// the page it leads to) and one whole test.
const (
	stepTimeout    = 20 * time.Second
	browserTimeout = 50 * time.Second
)

// chromiumPath is $CHROMIUM or /usr/bin/chromium. When it does not exist the
// test skips, except under CI=true, where it fails: CI installs chromium
// (.ci/run) and must not silently run without it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	path := os.Getenv("CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := os.Stat(path); err != nil {
		msg := fmt.Sprintf("chromium not found at %s (set $CHROMIUM, or apt-get install chromium): %v", path, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}

// newBrowser starts a headless chromium with a fresh profile for this test
// and returns its context; the browser stops when the test ends. The
// returned context carries the whole test's deadline.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := chromiumPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	t.Cleanup(cancel)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.WindowSize(1100, 900),
	)
	t.Cleanup(cancelAlloc)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	// Start the browser now, so that a broken installation fails here with
	// its own message and not inside the first step.
	if err := chromedp.Do(browserCtx); err != nil {
		t.Fatalf("start chromium %s: %v", path, err)
	}
	return browserCtx
}

// tab is one page in its own browser context (its own cookies and
// storage), with the console messages and the document requests it saw.
type tab struct {
	t     *testing.T
	name  string
	ctx   context.Context
	steps int

	mu       sync.Mutex
	console  []string
	requests []*network.EventRequestWillBeSent // documents only
}

// newTab opens a tab in a new browser context of the browser.
func newTab(t *testing.T, browser context.Context, name string) *tab {
	t.Helper()
	return openTab(t, browser, name, chromedp.WithNewBrowserContext())
}

// sibling opens another tab (in a window of its own) in tb's browser
// context: it shares tb's cookies, as a second tab of one person's
// browser does.
func (tb *tab) sibling(name string) *tab {
	tb.t.Helper()
	return openTab(tb.t, tb.ctx, name)
}

func openTab(t *testing.T, parent context.Context, name string, opts ...chromedp.ContextOption) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(parent, opts...)
	t.Cleanup(cancel)
	tb := &tab{t: t, name: name, ctx: ctx}
	if err := chromedp.Listen(ctx, tb.record); err != nil {
		t.Fatalf("%s: listen: %v", name, err)
	}
	// Console subscribes on return, so nothing the first page writes is
	// missed; the loop ends when the tab's context does.
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			tb.mu.Lock()
			tb.console = append(tb.console, fmt.Sprintf("%s %s: %s", m.Type, m.URL, m.Text))
			tb.mu.Unlock()
		}
	}()
	return tb
}

func (tb *tab) record(ev any) {
	if e, ok := ev.(*network.EventRequestWillBeSent); ok && e.Type == network.ResourceTypeDocument {
		tb.mu.Lock()
		tb.requests = append(tb.requests, e)
		tb.mu.Unlock()
	}
}

// consoleLines returns what the pages wrote to the console so far,
// including the browser's own messages (CSP violations among them).
func (tb *tab) consoleLines() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.console...)
}

// documentRequests returns the top-level and frame document requests sent
// so far, redirects included.
func (tb *tab) documentRequests() []*network.EventRequestWillBeSent {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]*network.EventRequestWillBeSent(nil), tb.requests...)
}

// step runs actions within stepTimeout. When they fail it saves a
// full-page screenshot and fails the test with the step's name.
func (tb *tab) step(name string, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	err := chromedp.Do(ctx, actions...)
	tb.after(name, err)
}

// run is step for one action that returns a value.
func run[T any](tb *tab, name string, a chromedp.Action[T]) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	tb.after(name, err)
	return v
}

// after saves a screenshot on failure (and after every step when
// $SCREENSHOT_EVERY_STEP is set) and fails the test on err.
func (tb *tab) after(name string, err error) {
	tb.t.Helper()
	tb.steps++
	if err == nil && os.Getenv("SCREENSHOT_EVERY_STEP") == "" {
		return
	}
	shot := tb.screenshot(name)
	if err == nil {
		tb.t.Logf("%s: step %q: screenshot %s", tb.name, name, shot)
		return
	}
	tb.fail(name, shot, err)
}

// check fails the test at step name when msg is not empty, with a
// screenshot of the page as it is.
func (tb *tab) check(name, msg string) {
	tb.t.Helper()
	if msg == "" {
		return
	}
	tb.fail(name, tb.screenshot(name), errors.New(msg))
}

func (tb *tab) fail(name, shot string, err error) {
	tb.t.Helper()
	loc := "unknown"
	ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
	defer cancel()
	if l, lerr := chromedp.Run(ctx, chromedp.Location()); lerr == nil {
		loc = l
	}
	tb.t.Fatalf("%s: step %q failed at %s: %v\nscreenshot: %s\nconsole:\n  %s",
		tb.name, name, loc, err, shot, strings.Join(tb.consoleLines(), "\n  "))
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// screenshot saves the whole page as PNG in $SCREENSHOT_DIR, or in a
// directory of the test, and returns the path (or why there is none).
func (tb *tab) screenshot(name string) string {
	dir := os.Getenv("SCREENSHOT_DIR")
	if dir == "" {
		dir = tb.t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return "none: " + err.Error()
	}
	// The step's own deadline may be what failed: take the screenshot
	// under a fresh one (still within the test's).
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return "none: " + err.Error()
	}
	file := filepath.Join(dir, unsafeName.ReplaceAllString(fmt.Sprintf("%s-%s-%02d-%s", tb.t.Name(), tb.name, tb.steps, name), "_")+".png")
	if err := os.WriteFile(file, png, 0o644); err != nil {
		return "none: " + err.Error()
	}
	return file
}

// postBody returns the form body of a recorded request.
func postBody(e *network.EventRequestWillBeSent) string {
	var b strings.Builder
	for _, p := range e.Request.PostDataEntries {
		b.Write(p.Bytes)
	}
	return b.String()
}
