package apiclient

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Snippet keeps a non-JSON error body readable in an error without flooding it (an HTML
// page from a proxy, say): trimmed, and cut at 200 bytes.
func Snippet(body []byte) string {
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// StrictDecode decodes one JSON value and refuses trailing data (json.Unmarshal does), so
// a body cut or concatenated by a proxy is not half-read as a valid answer. A value cut
// short is reported as io.ErrUnexpectedEOF, so the call is classed retryable.
func StrictDecode(b []byte, out any) error {
	if err := json.Unmarshal(b, out); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) && syn.Error() == "unexpected end of JSON input" {
			return fmt.Errorf("%w: %v", io.ErrUnexpectedEOF, err)
		}
		return err
	}
	return nil
}
