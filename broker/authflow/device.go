package authflow

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/templates"
)

// The verification side of the device authorization grant (RFC 8628
// §3.3). A person types the user code their device shows at /device,
// sees which application asks for what, and confirms or denies it. Confirm
// starts the ordinary sign-in (chooser, connectors) with a pending auth
// request that names the user code instead of a redirect URI; Finish then
// records the grant for the device (finishDevice) instead of sending a
// code to a client. The device's poll at the token endpoint picks the
// decision up (grants.DeviceCode).
//
// Guessing user codes is bounded twice: the code space (20^8, about 2.6e10
// codes, of which only the few live ones mean anything) and a budget of
// lookups per browser and per client address (device.user_code_attempts),
// taken before each lookup and given back when the code exists.

// deviceLoginPrefix starts the id of a pending sign-in made from the
// verification page; other ids are random base64url and never contain a
// dot.
const deviceLoginPrefix = "device."

// userCodeLen is the length of a normalized user code.
const userCodeLen = 8

// Pages of the verification flow.
var (
	errDeviceExpired   = &oauth.PageError{Status: http.StatusBadRequest, Heading: "This code has expired", Message: "The code is no longer valid. Start again on your device to get a new one.", Code: "expired_token"}
	errDeviceUsed      = &oauth.PageError{Status: http.StatusBadRequest, Heading: "This code was already used", Message: "Someone already confirmed or denied this code. Start again on your device if it still asks you to sign in.", Code: "code_used"}
	errDeviceForm      = oauth.BadRequestPage("invalid_csrf", "The form has expired. Enter the code from your device again.")
	errDeviceThrottled = &oauth.PageError{Status: http.StatusTooManyRequests, Heading: "Too many attempts", Message: "Too many codes were entered from your browser or network. Wait a minute, then try again.", Code: "too_many_attempts"}
)

// DeviceFlow serves the verification page (/device).
type DeviceFlow struct {
	f       *Flow
	path    string
	limiter *deviceLimiter
	wrong   *wrongCodes
}

// NewDevice returns the verification page of the broker whose browser
// flows are f; attempts bounds the user code lookups per browser and per
// client address.
func NewDevice(f *Flow, attempts config.RateLimit) *DeviceFlow {
	return &DeviceFlow{f: f, path: strings.TrimSuffix(f.login, "/login") + "/device",
		limiter: newDeviceLimiter(f.now, attempts), wrong: newWrongCodes(f.store, f.now, attempts)}
}

// normalizeUserCode reads a user code as a person types it: any case,
// with dashes and spaces anywhere. ok is false unless it is exactly
// userCodeLen letters of the alphabet.
func normalizeUserCode(s string) (string, bool) {
	if len(s) > 64 {
		return "", false
	}
	out := make([]byte, 0, userCodeLen)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '-' || c == ' ' || c == '\t':
			continue
		case c >= 'a' && c <= 'z':
			c -= 'a' - 'A'
		}
		if !strings.ContainsRune(storage.DeviceUserCodeAlphabet, rune(c)) || len(out) == userCodeLen {
			return "", false
		}
		out = append(out, c)
	}
	if len(out) != userCodeLen {
		return "", false
	}
	return string(out), true
}

// deviceToken binds the confirm form to this browser and this code.
func deviceToken(browserID, userCode string) string {
	return csrfToken(browserID, "device\x00"+userCode)
}

func (d *DeviceFlow) form(b *Browser, typed, msg string) Result {
	var res Result
	b.ensureID(&res)
	status := http.StatusOK
	if msg != "" {
		status = http.StatusBadRequest
	}
	if uc, ok := normalizeUserCode(typed); ok {
		typed = storage.DisplayUserCode(uc)
	} else if len(typed) > 32 || !validText(typed) {
		typed = ""
	}
	res.Status, res.Template = status, "device.html"
	res.Data = templates.DeviceData{Page: d.f.pages.Page("Sign in on a device"), Action: d.path, UserCode: typed, Error: msg}
	return res
}

// Page is GET /device: the form for the code, prefilled from
// ?user_code= (verification_uri_complete) for the person to compare with
// the device. Nothing is looked up.
func (d *DeviceFlow) Page(userCode string, b Browser) Result {
	return d.form(&b, userCode, "")
}

// DeviceForm is a submitted verification form.
type DeviceForm struct {
	UserCode string
	// Action is "" to look the code up, "confirm" or "deny".
	Action, CSRF string
	// RemoteIP is the client's address, for the lookup limit.
	RemoteIP string
}

