package demo

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/crewjam/saml/samlidp"
	"golang.org/x/crypto/bcrypt"

	"github.com/fedbroker/fedbroker/broker"
	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/verify"
)

// Options place the demo. Port 0 picks free ports (tests); the command uses
// fixed ports so the printed URLs are stable.
type Options struct {
	Host string // default 127.0.0.1
	// Ports of the demo app, the broker, Contoso (OIDC), Fabrikam (SAML),
	// the demo API and the broker's admin API.
	AppPort, BrokerPort, ContosoPort, FabrikamPort, APIPort, AdminPort int
	Logger                                                             *slog.Logger
}

// DefaultOptions are the ports the README names.
func DefaultOptions() Options {
	return Options{Host: "127.0.0.1", AppPort: 5555, BrokerPort: 5556, ContosoPort: 5557, FabrikamPort: 5558, APIPort: 5559, AdminPort: 5560}
}

// User is a demo account and its password (printed for the person trying
// the demo; these accounts exist only in this process).
type User struct {
	IdP, Username, Password, Email string
}

// Users are the demo accounts. Alice exists in both upstreams with the same
// verified email, so the broker links her two identities to one subject.
var Users = []User{
	{"Contoso (OpenID Connect)", "alice", "contoso-alice-pw", "alice@example.com"},
	{"Contoso (OpenID Connect)", "bob", "contoso-bob-pw", "bob@contoso.example"},
	{"Fabrikam (SAML)", "alice", "fabrikam-alice-pw", "alice@example.com"},
	{"Fabrikam (SAML)", "carol", "fabrikam-carol-pw", "carol@fabrikam.example"},
}

// Demo is the running story.
type Demo struct {
	AppURL, BrokerURL, ContosoURL, FabrikamURL, APIURL string
	// AdminURL is the broker's admin API (loopback only); AdminToken its
	// bearer token, random for each run.
	AdminURL, AdminToken string

	Broker  *broker.Instance
	Contoso *broker.Instance
	app     *App
	servers []*http.Server
	closers []func()
}

