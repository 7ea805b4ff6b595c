package syncengine

import (
	"net/http"

	"github.com/groupsync/groupsync/state"
)

// FencedTransport wraps base (nil: http.DefaultTransport) so that a request made under a
// run's context is refused, before anything is sent, once the run's fence is lost: its
// lease was taken over or its local deadline passed. It is the last check before the wire,
// after rate-limit waits and retries, so a replica resumed after a pause (GC, VM freeze,
// SIGSTOP) past its lease sends nothing more to any system. Requests without a fence in
// their context pass unchanged.
func FencedTransport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return fencedTransport{base: base}
}

type fencedTransport struct{ base http.RoundTripper }

func (t fencedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if f := state.FenceFrom(r.Context()); f != nil {
		if err := f.Check(); err != nil {
			if r.Body != nil {
				_ = r.Body.Close() // RoundTrip must close the body, even on error
			}
			return nil, err
		}
	}
	return t.base.RoundTrip(r)
}