// Submit is POST /device: look the code up and show what it asks
// (Action ""), or confirm (on to the sign-in) or deny it.
func (d *DeviceFlow) Submit(ctx context.Context, rt *runtime.Runtime, form DeviceForm, b Browser) (Result, error) {
	f := d.f
	uc, ok := normalizeUserCode(form.UserCode)
	if !ok {
		return d.form(&b, form.UserCode, "That is not a valid code. It has 8 letters, like BCDF-GHJK."), nil
	}
	at := d.limiter.reserve(b.BrowserID, form.RemoteIP)
	if at == nil {
		f.audit.Event("device_code_throttled", "remote", form.RemoteIP)
		return Result{}, errDeviceThrottled
	}
	// The address's wrong codes on every replica: see wrongCodes.
	switch ok, err := d.wrong.allowed(ctx, at.addr); {
	case err != nil:
		at.cancel()
		return Result{}, err
	case !ok:
		at.cancel()
		f.audit.Event("device_code_throttled", "remote", form.RemoteIP, "fleet", true)
		return Result{}, errDeviceThrottled
	}
	rec, cl, err := d.lookup(ctx, rt, uc)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			if err := d.wrong.charge(ctx, at.addr); err != nil {
				return Result{}, err
			}
			f.audit.Event("device_code_unknown", "remote", form.RemoteIP)
			return d.form(&b, "", "That code is not valid or has expired. Check the code on your device and try again."), nil
		}
		at.cancel()
		return Result{}, err
	}
	at.cancel() // a live code costs nothing
	switch form.Action {
	case "":
		var res Result
		browserID := b.ensureID(&res)
		res.Status, res.Template = http.StatusOK, "device.html"
		res.Data = templates.DeviceData{Page: f.pages.Page("Sign in on a device"), Action: d.path, UserCode: storage.DisplayUserCode(uc), Confirm: true,
			ClientName: clientName(cl), Scopes: rec.Scopes, CSRF: deviceToken(browserID, uc)}
		return res, nil
	case "confirm", "deny":
	default:
		return Result{}, oauth.BadRequestPage(oauth.ErrInvalidRequest, "The form is not valid.")
	}
	if b.BrowserID == "" || !oauth.ConstantTimeEqual(form.CSRF, deviceToken(b.BrowserID, uc)) {
		f.audit.Event("device_rejected", "client_id", cl.ID, "reason", "bad csrf token")
		return Result{}, errDeviceForm
	}
	if form.Action == "deny" {
		if err := f.decideDevice(ctx, rec, nil); err != nil {
			return Result{}, err
		}
		f.audit.Event("device_denied", "client_id", cl.ID)
		return page(http.StatusOK, "device_done.html", templates.DeviceDoneData{Page: f.pages.Page("Request denied"), ClientName: clientName(cl)}), nil
	}
	if form.RemoteIP != "" && !f.pending.take(form.RemoteIP) {
		f.audit.Event("authorize_throttled", "client_id", cl.ID, "remote", form.RemoteIP)
		return Result{}, errTooManyPending
	}
	now := f.now()
	req := storage.AuthRequest{
		ID:             deviceLoginPrefix + oauth.RandomToken(24),
		ClientID:       cl.ID,
		Scopes:         rec.Scopes,
		MaxAge:         -1,
		BrowserBinding: storage.Hash(b.BrowserID),
		Expiry:         earliestTime(now.Add(rt.Tokens.AuthRequest), rec.Device.CodeExpiry),
		Device:         &storage.DeviceState{UserCode: uc, CodeHash: rec.Device.CodeHash},
	}
	if err := f.store.CreateAuthRequest(ctx, req); err != nil {
		return Result{}, err
	}
	f.metrics.Authorize(cl.ID)
	res := redirect(f.chooserURL(req.ID))
	if avail := rt.ConnectorsFor(cl); len(avail) == 1 {
		res.Redirect = f.loginURL(avail[0].ID, req.ID)
	}
	return res, nil
}

func clientName(cl *runtime.Client) string {
	if cl.Name != "" {
		return cl.Name
	}
	return cl.ID
}

func earliestTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// lookup returns the live, undecided device record of user code uc and
// its client: storage.ErrNotFound when there is none, an error page when
// it expired or was decided.
func (d *DeviceFlow) lookup(ctx context.Context, rt *runtime.Runtime, uc string) (storage.AuthRequest, *runtime.Client, error) {
	f := d.f
	rec, err := f.store.GetAuthRequest(ctx, storage.DeviceRecordID(uc))
	if err != nil {
		return rec, nil, err
	}
	if rec.Device == nil || rec.Device.CodeHash == "" {
		return rec, nil, storage.ErrNotFound
	}
	cl, ok := rt.Client(rec.ClientID)
	if !ok || !rec.Device.CodeExpiry.After(f.now()) {
		return rec, nil, errDeviceExpired
	}
	switch res, err := f.store.GetAuthRequest(ctx, storage.DeviceResultID(uc)); {
	case err == nil && res.Device != nil && res.Device.CodeHash == rec.Device.CodeHash:
		return rec, nil, errDeviceUsed
	case err != nil && !isNotFound(err):
		return rec, nil, err
	}
	return rec, cl, nil
}

// decideDevice records the person's decision about device record rec:
// the grant approved, or nil for a denial. The first decision wins; a
// later one is errDeviceUsed.
func (f *Flow) decideDevice(ctx context.Context, rec storage.AuthRequest, grant *storage.Grant) error {
	res := storage.AuthRequest{
		ID:       storage.DeviceResultID(rec.Device.UserCode),
		ClientID: rec.ClientID,
		Scopes:   rec.Scopes,
		Expiry:   rec.Expiry,
		Device:   &storage.DeviceState{UserCode: rec.Device.UserCode, CodeHash: rec.Device.CodeHash, Grant: grant, Denied: grant == nil},
	}
	err := f.store.CreateAuthRequest(ctx, res)
	if errors.Is(err, storage.ErrAlreadyExists) {
		return errDeviceUsed
	}
	return err
}

// deviceRecord returns the live device record a pending sign-in req was
// made for.
func (f *Flow) deviceRecord(ctx context.Context, req storage.AuthRequest) (storage.AuthRequest, error) {
	rec, err := f.store.GetAuthRequest(ctx, storage.DeviceRecordID(req.Device.UserCode))
	switch {
	case isNotFound(err):
		return rec, errDeviceExpired
	case err != nil:
		return rec, err
	}
	if rec.Device == nil || !oauth.ConstantTimeEqual(rec.Device.CodeHash, req.Device.CodeHash) || rec.ClientID != req.ClientID || !rec.Device.CodeExpiry.After(f.now()) {
		return rec, errDeviceExpired
	}
	return rec, nil
}

// finishDevice ends a sign-in started from the verification page: the
// grant goes to the device record instead of a code to a redirect URI,
// and the person is told to return to the device. Finish calls it after
// it consumed the auth request and started the SSO session sess.
func (f *Flow) finishDevice(ctx context.Context, cl *runtime.Client, req storage.AuthRequest, grant storage.Grant, sess *storage.Session) (Result, error) {
	rec, err := f.deviceRecord(ctx, req)
	if err != nil {
		return Result{}, err
	}
	grant.Nonce = ""
	if err := f.decideDevice(ctx, rec, &grant); err != nil {
		return Result{}, err
	}
	f.audit.Event("device_approved", "client_id", cl.ID, "sub", grant.Subject)
	res := page(http.StatusOK, "device_done.html", templates.DeviceDoneData{Page: f.pages.Page("Signed in"), Approved: true, ClientName: clientName(cl)})
	res.Session = sess
	return res, nil
}

// cancelDevice is the Cancel link of a sign-in started from the
// verification page: the device is denied. handled is false for every
// other sign-in, which Cancel serves.
func (f *Flow) cancelDevice(ctx context.Context, reqID, token string, b Browser) (res Result, handled bool, err error) {
	if !strings.HasPrefix(reqID, deviceLoginPrefix) {
		return Result{}, false, nil
	}
	req, err := f.loadRequest(ctx, reqID, b)
	if err != nil {
		return Result{}, true, err
	}
	if req.Device == nil || !oauth.ConstantTimeEqual(token, cancelToken(b.BrowserID, req.ID)) {
		return Result{}, true, errBadCancelLink
	}
	if _, err := f.store.TakeAuthRequest(ctx, req.ID); err != nil {
		if isNotFound(err) {
			return Result{}, true, errRequestGone
		}
		return Result{}, true, err
	}
	rec, err := f.deviceRecord(ctx, req)
	if err != nil {
		return Result{}, true, err
	}
	if err := f.decideDevice(ctx, rec, nil); err != nil {
		return Result{}, true, err
	}
	f.audit.Event("device_denied", "client_id", req.ClientID, "reason", "sign-in cancelled")
	name := req.ClientID
	if cl, ok := f.current().Client(req.ClientID); ok {
		name = clientName(cl)
	}
	return page(http.StatusOK, "device_done.html", templates.DeviceDoneData{Page: f.pages.Page("Request denied"), ClientName: name}), true, nil
}