// Close stops everything.
func (d *Demo) Close() {
	for _, s := range d.servers {
		_ = s.Close()
	}
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

const contosoSecret = "demo-contoso-client-secret-0123456789abcdef"

// Start runs Contoso, Fabrikam, the broker, the demo API and the demo app.
func Start(ctx context.Context, opts Options) (_ *Demo, err error) {
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Demo{}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	listen := func(name string, port int) (net.Listener, string, error) {
		ln, err := net.Listen("tcp", net.JoinHostPort(opts.Host, fmt.Sprint(port)))
		if err != nil {
			return nil, "", fmt.Errorf("demo: %s: %w (is another demo running? pick other ports)", name, err)
		}
		return ln, "http://" + ln.Addr().String(), nil
	}
	appLn, appURL, err := listen("app", opts.AppPort)
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, func() { _ = appLn.Close() })
	brokerLn, brokerURL, err := listen("broker", opts.BrokerPort)
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, func() { _ = brokerLn.Close() })
	contosoLn, contosoURL, err := listen("contoso", opts.ContosoPort)
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, func() { _ = contosoLn.Close() })
	fabrikamLn, fabrikamURL, err := listen("fabrikam", opts.FabrikamPort)
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, func() { _ = fabrikamLn.Close() })
	apiLn, apiURL, err := listen("api", opts.APIPort)
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, func() { _ = apiLn.Close() })
	adminLn, adminURL, err := listen("admin", opts.AdminPort)
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, func() { _ = adminLn.Close() })
	d.AppURL, d.BrokerURL, d.ContosoURL, d.FabrikamURL, d.APIURL = appURL, brokerURL, contosoURL, fabrikamURL, apiURL
	d.AdminURL, d.AdminToken = adminURL, randomString()

	// Contoso: a second fedbroker with the local connector, an OpenID
	// Connect provider for the main broker.
	contosoCfg, err := parse(contosoYAML(contosoURL, brokerURL))
	if err != nil {
		return nil, fmt.Errorf("demo: contoso config: %w", err)
	}
	d.Contoso, err = broker.Start(ctx, contosoCfg, log.With("idp", "contoso"))
	if err != nil {
		return nil, fmt.Errorf("demo: contoso: %w", err)
	}
	d.closers = append(d.closers, d.Contoso.Close)
	d.serve(contosoLn, d.Contoso.Server.Handler(), log)

	// Fabrikam: crewjam/saml's IdP.
	idp, err := newFabrikam(fabrikamURL)
	if err != nil {
		return nil, err
	}
	d.serve(fabrikamLn, idp, log)

	// The broker. Fabrikam's metadata is fetched here (plain http on
	// loopback) and given inline: the SAML connector fetches metadata URLs
	// only over https.
	client := &http.Client{Timeout: 10 * time.Second}
	idpMetadata, err := fetch(ctx, client, fabrikamURL+"/metadata")
	if err != nil {
		return nil, fmt.Errorf("demo: fabrikam metadata: %w", err)
	}
	brokerCfg, err := parse(brokerYAML(brokerURL, contosoURL, string(idpMetadata), appURL))
	if err != nil {
		return nil, fmt.Errorf("demo: broker config: %w", err)
	}
	d.Broker, err = broker.Start(ctx, brokerCfg, log.With("idp", "broker"))
	if err != nil {
		return nil, fmt.Errorf("demo: broker: %w", err)
	}
	d.closers = append(d.closers, d.Broker.Close)
	d.serve(brokerLn, d.Broker.Server.Handler(), log)
	// The broker's admin API, on loopback with a random token: "sign out
	// everywhere" (DELETE /admin/subjects/{sub}/sessions) and /metrics.
	d.serve(adminLn, d.Broker.Server.AdminHandler(broker.AdminOptions{Token: d.AdminToken, Gatherer: d.Broker.Server.Gatherer()}), log)

	// Register the broker as a service provider at Fabrikam.
	if err := registerSP(ctx, client, brokerURL+"/saml/fabrikam/metadata", fabrikamURL+"/services/fedbroker"); err != nil {
		return nil, err
	}

	// The demo API trusts the broker and verifies tokens locally.
	v, err := verify.New(ctx, brokerURL, "demo-api", verify.WithHTTPClient(client), verify.WithLogger(log))
	if err != nil {
		return nil, fmt.Errorf("demo: api verifier: %w", err)
	}
	d.closers = append(d.closers, v.Close)
	d.serve(apiLn, APIHandler(v), log)

	d.app = NewApp(brokerURL, "demo-app", appURL, apiURL, client, log)
	// The app's back-channel logout endpoint verifies the broker's logout
	// tokens: signed by the broker, aud the app's client id, each jti once.
	lv, err := verify.New(ctx, brokerURL, "demo-app", verify.WithHTTPClient(client), verify.WithLogger(log))
	if err != nil {
		return nil, fmt.Errorf("demo: app logout token verifier: %w", err)
	}
	d.closers = append(d.closers, lv.Close)
	d.app.logoutTokens = lv
	d.serve(appLn, d.app.Handler(), log)
	return d, nil
}

func (d *Demo) serve(ln net.Listener, h http.Handler, log *slog.Logger) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	d.servers = append(d.servers, srv)
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("demo server", "addr", ln.Addr().String(), "err", err)
		}
	}()
}

