package connectors

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
)

// NormalizeEmail is the account-matching key: trimmed and lower-cased.
func NormalizeEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// NormalizeName is the group-adoption key: trimmed, inner whitespace collapsed, lower-cased.
func NormalizeName(s string) string { return strings.ToLower(strings.Join(strings.Fields(s), " ")) }

// ContentHash hashes a JSON object canonically (keys sorted, numbers kept as written), leaving
// out the top-level keys in exclude. Connectors use it so caller-relative fields (a
// "subscribed" flag, a "can_join" flag) do not make an unchanged record look changed.
func ContentHash(raw json.RawMessage, exclude ...string) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return "", fmt.Errorf("content hash: %w", err)
	}
	for _, k := range exclude {
		delete(obj, k)
	}
	// encoding/json writes map keys sorted, and json.Number verbatim, so the bytes are
	// canonical for equal content.
	canon, err := json.Marshal(obj)
	if err != nil {
		return "", fmt.Errorf("content hash: %w", err)
	}
	sum := sha256.Sum256(canon)
	return hex.EncodeToString(sum[:16]), nil
}
