package scimsim

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
)

// clause is one `attr eq "value"` comparison of a filter.
type clause struct {
	attr  string // lower-cased attribute path
	value string
}

// clauseRe is one comparison at the start of the rest of a filter: an attribute path, eq
// (operators and attribute names are case-insensitive, RFC 7644 §3.4.2.2), a JSON string.
var clauseRe = regexp.MustCompile(`(?i)^\s*([a-z][a-z0-9._$-]*)\s+eq\s+("(?:[^"\\]|\\.)*")\s*`)
var orRe = regexp.MustCompile(`(?i)^or\s+`)

// parseFilter reads the filter query parameter: comparisons with eq joined by or, the part
// of RFC 7644's grammar look-ups use. ok is false when there is no filter; other operators
// are refused with 400 invalidFilter, as a provider refuses what it does not implement.
func (s *Server) parseFilter(r *http.Request, allowed ...string) (clauses []clause, ok bool, err *scimError) {
	f, present := r.URL.Query()["filter"]
	if !present {
		return nil, false, nil
	}
	s.mu.Lock()
	off := s.knobs.noFilter
	s.mu.Unlock()
	if off {
		return nil, false, errorf(http.StatusBadRequest, "invalidFilter", "filtering is not supported")
	}
	rest := f[0]
	for {
		m := clauseRe.FindStringSubmatch(rest)
		if m == nil {
			return nil, false, errorf(http.StatusBadRequest, "invalidFilter", "unsupported filter: only eq comparisons joined by or")
		}
		attr := strings.ToLower(m[1])
		known := false
		for _, a := range allowed {
			known = known || strings.EqualFold(a, attr)
		}
		if !known {
			return nil, false, errorf(http.StatusBadRequest, "invalidFilter", "cannot filter on %s", m[1])
		}
		var v string
		if jerr := json.Unmarshal([]byte(m[2]), &v); jerr != nil {
			return nil, false, errorf(http.StatusBadRequest, "invalidFilter", "malformed string in filter")
		}
		clauses = append(clauses, clause{attr: attr, value: v})
		rest = rest[len(m[0]):]
		if rest == "" {
			return clauses, true, nil
		}
		or := orRe.FindString(rest)
		if or == "" {
			return nil, false, errorf(http.StatusBadRequest, "invalidFilter", "unsupported filter: only eq comparisons joined by or")
		}
		rest = rest[len(or):]
	}
}

// matches reports whether any clause holds for the values get returns per attribute. id
// compares exactly (caseExact true); every other attribute filtered on here is caseExact
// false in the core schemas (RFC 7643 §4).
func matches(clauses []clause, get func(attr string) []string) bool {
	for _, c := range clauses {
		for _, v := range get(c.attr) {
			if v == c.value || (c.attr != "id" && strings.EqualFold(v, c.value)) {
				return true
			}
		}
	}
	return false
}