// PrintWelcome writes the URLs, the demo accounts and how to sign out.
func (d *Demo) PrintWelcome(w io.Writer) {
	fmt.Fprintf(w, `fedbroker demo: everything runs in this process, on this machine.

  Demo app     %s      <- open this in a browser and press "Sign in"
  Broker       %s      (issuer; discovery at /.well-known/openid-configuration)
  Contoso      %s      upstream OpenID Connect IdP (a second fedbroker)
  Fabrikam     %s      upstream SAML 2.0 IdP (crewjam/saml)
  Demo API     %s/whoami  verifies the broker's access tokens locally
  Admin API    %s      the broker's admin API (loopback only, token below)
  Console      %s/console/  the admin console: sign in with the token %s

Accounts:
`, d.AppURL, d.BrokerURL, d.ContosoURL, d.FabrikamURL, d.APIURL, d.AdminURL, d.AdminURL, d.AdminToken)
	for _, u := range Users {
		fmt.Fprintf(w, "  %-26s %-6s password %-20s (%s)\n", u.IdP, u.Username, u.Password, u.Email)
	}
	fmt.Fprintf(w, `
Alice exists at both Contoso and Fabrikam with the same verified email: sign
in through either and the demo app shows the same internal subject.

Single logout: a sign-out anywhere reaches the demo app's open page within
a few seconds (it watches its own session).
  - "Sign out" in the demo app ends its session, the broker's and
    Contoso's: signing in again through Contoso asks for the password.
    (Fabrikam asks for it on every sign-in.)
  - Sign out at Contoso itself: open
      %s/logout
    and confirm. Contoso tells the broker (back-channel logout), and the
    broker tells the demo app.
  - Sign a person out everywhere with the broker's admin API (SUB is the
    subject the demo app shows):
      curl -H "Authorization: Bearer %s" %s/admin/subjects/SUB/sessions
      curl -X DELETE -H "Authorization: Bearer %s" %s/admin/subjects/SUB/sessions
    Back-channel logout deliveries: %s/metrics (fedbroker_backchannel_logout_total).
Press Ctrl-C to stop.
`, d.ContosoURL, d.AdminToken, d.AdminURL, d.AdminToken, d.AdminURL, d.AdminURL)
}

// randomKEK is a fresh key-encryption key: the demo's keys live in memory
// for one run.
func randomKEK() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

func parse(yml string) (*config.Config, error) {
	return config.Parse([]byte(yml), func(string) string { return "" })
}

func bcryptHash(pw string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		panic(err) // only fails for passwords over 72 bytes
	}
	return string(h)
}

// contosoGroups are a Contoso account's groups in its directory. Bob's
// are named the way Contoso's sales department names them, without the
// "contoso-" prefix the broker's mapping keeps (see the contoso mapping):
// his token has no groups, and the admin console's mapping workbench shows
// why.
func contosoGroups(username string) string {
	if username == "bob" {
		return "[sales, emea-partners]"
	}
	return "[contoso-staff]"
}

func contosoYAML(contosoURL, brokerURL string) string {
	secretHash, err := config.HashSecret(contosoSecret)
	if err != nil {
		panic(err)
	}
	var users strings.Builder
	for _, u := range Users {
		if !strings.HasPrefix(u.IdP, "Contoso") {
			continue
		}
		fmt.Fprintf(&users, "        - username: %s\n          password_hash: %q\n          email: %s\n          name: %s (Contoso)\n          groups: %s\n",
			u.Username, bcryptHash(u.Password), u.Email, strings.ToUpper(u.Username[:1])+u.Username[1:], contosoGroups(u.Username))
	}
	return fmt.Sprintf(`issuer: %s
storage: {type: memory}
signing: {key_encryption_key: %s}
connectors:
  - id: contoso-directory
    type: local
    name: Contoso directory
    config:
      users:
%sclients:
  - id: fedbroker
    name: Federation broker
    secret_hash: %q
    redirect_uris: [%[5]s/callback/contoso]
    # Single logout with the broker: the broker's sign-out sends the browser
    # here (end_session_endpoint) and back to its /logout/contoso, and a
    # sign-out at Contoso tells the broker there (back-channel logout).
    post_logout_redirect_uris: [%[5]s/logout/contoso]
    backchannel_logout_uri: %[5]s/logout/contoso
    backchannel_logout_session_required: true
`, contosoURL, randomKEK(), users.String(), secretHash, brokerURL)
}

