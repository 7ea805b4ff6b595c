package devrev

import (
	"encoding/json"
	"net/http"
	"testing"
)

// The fuzz targets feed arbitrary bytes to every response decoder: none may panic, and a
// decoded record always has an id and valid raw JSON. Seed corpora live in testdata/fuzz.

func FuzzDecodeGroupsPage(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		groups, _, err := decodeGroupsPage(data)
		if err != nil {
			return
		}
		for _, g := range groups {
			if g.ID == "" || !json.Valid(g.Raw) || g.Hash == "" {
				t.Fatalf("decoded group without id, raw or hash: %+v", g)
			}
		}
	})
}

func FuzzDecodeGroupEnvelope(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := decodeGroupEnvelope(data)
		if err == nil && (g.ID == "" || !json.Valid(g.Raw)) {
			t.Fatalf("decoded group without id or raw: %+v", g)
		}
	})
}

func FuzzDecodeMembersPage(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		members, _, err := decodeMembersPage("g", data)
		if err != nil {
			return
		}
		for _, m := range members {
			if m.AccountID == "" || m.Type == "" || m.GroupID != "g" {
				t.Fatalf("decoded member without id or type: %+v", m)
			}
		}
	})
}

func FuzzDecodeDevUsersPage(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		accounts, _, err := decodeDevUsersPage(data)
		if err != nil {
			return
		}
		for _, a := range accounts {
			if a.ID == "" || !json.Valid(a.Raw) {
				t.Fatalf("decoded account without id or raw: %+v", a)
			}
		}
	})
}

func FuzzDecodeUserEnvelope(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, key := range []string{"dev_user", "rev_user"} {
			a, err := decodeUserEnvelope(key, data)
			if err == nil && a.ID == "" {
				t.Fatalf("decoded %s without id: %+v", key, a)
			}
		}
	})
}

func FuzzDecodeError(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		info := decodeError(http.StatusTooManyRequests, http.Header{}, data)
		if info.RetryAfter < 0 {
			t.Fatalf("negative retry after %v", info.RetryAfter)
		}
	})
}
