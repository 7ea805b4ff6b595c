package airtable

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors"
)

// The fuzz targets feed arbitrary bodies to every response decoder: they must never panic,
// and what they accept must be usable (ids present). Seeds: testdata/fuzz/<FuzzName>/.

func FuzzDecodeEnterprise(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		e, err := decodeEnterprise(body)
		if err != nil {
			return
		}
		for _, id := range e.GroupIDs {
			if id == "" {
				t.Fatal("accepted an empty group id")
			}
		}
	})
}

func FuzzDecodeMetaGroup(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		g, ms, err := decodeMetaGroup(body)
		if err != nil {
			return
		}
		if g.ID == "" || g.Hash == "" {
			t.Fatalf("accepted group without id or hash: %+v", g)
		}
		for _, m := range ms {
			if m.AccountID == "" || m.GroupID != g.ID {
				t.Fatalf("accepted member %+v", m)
			}
		}
	})
}

func FuzzDecodeUsers(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		accs, err := decodeUsers(body)
		if err != nil {
			return
		}
		for _, a := range accs {
			if a.ID == "" || a.Email != connectors.NormalizeEmail(a.Email) {
				t.Fatalf("accepted account %+v", a)
			}
		}
	})
}

func FuzzDecodeSCIMGroup(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		if g, err := decodeSCIMGroup(body); err == nil && g.ID == "" {
			t.Fatal("accepted a SCIM group without id")
		}
	})
}

func FuzzDecodeSCIMGroupList(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		gs, err := decodeSCIMGroupList(body)
		if err != nil {
			return
		}
		for _, g := range gs {
			if g.ID == "" {
				t.Fatal("accepted a SCIM group without id")
			}
		}
	})
}

func FuzzDecodeError(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, status := range []int{400, 404, 429} {
			info := decodeError(status, http.Header{"Authorization": {"Bearer secret-canary"}}, body)
			if strings.Contains(info.Type+info.Message, "secret-canary") {
				t.Fatal("request header leaked into the error")
			}
		}
	})
}

func TestDecodeMetaGroupDocExample(t *testing.T) {
	// The get-user-group example, with its malformed updatedTime ("…35:000Z").
	body := `{"createdTime":"2021-06-02T07:37:19.000Z","enterpriseAccountId":"entUBq2RGdihxl3vU","id":"ugp1mKGb3KXUyQfOZ",
	"mappedUserLicenseType":"editor","members":[
	{"createdTime":"2021-06-02T07:37:19.000Z","email":"Foo@Bar.com","firstName":"Jane","lastName":"Doe","role":"member","userId":"usrL2PNC5o3H4lBEi"},
	{"createdTime":"2021-06-02T07:37:19.000Z","email":"foo@bam.com","firstName":null,"lastName":"Hay","role":"manager","userId":"usrsOEchC9xuwRgKk"},
	{"createdTime":"2021-06-02T07:37:19.000Z","email":"big@bam.com","firstName":"Big","lastName":"Id","role":"Member","userId":123456789012345678901234}],
	"name":"Group name","updatedTime":"2022-09-02T10:10:35:000Z"}`
	g, ms, err := decodeMetaGroup([]byte(body))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if g.ID != "ugp1mKGb3KXUyQfOZ" || g.Name != "Group name" || g.CreatedAt.IsZero() || !g.ModifiedAt.IsZero() {
		t.Fatalf("group = %+v; want id, name, created time, and a zero modified time for the malformed one", g)
	}
	if len(ms) != 3 || ms[0].Email != "foo@bar.com" || ms[0].DisplayName != "Jane Doe" || ms[1].DisplayName != "Hay" || ms[1].Role != "manager" {
		t.Fatalf("members = %+v", ms)
	}
	if ms[2].AccountID != "123456789012345678901234" || ms[2].Role != "member" {
		t.Fatalf("member with an id above 2^53 = %+v; want the id byte-exact", ms[2])
	}
	if strings.Contains(string(g.Raw), "members") || !strings.Contains(string(g.Raw), `"mappedUserLicenseType":"editor"`) {
		t.Fatalf("raw = %s", g.Raw)
	}
	// A member change moves updatedTime; the group hash must not move with it.
	other := strings.Replace(body, `"2022-09-02T10:10:35:000Z"`, `"2023-01-01T00:00:00.000Z"`, 1)
	g2, _, err := decodeMetaGroup([]byte(other))
	if err != nil || g2.Hash != g.Hash {
		t.Fatalf("hash changed with updatedTime alone: %v", err)
	}
}

