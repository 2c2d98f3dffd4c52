package dpop

import "testing"

func TestNormalizeURL(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"https://rs.example.com/orders", "https://rs.example.com/orders"},
		{"HTTPS://RS.Example.com:443/orders", "https://rs.example.com/orders"},
		{"http://rs.example.com:80/orders", "http://rs.example.com/orders"},
		{"http://rs.example.com:443/orders", "http://rs.example.com:443/orders"},
		{"https://rs.example.com:80/orders", "https://rs.example.com:80/orders"},
		{"https://rs.example.com", "https://rs.example.com/"},
		{"https://rs.example.com:/x", "https://rs.example.com/x"},
		{"https://rs.example.com/a/./b/../c", "https://rs.example.com/a/c"},
		{"https://rs.example.com/a/..", "https://rs.example.com/"},
		{"https://rs.example.com/../../x", "https://rs.example.com/x"},
		{"https://rs.example.com/%7euser/%41", "https://rs.example.com/~user/A"},
		{"https://rs.example.com/a%2fb", "https://rs.example.com/a%2Fb"},
		{"https://rs.example.com/a%2Fb", "https://rs.example.com/a%2Fb"},
		{"https://rs.example.com/ORDERS", "https://rs.example.com/ORDERS"},
		{"https://rs.example.com/x?y=1#z", "https://rs.example.com/x"},
		{"https://[::1]:443/x", "https://[::1]/x"},
		{"https://[::1]:8443/x", "https://[::1]:8443/x"},
		{"https://127.0.0.1:5559/api", "https://127.0.0.1:5559/api"},
	} {
		got, err := normalizeURL(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("normalizeURL(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{
		"", "/x", "rs.example.com/x", "mailto:a@b", "https:opaque", "https://u:p@rs.example.com/",
		"https:///x", "https://rs.example.com/%", "https://rs.example.com/%g1", "ws://rs.example.com/",
		"https://rs.example.com:x/", "https://[::1/x", "https://rs.example.com/\x7f",
	} {
		if got, err := normalizeURL(bad); err == nil {
			t.Errorf("normalizeURL(%q) = %q, want an error", bad, got)
		}
	}
}
