package scimface

import (
	"bytes"
	"encoding/json"
	"strings"
)

// normalizePatch smooths what identity providers are documented to send that RFC 7644
// does not allow, before the library validates the body:
//
//   - Entra ID sends booleans as strings in PATCH values ("active": "False", with a path
//     or inside a path-less value map); they become JSON booleans.
//
// Op names in any case ("Replace", Entra ID) and an "id" inside Okta's path-less replace
// are handled by the library itself. A body that is not a PatchOp is passed on untouched,
// for the library to refuse.
func normalizePatch(body []byte) []byte {
	var req map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if dec.Decode(&req) != nil {
		return body
	}
	ops, _ := req[key(req, "Operations")].([]any)
	changed := false
	for _, o := range ops {
		op, _ := o.(map[string]any)
		if op == nil {
			continue
		}
		vk := key(op, "value")
		path, _ := op[key(op, "path")].(string)
		if boolPath(path) {
			if b, ok := boolString(op[vk]); ok {
				op[vk], changed = b, true
			}
			continue
		}
		if m, ok := op[vk].(map[string]any); ok && path == "" {
			for k, v := range m {
				if b, ok := boolString(v); ok && boolPath(k) {
					m[k], changed = b, true
				}
			}
		}
	}
	if !changed {
		return body
	}
	out, err := json.Marshal(req)
	if err != nil {
		return body
	}
	return out
}

// boolPath reports whether a PATCH path names a boolean attribute of the core schemas.
func boolPath(path string) bool { return strings.EqualFold(strings.TrimSpace(path), "active") }

func boolString(v any) (bool, bool) {
	s, ok := v.(string)
	if !ok {
		return false, false
	}
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}
