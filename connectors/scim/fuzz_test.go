package scim

import (
	"encoding/json"
	"testing"
)

// The fuzz targets feed arbitrary bytes to every response decoder: none may panic, a
// decoded record always has an id and valid raw JSON, and an error message never carries
// an email address. The seeds are shapes real providers send (make test runs them).

var groupSeeds = []string{
	`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"id":"e9e30dba","displayName":"Tour Guides","members":[{"value":"2819c223","$ref":"https://example.com/v2/Users/2819c223","display":"Babs Jensen","type":"User"},{"value":"902c246b","type":"Group"}],"meta":{"resourceType":"Group","created":"2010-01-23T04:56:22Z","lastModified":"2011-05-13T04:42:34Z","version":"W/\"3694e05e9dff592\"","location":"https://example.com/v2/Groups/e9e30dba"}}`,
	`{"id":12345678901234567890,"displayName":"numeric id","members":[{"value":7}]}`,
	`{"id":"x","displayName":""}`,
	`{"id":"x","displayName":"dup","members":[{"value":"a"},{"value":"a"}]}`,
	`{"id":"x"}`, `null`, `[]`, `{"id":"x","displayName":"cut`,
}

func FuzzDecodeGroup(f *testing.F) {
	for _, s := range groupSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g, ms, _, err := decodeGroup(data)
		if err != nil {
			return
		}
		if g.ID == "" || !json.Valid(g.Raw) || g.Hash == "" {
			t.Fatalf("decoded group without id, raw or hash: %+v", g)
		}
		for _, m := range ms {
			if m.AccountID == "" || m.GroupID != g.ID || m.Type == "" {
				t.Fatalf("bad member %+v", m)
			}
		}
	})
}

func FuzzDecodeUser(f *testing.F) {
	for _, s := range []string{
		`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"2819c223","userName":"bjensen@example.com","name":{"formatted":"Ms. Barbara J Jensen III","familyName":"Jensen","givenName":"Barbara"},"emails":[{"value":"bjensen@example.com","type":"work","primary":true},{"value":"babs@jensen.org","type":"home"}],"active":true,"meta":{"version":"W/\"a330bc54f0671c9\""}}`,
		`{"id":"1","userName":"Alice@Example.COM","active":"False"}`,
		`{"id":"1","userName":"alice","emails":[{"value":"a@x.org","primary":"true"}]}`,
		`{"id":"1","active":null}`, `{"userName":"no id"}`, `{"id":1.5}`, `"str"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := decodeUser(data)
		if err != nil {
			return
		}
		if a.ID == "" || !json.Valid(a.Raw) || a.Hash == "" || (a.State != "active" && a.State != "inactive") {
			t.Fatalf("decoded account without id, raw, hash or state: %+v", a)
		}
	})
}

func FuzzDecodeList(f *testing.F) {
	for _, s := range []string{
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":2,"itemsPerPage":1,"startIndex":1,"Resources":[{"id":"a","displayName":"A"}]}`,
		`{"totalResults":"3","Resources":null}`, `{"Resources":[]}`, `{"totalResults":-1}`, `{"totalResults":1e3}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := decodeList(data)
		if err == nil && (l.TotalResults == nil || *l.TotalResults < 0) {
			t.Fatalf("list accepted without a usable totalResults: %+v", l)
		}
	})
}

func FuzzDecodeDiscovery(f *testing.F) {
	for _, s := range []string{
		`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],"patch":{"supported":true},"bulk":{"supported":false},"filter":{"supported":true,"maxResults":200},"etag":{"supported":"true"}}`,
		`{"Resources":[{"id":"User","name":"User","endpoint":"/Users","schema":"urn:ietf:params:scim:schemas:core:2.0:User"},{"name":"Group","endpoint":"Groups/"}]}`,
		`[{"id":"urn:ietf:params:scim:schemas:core:2.0:Group","attributes":[{"name":"members","mutability":"readOnly"}]}]`,
		`{"filter":{"maxResults":"x"}}`, `{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if feat, err := decodeSPC(data); err == nil && feat.maxResults < 0 {
			t.Fatalf("negative maxResults: %+v", feat)
		}
		if users, groups, err := decodeResourceTypes(data); err == nil {
			for _, ep := range []string{users, groups} {
				if ep != "" && ep[0] != '/' {
					t.Fatalf("endpoint %q is not a path", ep)
				}
			}
		}
		_, _, _ = decodeSchemas(data)
	})
}

func FuzzDecodeError(f *testing.F) {
	for _, s := range []string{
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"scimType":"uniqueness","detail":"userName alice@example.com is taken","status":"409"}`,
		`{"detail":"x","status":400}`, `<html>bad gateway for bob@example.org</html>`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		info := decodeError(400, nil, data)
		if emailRe.MatchString(info.Message) {
			t.Fatalf("error message keeps an email: %q", info.Message)
		}
	})
}
