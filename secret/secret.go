// Package secret holds credentials in a type that cannot leak by accident: every way of
// printing it (fmt, slog, JSON, YAML) shows a redaction marker, and the clear text is only
// reachable through Reveal, which is easy to grep for.
package secret

import (
	"encoding/json"
	"log/slog"
)

// Redacted is what a set secret prints as.
const Redacted = "[REDACTED]"

// Value is a secret string. The zero value is an unset secret.
type Value struct {
	v string
}

// New wraps a clear-text secret.
func New(s string) Value { return Value{v: s} }

// Reveal returns the clear text. Call it only where the secret leaves the process for the
// system it belongs to (an Authorization header, a JWT signature).
func (s Value) Reveal() string { return s.v }

// IsSet reports whether the secret holds a non-empty value.
func (s Value) IsSet() bool { return s.v != "" }

// String redacts the value so %v, %s and %+v never print it.
func (s Value) String() string {
	if s.v == "" {
		return ""
	}
	return Redacted
}

// GoString redacts the value for %#v.
func (s Value) GoString() string { return "secret.Value(" + s.String() + ")" }

// LogValue redacts the value in slog output.
func (s Value) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON redacts the value in JSON output.
func (s Value) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// MarshalText redacts the value in any text encoding (YAML, env dumps).
func (s Value) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// MarshalYAML redacts the value in YAML output (config show).
func (s Value) MarshalYAML() (any, error) { return s.String(), nil }

// UnmarshalText accepts the clear text (envconfig and YAML decoding).
func (s *Value) UnmarshalText(b []byte) error {
	s.v = string(b)
	return nil
}

// IsZero reports an unset secret; YAML's omitempty consults it.
func (s Value) IsZero() bool { return s.v == "" }
