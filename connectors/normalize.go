package connectors

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// The one normalizer (DESIGN.md invariant 6). Emails and group names are turned into
// matching keys here, in Go, once, when a record enters the mirror (state applies it in its
// row conversion, so a connector cannot forget); the mirror stores the keys (accounts.email,
// memberships.email, groups.name_key) and SQL only compares them. Connectors that filter a
// target's search results by name use the same function, so the planner's adoption and the
// push's look-up agree on what "the same name" is.
//
// The rule, in order:
//
//  1. Every Unicode space (unicode.IsSpace: ASCII whitespace, U+0085, U+00A0 no-break
//     space, U+1680, U+2000–U+200A including U+2007 figure space, U+2028, U+2029, U+202F
//     narrow no-break space, U+205F, U+3000) becomes one ASCII space; runs collapse to one,
//     and leading and trailing spaces go.
//  2. The invisible zero-width characters that carry no meaning (U+200B zero-width space,
//     U+2060 word joiner, U+FEFF BOM, U+180E Mongolian vowel separator) are dropped. U+200C
//     and U+200D (ZWNJ, ZWJ) are kept: they change how Persian or an emoji sequence reads.
//  3. Unicode NFC (canonical composition): "é" typed as e + U+0301 equals the precomposed
//     U+00E9. Not NFKC: compatibility folding would also merge "ﬁ" with "fi" or "²" with
//     "2", which two groups may use to differ on purpose.
//  4. Lower-casing with strings.ToLower (Unicode simple case mapping, rune by rune), then
//     NFC again (a lower-cased rune may recompose). Not cases.Fold: full case folding maps
//     "ß" to "ss" and would make straße@ and strasse@ one mailbox, which mail servers do not
//     do; simple lower-casing is what Postgres' lower() and every target's case-insensitive
//     email search do for these characters, so the keys match what operators see.
//
// The result is idempotent (normalizing a key returns it unchanged) and always valid UTF-8.

// NormalizeEmail is the account-matching key of an email (see the rule above).
func NormalizeEmail(s string) string { return normalizeKey(s) }

// NormalizeName is the group-adoption key of a group name (see the rule above).
func NormalizeName(s string) string { return normalizeKey(s) }

// EmailForms returns the spellings of an email key that a system may hold and compare as
// bytes: the key itself (NFC) and, when it differs, its NFD form. An address a target
// stores decomposed ("e" + U+0301) is the same mailbox by the rule above, but a look-up
// sending only the NFC key would miss it and the member would be skipped as no_account;
// look-ups by email send every form (in one request where the API takes a list).
func EmailForms(key string) []string {
	if d := norm.NFD.String(key); d != key {
		return []string{key, d}
	}
	return []string{key}
}

// Identity keys. Accounts are matched across systems by one key per account, which the
// mirror stores where it stores emails (accounts.email, memberships.email, changes'
// account_email) and SQL only compares: for a system that matches by email (the default)
// the key is NormalizeEmail of the address; for a system that matches by ext_id
// (SelfCommunity's external id of SSO users, systems.<name>.match_by: ext_id) it is
// ExtIDKey of that id. The two kinds never equal each other (an ext_id key has no "@"
// and starts with "ext_id:"), which is why a flow's systems must all match the same way
// (config validation refuses a mix). A member with no key at all is the planner's to
// report, as "account:<id>" (state/plan.go), never a key of its own.

// MatchBy names which identity of an account is its key across systems.
type MatchBy string

// The ways to match accounts.
const (
	MatchByEmail MatchBy = "email"
	MatchByExtID MatchBy = "ext_id"
)

const extIDKeyPrefix = "ext_id:"

// ExtIDKey is the identity key of an account matched by its SSO external id: "ext_id:"
// and the id under the rule above (so it survives the ingest normalizer unchanged); "" for
// an empty id, which then matches nothing.
func ExtIDKey(extID string) string {
	k := normalizeKey(extID)
	if k == "" {
		return ""
	}
	return extIDKeyPrefix + k
}

// ExtIDOfKey returns the external id an ExtIDKey holds; ok is false for any other key
// (an email).
func ExtIDOfKey(key string) (extID string, ok bool) {
	extID, ok = strings.CutPrefix(key, extIDKeyPrefix)
	return extID, ok && extID != ""
}

func normalizeKey(s string) string {
	if k, ok := asciiKey(s); ok {
		return k
	}
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		switch {
		case zeroWidth(r):
		case unicode.IsSpace(r):
			space = b.Len() > 0
		default:
			if space {
				b.WriteByte(' ')
				space = false
			}
			b.WriteRune(r)
		}
	}
	return norm.NFC.String(strings.ToLower(norm.NFC.String(b.String())))
}

// asciiKey is normalizeKey for pure ASCII input (nearly every email), without allocating
// when s is already a key. ok is false when s holds a non-ASCII byte.
func asciiKey(s string) (string, bool) {
	clean := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= utf8.RuneSelf:
			return "", false
		case 'A' <= c && c <= 'Z', asciiSpace(c) && (c != ' ' || i == 0 || i == len(s)-1 || s[i+1] == ' '):
			clean = false
		}
	}
	if clean {
		return s, true
	}
	return strings.ToLower(strings.Join(strings.FieldsFunc(s, func(r rune) bool { return asciiSpace(byte(r)) }), " ")), true
}

func asciiSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func zeroWidth(r rune) bool { return r == 0x200B || r == 0x2060 || r == 0xFEFF || r == 0x180E }

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