func TestDecodeRefusesIncompleteAnswers(t *testing.T) {
	for name, tc := range map[string]struct {
		body string
		dec  func([]byte) error
	}{
		"enterprise without groupIds": {`{"id":"entX","userIds":[]}`, func(b []byte) error { _, err := decodeEnterprise(b); return err }},
		"enterprise null groupIds":    {`{"id":"entX","groupIds":null,"userIds":[]}`, func(b []byte) error { _, err := decodeEnterprise(b); return err }},
		"group without members":       {`{"id":"ugpX","name":"n"}`, func(b []byte) error { _, _, err := decodeMetaGroup(b); return err }},
		"group member without id":     {`{"id":"ugpX","name":"n","members":[{"email":"a@b"}]}`, func(b []byte) error { _, _, err := decodeMetaGroup(b); return err }},
		"users missing":               {`{}`, func(b []byte) error { _, err := decodeUsers(b); return err }},
		"trailing data":               {`{"users":[]} {"users":[]}`, func(b []byte) error { _, err := decodeUsers(b); return err }},
	} {
		if err := tc.dec([]byte(tc.body)); err == nil {
			t.Errorf("%s: accepted %s", name, tc.body)
		}
	}
}

func TestDecodeErrorShapes(t *testing.T) {
	for _, tc := range []struct {
		status      int
		body        string
		typ, msg    string
		notFound    bool
		withoutBody bool
	}{
		{403, `{"error":{"type":"INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND","message":"Invalid permissions"}}`, "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND", "Invalid permissions", false, false},
		{404, `{"error":"NOT_FOUND"}`, "NOT_FOUND", "", false, false},
		{429, `{"errors":[{"error":"RATE_LIMIT_REACHED","message":"Rate limit exceeded. Please try again later"}]}`, "RATE_LIMIT_REACHED", "Rate limit exceeded. Please try again later", false, false},
		{400, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"detail":"invalid group ID","status":400}`, "", "invalid group ID", true, false},
		{400, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"detail":"invalid group ID","status":"400"}`, "", "invalid group ID", true, false},
		{400, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"detail":"invalid user ID","status":400,"scimType":"invalidValue"}`, "invalidValue", "invalid user ID", false, false},
		{409, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"detail":"in use","status":409,"scimType":"uniqueness"}`, "uniqueness", "in use", false, false},
		{502, `<html>Bad gateway</html>`, "", "<html>Bad gateway</html>", false, true},
	} {
		info := decodeError(tc.status, nil, []byte(tc.body))
		if info.Type != tc.typ || info.Message != tc.msg || errors.Is(info.Class, connectors.ErrNotFound) != tc.notFound {
			t.Errorf("decodeError(%d, %s) = %+v; want type %q message %q notFound %v", tc.status, tc.body, info, tc.typ, tc.msg, tc.notFound)
		}
	}
}

func TestCutBodyIsRetryable(t *testing.T) {
	c := &conn{name: "at"}
	_, err := decodeUsers([]byte(`{"users":[{"id":"usrA","email":"a@b.c"`))
	if !errors.Is(c.badBody(epUsers, err), connectors.ErrRetryable) {
		t.Fatalf("a body cut short = %v, want retryable", err)
	}
	_, err = decodeUsers([]byte(`{"users":[}`))
	if !errors.Is(c.badBody(epUsers, err), connectors.ErrPermanent) {
		t.Fatalf("a malformed body = %v, want permanent", err)
	}
}

func TestClockFollowsInjectedSleep(t *testing.T) {
	k := newClock(func(ctx context.Context, _ time.Duration) error { return ctx.Err() })
	start := k.now()
	until := start.Add(30 * time.Second)
	// The interleaving CI once hit: one waiter reads the clock, another waits the lockout
	// out, then the first sleeps the span it read. The clock must move once.
	first := k.now()
	second := k.now()
	if err := k.sleepFrom(t.Context(), second, until.Sub(second)); err != nil {
		t.Fatal(err)
	}
	if err := k.sleepFrom(t.Context(), first, until.Sub(first)); err != nil {
		t.Fatal(err)
	}
	if got := k.now().Sub(start); got < 30*time.Second || got > 31*time.Second {
		t.Fatalf("clock moved %s after two waits for one 30 s lockout, want about 30 s", got)
	}
	// Five workers wait out a second lockout the way apiclient does, in any order.
	until = k.now().Add(30 * time.Second)
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			for now := k.now(); until.After(now); now = k.now() {
				_ = k.sleepFrom(t.Context(), now, until.Sub(now))
			}
		})
	}
	wg.Wait()
	if got := k.now().Sub(start); got < 60*time.Second || got > 61*time.Second {
		t.Fatalf("clock moved %s while five workers waited out a second 30 s lockout, want about 60 s", got)
	}
	// A retry backoff is a span from its own start.
	before := k.now()
	if err := k.sleep(t.Context(), time.Second); err != nil {
		t.Fatal(err)
	}
	if got := k.now().Sub(before); got < time.Second || got > 2*time.Second {
		t.Fatalf("a 1 s backoff moved the clock %s", got)
	}
	if newClock(nil) != nil {
		t.Fatal("without an injected Sleep the client keeps its wall clock")
	}
}
