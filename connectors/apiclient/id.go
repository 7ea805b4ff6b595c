package apiclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// ID is a system's object id decoded byte-exact from either a JSON string or a JSON number.
// Numbers keep their literal text (no float64 round trip), so ids above 2^53 survive.
// null and other JSON types are refused: an object without a usable id cannot be mirrored.
type ID string

// UnmarshalJSON implements json.Unmarshaler.
func (id *ID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || bytes.Equal(b, []byte("null")):
		return errors.New("id is null")
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("id: %w", err)
		}
		if s == "" {
			return errors.New("id is empty")
		}
		*id = ID(s)
		return nil
	case b[0] == '-' || (b[0] >= '0' && b[0] <= '9'):
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("id: %w", err)
		}
		if bytes.ContainsAny(b, ".eE") {
			return fmt.Errorf("id %s is not an integer", b)
		}
		*id = ID(n.String())
		return nil
	}
	return fmt.Errorf("id must be a string or an integer, got %.20s", b)
}

// String returns the id text.
func (id ID) String() string { return string(id) }