// HandlePage serves GET /device.
func (d *DeviceFlow) HandlePage(c echo.Context) error {
	r := c.Request()
	if len(r.URL.RawQuery) > maxAuthorizeBytes {
		return errAuthorizeQueryTooLarge
	}
	return d.f.write(c.Response(), r, d.Page(c.QueryParam("user_code"), d.f.cookies.Read(r)))
}

// HandleSubmit serves POST /device (behind SameOrigin).
func (d *DeviceFlow) HandleSubmit(c echo.Context) error {
	r := c.Request()
	r.Body = http.MaxBytesReader(c.Response(), r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return oauth.BadRequestPage(oauth.ErrInvalidRequest, "The form could not be read.")
	}
	for _, k := range []string{"user_code", "action", "csrf"} {
		if len(r.PostForm[k]) > 1 {
			return oauth.BadRequestPage(oauth.ErrInvalidRequest, "The form repeats "+k+".")
		}
	}
	ip := c.RealIP()
	if ip == "" {
		ip = unknownAddr
	}
	form := DeviceForm{UserCode: r.PostForm.Get("user_code"), Action: r.PostForm.Get("action"), CSRF: r.PostForm.Get("csrf"), RemoteIP: ip}
	res, err := d.Submit(r.Context(), d.f.current(), form, d.f.cookies.Read(r))
	if err != nil {
		return err
	}
	return d.f.write(c.Response(), r, res)
}

// deviceLimiter bounds the user code lookups of one browser and of one
// client address: two token buckets, both taken before a lookup, given
// back when the code exists. A request without a browser id shares the
// budget of its address only. It lives in each replica's memory; the
// wrong codes of an address are counted across replicas by wrongCodes.
type deviceLimiter struct {
	mu       sync.Mutex
	now      func() time.Time
	limit    config.RateLimit
	browsers *lruTable[*tokenBucket]
	addrs    *lruTable[*tokenBucket]
	swept    time.Time
}

func newDeviceLimiter(now func() time.Time, limit config.RateLimit) *deviceLimiter {
	if limit.Burst < 1 || limit.Every <= 0 {
		limit = config.DefaultDeviceUserCodeAttempts
	}
	return &deviceLimiter{now: now, limit: limit, browsers: newLRUTable[*tokenBucket](maxAddrs), addrs: newLRUTable[*tokenBucket](maxAddrs)}
}

// deviceAttempt is a lookup the limiter allowed.
type deviceAttempt struct {
	l             *deviceLimiter
	browser, addr limitKey
	hasBrowser    bool
}

// reserve takes a token for a lookup from browserID at addr; nil when
// either budget is spent.
func (l *deviceLimiter) reserve(browserID, addr string) *deviceAttempt {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if now.Sub(l.swept) >= sweepEvery {
		l.swept = now
		full := func(b *tokenBucket) bool { return b.full(now) }
		l.browsers.drop(full)
		l.addrs.drop(full)
	}
	fresh := func() *tokenBucket { return newTokenBucket(now, l.limit.Burst, l.limit.Every) }
	a := &deviceAttempt{l: l, addr: hashLimitKey("device-addr", clientNet(addr)), hasBrowser: browserID != ""}
	ab := l.addrs.get(a.addr, fresh)
	var bb *tokenBucket
	if a.hasBrowser {
		a.browser = hashLimitKey("device-browser", browserID)
		bb = l.browsers.get(a.browser, fresh)
		if bb.level(now) < 1 {
			return nil
		}
	}
	if !ab.take(now) {
		return nil
	}
	if bb != nil {
		bb.take(now)
	}
	return a
}

// cancel gives the attempt's tokens back.
func (a *deviceAttempt) cancel() {
	l := a.l
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if b, ok := l.addrs.peek(a.addr); ok {
		b.give(now)
	}
	if a.hasBrowser {
		if b, ok := l.browsers.peek(a.browser); ok {
			b.give(now)
		}
	}
}
