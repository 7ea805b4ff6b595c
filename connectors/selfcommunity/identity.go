package selfcommunity

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sync"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/apiclient"
)

// Identity. The public User schema has carried no `email` since late 2022, and member lists
// return trimmed users (id, username, real_name, ext_id, avatar). The one documented route
// to an email is the admin account search, `GET /api/v2/account/search/`, which takes
// exactly one of email, username, or ext_id with provider, and answers one User with
// `email` (docs/apireference/v2/account/search_an_account.md). So an account's key is:
//
//   - match_by: email (the default): its email, from the account search by username. The
//     username comes from the member listing that named the account (usernameHints), else
//     from `GET /api/v2/user/{id}/`. One or two requests per account, Concurrency at a time
//     under the rate limit; the engine asks only for the accounts accounts.max_age says are
//     stale (state.StaleAccountIDs), so the mirror is the cache and this is the refresh.
//   - match_by: ext_id: connectors.ExtIDKey of its ext_id, which every User object and
//     every member entry carries: no search needed to read, and the search by ext_id and
//     provider (options.ext_id_provider) finds a target account.

// maxUsernameHints bounds the username hints (about 100 bytes each): past it, an account
// costs one more request, never a wrong answer.
const maxUsernameHints = 1 << 18

// usernameHints remembers the usernames member listings showed, so resolving an account's
// email skips `GET /user/{id}/`. A hint is never trusted for identity: the search's answer
// must carry the id asked for, else the connector reads the user by id.
type usernameHints struct {
	mu sync.Mutex
	m  map[string]string
}

func (h *usernameHints) get(id string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.m[id]
}

func (h *usernameHints) put(id, username string) {
	if username == "" {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[string]string{}
	}
	if _, ok := h.m[id]; ok || len(h.m) < maxUsernameHints {
		h.m[id] = username
	}
}

func (c *conn) rememberUsername(id, username string) { c.usernames.put(id, username) }

// ListAccounts resolves accounts by id (see Identity above); ids that no longer exist are
// skipped. With ids nil it lists `GET /api/v2/user/` when matching by ext_id; matching by
// email it returns ErrUnsupported: no listing carries emails, and resolving a whole
// community one search per user is not something to do by accident.
func (c *conn) ListAccounts(ctx context.Context, ids []string, fn func([]connectors.Account) error) (connectors.Listing, error) {
	if ids == nil {
		if c.matchBy != connectors.MatchByExtID {
			return connectors.Listing{}, &connectors.Error{System: c.name, Op: epUsersList, Class: connectors.ErrUnsupported,
				Message: "no user listing carries emails (only the admin account search does): accounts are resolved by id"}
		}
		return c.paginate(ctx, epUsersList, "/api/v2/user/", nil, func(rs []json.RawMessage) error {
			as := make([]connectors.Account, 0, len(rs))
			for _, r := range rs {
				a, _, err := decodeAccount(r, c.matchBy, false)
				if err != nil {
					return c.decodeErr(epUsersList, err)
				}
				as = append(as, a)
			}
			return fn(as)
		})
	}
	for _, id := range ids {
		if err := c.checkID(epUserGet, "user", id); err != nil {
			return connectors.Listing{}, err
		}
	}
	return c.getAccounts(ctx, ids, fn)
}

// getAccounts fetches ids concurrently and hands them to fn in batches of pageSize from one
// goroutine (fn need not be safe for concurrent use).
func (c *conn) getAccounts(ctx context.Context, ids []string, fn func([]connectors.Account) error) (connectors.Listing, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b := &accountBatches{fn: fn, size: c.pageSize, batch: make([]connectors.Account, 0, c.pageSize)}
	done, err := b.drain(c.startAccountFetches(ctx, ids), cancel)
	if err != nil {
		return b.l, err
	}
	if err := ctx.Err(); err != nil || done < len(ids) {
		return b.l, fmt.Errorf("%s: %s: %w", c.name, epUserGet, context.Cause(ctx))
	}
	if err := b.flush(); err != nil {
		return b.l, err
	}
	b.l.Complete = true
	return b.l, nil
}

