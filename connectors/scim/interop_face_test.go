package scim_test

// Interop against groupsync's own SCIM face (package scimface, kind scim_inbound): the
// shared read and write scenarios run with this connector as the face's client, so the
// face is held to what the connector expects of any SCIM service provider.

import (
	"net/http/httptest"
	"testing"

	"github.com/groupsync/groupsync/scimface"
	"github.com/groupsync/groupsync/state/statetest"
)

func facePeer(t *testing.T) peer {
	t.Helper()
	const token = "face-peer-token-0123456789abcdef0123456789"
	srv, err := scimface.New(scimface.Options{Store: statetest.Store(t),
		Clients: []scimface.Client{{System: "idp", Token: token, Rate: 1000, Burst: 1000}}, MaxResults: 2})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return peer{name: "groupsync-face", base: hs.URL + scimface.BasePath, token: token, client: hs.Client()}
}

// TestInteropFaceReads: the shared read scenario (interop_test.go) against the face.
func TestInteropFaceReads(t *testing.T) { interopReads(t, facePeer(t)) }

// TestInteropFaceWrites: the shared write scenario against the face.
func TestInteropFaceWrites(t *testing.T) { interopWrites(t, facePeer(t)) }
