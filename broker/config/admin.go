package config

import (
	"net"
	"os"
)

// MinAdminTokenLen is the shortest admin.token accepted: the token guards
// reloads and metrics, so it must not be guessable.
const MinAdminTokenLen = 16

func validateAdmin(c *Config, ps *problems) {
	a := c.Admin
	if a.Addr != "" {
		if _, _, err := net.SplitHostPort(a.Addr); err != nil {
			ps.Add("admin.addr", "want host:port: %v", err)
		}
	}
	if a.Token != "" && len(a.Token) < MinAdminTokenLen {
		ps.Add("admin.token", "must be at least %d characters (try: openssl rand -base64 32)", MinAdminTokenLen)
	}
	if d := a.Workbench.SamplesDir; d != "" {
		if fi, err := os.Stat(d); err != nil {
			ps.Add("admin.workbench.samples_dir", "cannot read the samples directory: %v", err)
		} else if !fi.IsDir() {
			ps.Add("admin.workbench.samples_dir", "%s is not a directory", d)
		}
	}
	if t := a.TLS; t != nil {
		if t.CertFile == "" {
			ps.Add("admin.tls.cert_file", "required when admin.tls is set")
		}
		if t.KeyFile == "" {
			ps.Add("admin.tls.key_file", "required when admin.tls is set")
		}
	}
}
