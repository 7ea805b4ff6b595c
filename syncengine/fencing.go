package syncengine

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"

	"github.com/groupsync/groupsync/state"
)

// FencedTransport wraps base (nil: a clone of http.DefaultTransport) so that a request made
// under a run's context sends nothing once the run's fence is lost: its lease was taken
// over or its local deadline passed. The fence is checked twice: before the request enters
// the transport (after rate-limit waits and retries), and again by the connection itself
// before every write of the request's bytes. The second check is what makes concurrent
// pushes safe: a request that passed the first check and was then frozen (GC, VM freeze,
// SIGSTOP) before its bytes left writes nothing when it resumes past its lease. Requests
// without a fence in their context pass unchanged.
//
// The write check needs to know which request a connection is writing, so connections
// carry one request at a time: HTTP/1.1 (a multiplexed HTTP/2 connection would mix the
// fences of several runs). With a base that is not an *http.Transport only the first check
// applies.
func FencedTransport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	if t, ok := base.(*http.Transport); ok {
		t = t.Clone()
		dial := t.DialContext
		if dial == nil {
			dial = (&net.Dialer{}).DialContext
		}
		t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &fencedConn{Conn: c}, nil
		}
		t.ForceAttemptHTTP2 = false
		t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // HTTP/1.1 only
		base = t
	}
	return fencedTransport{base: base}
}

type fencedTransport struct{ base http.RoundTripper }

func (t fencedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	f := state.FenceFrom(r.Context())
	if f != nil {
		if err := f.Check(); err != nil {
			if r.Body != nil {
				_ = r.Body.Close() // RoundTrip must close the body, even on error
			}
			return nil, err
		}
	}
	// Hand the request's fence to the connection it gets, before the transport writes.
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if fc := asFencedConn(info.Conn); fc != nil {
			fc.fence.Store(f)
		}
	}}
	return t.base.RoundTrip(r.WithContext(httptrace.WithClientTrace(r.Context(), trace)))
}

// fencedConn refuses to write for a request whose fence is lost.
type fencedConn struct {
	net.Conn
	fence atomic.Pointer[state.Fence]
}

func (c *fencedConn) Write(b []byte) (int, error) {
	if f := c.fence.Load(); f != nil {
		if err := f.Check(); err != nil {
			return 0, err
		}
	}
	return c.Conn.Write(b)
}

func asFencedConn(c net.Conn) *fencedConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	fc, _ := c.(*fencedConn)
	return fc
}
