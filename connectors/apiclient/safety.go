package apiclient

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// HTTP safety (issue: real APIs). Credentials go only to the host they were configured
// for, over TLS unless the operator says otherwise, and no URL quoted in an error or a log
// carries a query string: queries hold emails (account search by email) and, in some APIs,
// tokens.

// CheckScheme refuses an http:// URL unless its host is loopback (the simulators, a local
// proxy) or insecure is set (allow_insecure_http).
func CheckScheme(u *url.URL, insecure bool) error {
	if u.Scheme != "http" || insecure || isLoopback(u.Hostname()) {
		return nil
	}
	return fmt.Errorf("base url %s is plain http: credentials would cross the network in clear text; use https, "+
		"or set allow_insecure_http: true for a host you trust", RedactURL(u.String()))
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// errRedirectRefused marks a redirect the client would not follow.
var errRedirectRefused = errors.New("redirect refused")

// sameOrigin is a CheckRedirect that follows a redirect only to the configured scheme and
// host (a path moved on the same API); one to another host, a subdomain, or down to http
// would carry the credentials (net/http forwards Authorization to subdomains) and is
// refused, the response then failing the call.
func sameOrigin(base *url.URL) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return fmt.Errorf("%w: more than 5 redirects", errRedirectRefused)
		}
		if req.URL.Scheme != base.Scheme || !strings.EqualFold(req.URL.Host, base.Host) {
			return fmt.Errorf("%w: to %s://%s, which is not the configured %s://%s", errRedirectRefused,
				req.URL.Scheme, req.URL.Host, base.Scheme, base.Host)
		}
		return nil
	}
}

// RedactURL returns raw with its query string and user info replaced, for errors and logs.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if i := strings.IndexAny(raw, "?#"); i >= 0 {
			return raw[:i] + "?REDACTED"
		}
		return raw
	}
	if u.User != nil {
		u.User = url.User("REDACTED")
	}
	if u.RawQuery != "" {
		u.RawQuery = "REDACTED"
	}
	u.Fragment = ""
	return u.String()
}