func brokerYAML(brokerURL, contosoURL, fabrikamMetadata, appURL string) string {
	return fmt.Sprintf(`issuer: %s
storage: {type: memory}
signing: {key_encryption_key: %s}
connectors:
  - id: contoso
    type: oidc
    name: Contoso (OpenID Connect)
    mapping: contoso
    config:
      issuer: %s
      client_id: fedbroker
      client_secret: %s
      # Contoso releases groups only for the groups scope.
      scopes: [openid, profile, email, groups]
      # No prompt: the default (consent, with offline_access) keeps single
      # sign-on at Contoso. Signing out through the broker ends Contoso's
      # session too (upstream_logout, on by default), so the next sign-in
      # asks for the password there.
  - id: fabrikam
    type: saml
    name: Fabrikam (SAML)
    mapping: fabrikam
    config:
      idp_metadata_xml: %q
mappings:
  contoso:
    claims:
      email: claims.?email
      email_verified: claims.?email_verified
      name: claims.?name
      preferred_username: claims.?preferred_username
      # Only Contoso's own groups ("contoso-..."): the rest of its directory's
      # groups mean nothing here. (Bob's are all dropped: see contosoGroups.)
      groups: 'claims.?groups.orValue([]).filter(g, string(g).startsWith("contoso-"))'
    link: 'claims.email_verified == true ? string(claims.email).lowerAscii() : ""'
  fabrikam:
    claims:
      email: 'claims[?"urn:oid:0.9.2342.19200300.100.1.3"][?0]'
      email_verified: 'true'
      name: 'claims[?"urn:oid:2.5.4.3"][?0]'
      preferred_username: 'claims[?"urn:oid:0.9.2342.19200300.100.1.1"][?0]'
      groups: 'claims[?"urn:oid:1.3.6.1.4.1.5923.1.1.1.1"]'
    # Fabrikam's directory is authoritative for its users' email addresses.
    link: 'string(claims["urn:oid:0.9.2342.19200300.100.1.3"][0]).lowerAscii()'
links:
  groups: [[contoso, fabrikam]]
clients:
  - id: demo-app
    name: Demo app
    public: true
    redirect_uris: [%[6]s/callback]
    post_logout_redirect_uris: [%[6]s/]
    # Told by the broker when a session Alice signed in with ends
    # (OpenID Connect Back-Channel Logout), with the session's sid.
    backchannel_logout_uri: %[6]s/backchannel-logout
    backchannel_logout_session_required: true
    audiences: [demo-api]
`, brokerURL, randomKEK(), contosoURL, contosoSecret, fabrikamMetadata, appURL)
}

// newFabrikam builds crewjam/saml's IdP with the demo users.
func newFabrikam(baseURL string) (*samlidp.Server, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "Fabrikam demo IdP"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	store := &samlidp.MemoryStore{}
	idp, err := samlidp.New(samlidp.Options{URL: *u, Key: key, Certificate: cert, Store: store, Logger: stdlog.New(io.Discard, "", 0), LoginFormTemplate: fabrikamLoginPage})
	if err != nil {
		return nil, fmt.Errorf("demo: fabrikam: %w", err)
	}
	idp.IDP.SessionProvider = fabrikamSessions{idp}
	for _, du := range Users {
		if !strings.HasPrefix(du.IdP, "Fabrikam") {
			continue
		}
		hash, err := bcrypt.GenerateFromPassword([]byte(du.Password), bcrypt.DefaultCost)
		if err != nil {
			return nil, err
		}
		user := samlidp.User{
			Name:           du.Username,
			HashedPassword: hash,
			Email:          du.Email,
			Groups:         []string{"fabrikam-staff"},
			GivenName:      strings.ToUpper(du.Username[:1]) + du.Username[1:],
			Surname:        "(Fabrikam)",
			CommonName:     strings.ToUpper(du.Username[:1]) + du.Username[1:] + " (Fabrikam)",
		}
		if err := store.Put("/users/"+du.Username, &user); err != nil {
			return nil, err
		}
	}
	return idp, nil
}

// fetch GETs a small document.
func fetch(ctx context.Context, client *http.Client, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return b, nil
}

// registerSP copies the broker's SP metadata into Fabrikam.
func registerSP(ctx context.Context, client *http.Client, metadataURL, serviceURL string) error {
	md, err := fetch(ctx, client, metadataURL)
	if err != nil {
		return fmt.Errorf("demo: fetch SP metadata: %w", err)
	}
	put, err := http.NewRequestWithContext(ctx, http.MethodPut, serviceURL, strings.NewReader(string(md)))
	if err != nil {
		return err
	}
	resp, err := client.Do(put)
	if err != nil {
		return fmt.Errorf("demo: register SP at fabrikam: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("demo: register SP at fabrikam: %s", resp.Status)
	}
	return nil
}
