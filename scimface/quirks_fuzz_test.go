package scimface

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzNormalizePatch: whatever a client sends, the quirk pass never panics, and it either
// hands the body on untouched or as valid JSON.
func FuzzNormalizePatch(f *testing.F) {
	f.Add([]byte(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"False"}]}`))
	f.Add([]byte(`{"Operations":[{"op":"replace","value":{"active":"True","displayName":"x"}}]}`))
	f.Add([]byte(`{"Operations":[null,1,"x",{"value":[]}]}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, body []byte) {
		out := normalizePatch(body)
		if bytes.Equal(out, body) {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("normalizePatch(%q) = %q: not JSON", body, out)
		}
	})
}