// accountResult is one id's fetch: the account if found; a user that is gone is neither
// found nor an error.
type accountResult struct {
	acc   connectors.Account
	found bool
	err   error
}

// startAccountFetches starts up to c.concurrency workers resolving ids and returns their
// results, closed once every worker has stopped (all ids fetched, or ctx done).
func (c *conn) startAccountFetches(ctx context.Context, ids []string) <-chan accountResult {
	jobs := make(chan string)
	results := make(chan accountResult)
	var wg sync.WaitGroup
	for range min(c.concurrency, len(ids)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range jobs {
				a, err := c.getAccount(ctx, id)
				r := accountResult{acc: a, found: err == nil, err: err}
				if errors.Is(err, connectors.ErrNotFound) {
					r.err = nil
				}
				select {
				case results <- r:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() {
		defer close(jobs)
		for _, id := range ids {
			select {
			case jobs <- id:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		wg.Wait()
		close(results)
	}()
	return results
}

// accountBatches collects found accounts into batches of size for fn, counting the
// listing's pages and items as they go.
type accountBatches struct {
	fn    func([]connectors.Account) error
	size  int
	batch []connectors.Account
	l     connectors.Listing
}

// drain reads every result, so the workers can exit, and batches the found accounts until
// the first error, which cancels the fetches. It returns how many results it took before
// that error, and the error.
func (b *accountBatches) drain(results <-chan accountResult, cancel context.CancelFunc) (int, error) {
	var firstErr error
	done := 0
	for r := range results {
		if firstErr != nil {
			continue // drain so the workers can exit
		}
		done++
		switch {
		case r.err != nil:
			firstErr = r.err
			cancel()
		case r.found:
			if err := b.add(r.acc); err != nil {
				firstErr = err
				cancel()
			}
		}
	}
	return done, firstErr
}

// add queues a and hands the batch to fn once it is full.
func (b *accountBatches) add(a connectors.Account) error {
	b.batch = append(b.batch, a)
	if len(b.batch) >= b.size {
		return b.flush()
	}
	return nil
}

// flush hands the queued accounts, if any, to fn. Each batch is a new slice, so fn may
// keep the one it was given.
func (b *accountBatches) flush() error {
	if len(b.batch) == 0 {
		return nil
	}
	b.l.Pages++
	b.l.Items += len(b.batch)
	err := b.fn(b.batch)
	b.batch = make([]connectors.Account, 0, b.size)
	return err
}

// getAccount resolves one account by id; ErrNotFound when the user is gone.
func (c *conn) getAccount(ctx context.Context, id string) (connectors.Account, error) {
	if c.matchBy == connectors.MatchByExtID {
		a, _, err := c.getUser(ctx, id)
		return a, err
	}
	byID := func(a connectors.Account, _ string) bool { return a.ID == id }
	if username := c.usernames.get(id); username != "" {
		a, err := c.searchAccount(ctx, url.Values{"username": {username}}, byID)
		if !errors.Is(err, connectors.ErrNotFound) {
			return a, err
		}
		// Not found, or another user now holds the name: read the user by id.
	}
	a, username, err := c.getUser(ctx, id)
	if err != nil {
		return connectors.Account{}, err
	}
	c.rememberUsername(id, username)
	found, err := c.searchAccount(ctx, url.Values{"username": {username}}, byID)
	if !errors.Is(err, connectors.ErrNotFound) {
		return found, err
	}
	// The user exists but the search does not find it by its own username: its email stays
	// unknown (the engine reports its memberships unresolved) rather than guessed.
	c.log.Warn("account search does not find a user by its username: its email is unknown",
		"user_id", id, "endpoint", epAccountSearch)
	return a, nil
}

// getUser reads `GET /api/v2/user/{id}/`, with the user's username.
func (c *conn) getUser(ctx context.Context, id string) (connectors.Account, string, error) {
	body, _, err := c.api.DoRaw(ctx, apiclient.Request{Method: "GET", Path: "/api/v2/user/" + id + "/", Endpoint: epUserGet})
	if err != nil {
		return connectors.Account{}, "", err
	}
	a, username, err := decodeAccount(body, c.matchBy, false)
	if err != nil {
		return connectors.Account{}, "", c.decodeErr(epUserGet, err)
	}
	return a, username, nil
}

// FindAccountByEmail finds an account by its identity key with the admin account search:
// by email (each spelling of the key in turn, connectors.EmailForms), or, matching by
// ext_id, by ext_id and provider. A key of the other kind matches nothing here.
func (c *conn) FindAccountByEmail(ctx context.Context, key string) (connectors.Account, error) {
	key = connectors.NormalizeEmail(key)
	extID, isExt := connectors.ExtIDOfKey(key)
	switch {
	case key == "":
		return connectors.Account{}, c.notFound("empty key")
	case c.matchBy == connectors.MatchByExtID && !isExt:
		return connectors.Account{}, c.notFound("this system matches accounts by ext_id, not by email")
	case c.matchBy == connectors.MatchByExtID:
		return c.searchAccount(ctx, url.Values{"ext_id": {extID}, "provider": {c.provider}}, byKey(key))
	case isExt:
		return connectors.Account{}, c.notFound("this system matches accounts by email, not by ext_id")
	}
	// The search takes one address: each spelling of the key in turn.
	var err error
	for _, form := range connectors.EmailForms(key) {
		var a connectors.Account
		if a, err = c.searchAccount(ctx, url.Values{"email": {form}}, byKey(key)); !errors.Is(err, connectors.ErrNotFound) {
			return a, err
		}
	}
	return connectors.Account{}, err
}

// byKey accepts the account whose identity key is key: a server matching more loosely
// than the normalizer (or another spelling's account) is not this key's.
func byKey(key string) func(connectors.Account, string) bool {
	return func(a connectors.Account, _ string) bool { return a.Email == key }
}

func (c *conn) notFound(msg string) error {
	return &connectors.Error{System: c.name, Op: epAccountSearch, Class: connectors.ErrNotFound, Message: msg}
}

// searchAccount asks the admin account search with one parameter (or the ext_id and
// provider pair) and returns the account it answers if want accepts it (want gets the
// account and its username), else ErrNotFound. The docs answer one User or 404; a list
// answer (envelope or bare array) is read too, taking the entry want accepts. A 403 means
// the token's user is not an admin, which the error says: no admin, no emails.
func (c *conn) searchAccount(ctx context.Context, q url.Values, want func(connectors.Account, string) bool) (connectors.Account, error) {
	body, _, err := c.api.DoRaw(ctx, apiclient.Request{Method: "GET", Path: "/api/v2/account/search/",
		Query: q, Endpoint: epAccountSearch})
	if err != nil {
		var ce *connectors.Error
		if errors.As(err, &ce) && ce.Status == 403 {
			return connectors.Account{}, fmt.Errorf("%w (the account search is admin-only: the token's user must be a community admin)", err)
		}
		return connectors.Account{}, err
	}
	raws := []json.RawMessage{bytes.TrimSpace(body)}
	if !isSingleObject(raws[0]) {
		p, err := decodePage(body)
		if err != nil {
			return connectors.Account{}, c.decodeErr(epAccountSearch, err)
		}
		raws = p.Results
	}
	for _, raw := range raws {
		a, username, err := decodeAccount(raw, c.matchBy, true)
		if err != nil {
			return connectors.Account{}, c.decodeErr(epAccountSearch, err)
		}
		if want(a, username) {
			return a, nil
		}
	}
	return connectors.Account{}, c.notFound("no account matches the search")
}

// isSingleObject reports whether body is one JSON object rather than a DRF page envelope.
func isSingleObject(body []byte) bool {
	if len(body) == 0 || body[0] != '{' {
		return false
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return true // let the object decoder name the problem
	}
	_, paged := top["results"]
	return !paged
}
