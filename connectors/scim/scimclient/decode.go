package scimclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/groupsync/groupsync/connectors/apiclient"
)

// groupJSON is what the client itself needs of a group: the writer decodes the rest of
// Body into its own model. meta is kept raw so a provider's odd meta (Airtable documents
// none) never fails a write; only its version is read, where it is a string.
type groupJSON struct {
	ID          apiclient.ID    `json:"id"`
	DisplayName *string         `json:"displayName"`
	Meta        json.RawMessage `json:"meta"`
}

// decodeGroup reads a group answer. An id is required: without it nothing can be
// written or found again.
func decodeGroup(body []byte) (Group, error) {
	var g groupJSON
	if err := apiclient.StrictDecode(body, &g); err != nil {
		return Group{}, fmt.Errorf("group: %w", err)
	}
	if g.ID == "" {
		return Group{}, errors.New("group: id missing")
	}
	var meta struct {
		Version string `json:"version"`
	}
	_ = json.Unmarshal(g.Meta, &meta) // a version that is not a string is no version
	return Group{ID: string(g.ID), DisplayName: g.DisplayName, Version: meta.Version, Body: body}, nil
}

// memberValues reads the member values of a group body; members without a value are
// nobody the client could have written, and are skipped.
func memberValues(body []byte) ([]string, error) {
	var g struct {
		Members []struct {
			Value apiclient.ID `json:"value"`
		} `json:"members"`
	}
	if err := apiclient.StrictDecode(body, &g); err != nil {
		return nil, fmt.Errorf("group members: %w", err)
	}
	out := make([]string, 0, len(g.Members))
	for _, m := range g.Members {
		if m.Value != "" {
			out = append(out, string(m.Value))
		}
	}
	return out, nil
}

// FilterString renders s as a SCIM filter string literal (RFC 7644 §3.4.2.2: a JSON
// string), escaping only what JSON requires (no \u003c for '<'), so names with quotes,
// backslashes and HTML reach the provider as written.
func FilterString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // encoding a string cannot fail
	return strings.TrimSuffix(b.String(), "\n")
}

// errorJSON is a SCIM error (RFC 7644 §3.12). Its status is not read: the HTTP status
// classifies, and providers write it as a string (the RFC), a number, or otherwise.
type errorJSON struct {
	Detail   string `json:"detail"`
	ScimType string `json:"scimType"`
}

// DecodeError reads a SCIM error body for apiclient.Config.DecodeError: scimType as the
// error's Type (the client branches on noTarget, a writer on uniqueness or
// invalidFilter), detail as its Message. A body that is not JSON (a proxy's HTML page) is
// kept as a short snippet. Headers are never read into the result (Retry-After is the
// HTTP client's). A provider with error shapes of its own reads them first and hands
// SCIM's here.
func DecodeError(_ int, _ http.Header, body []byte) apiclient.ErrorInfo {
	var e errorJSON
	if err := json.Unmarshal(body, &e); err != nil {
		return apiclient.ErrorInfo{Message: apiclient.Snippet(body)}
	}
	return apiclient.ErrorInfo{Type: e.ScimType, Message: e.Detail}
}
