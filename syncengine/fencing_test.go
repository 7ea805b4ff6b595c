package syncengine_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"sync/atomic"
	"testing"
	"time"

	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/syncengine"
)

// TestFencedTransportChecksAtTheWire: a request that passed the fence check on its way
// into the transport, and whose fence is lost before its bytes leave (the process froze in
// between, as with SIGSTOP past the lease), writes nothing: the connection checks the fence
// again on write. A request with a live fence, and one with none, go through.
func TestFencedTransportChecksAtTheWire(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	client := &http.Client{Transport: syncengine.FencedTransport(nil)}
	fence := func() *state.Fence {
		return state.NewFence(state.Lease{Flow: "f", Term: 1}, time.Now().Add(time.Minute), time.Minute, time.Now)
	}
	get := func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get(context.Background()); err != nil || hits.Load() != 1 {
		t.Fatalf("unfenced request: %v (hits %d)", err, hits.Load())
	}
	if err := get(state.WithFence(context.Background(), fence())); err != nil || hits.Load() != 2 {
		t.Fatalf("request with a live fence: %v (hits %d)", err, hits.Load())
	}
	// Lost after the entry check, once the request has its connection: nothing is written.
	f := fence()
	lose := &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { f.Lose(errors.New("taken over meanwhile")) }}
	ctx := httptrace.WithClientTrace(state.WithFence(context.Background(), f), lose)
	if err := get(ctx); err == nil {
		t.Fatal("a request whose fence was lost before the write went through")
	}
	if n := hits.Load(); n != 2 {
		t.Fatalf("the server saw %d requests, want 2: the fenced one must not reach it", n)
	}
}
