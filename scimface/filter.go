package scimface

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	elimity "github.com/elimity-com/scim"
	scimfilter "github.com/elimity-com/scim/filter"
	"github.com/elimity-com/scim/schema"
	filter "github.com/scim2/filter-parser/v2"

	"github.com/groupsync/groupsync/state"
)

// listQuery turns a list request into the store's query. A filter the store may evaluate
// in SQL goes into the query; fallback is the same filter as a validator the face applies
// to each resource of a scan, for when the store cannot (state.ErrInboundFilter).
func listQuery(p elimity.ListRequestParams, table string, maxPage int) (state.InboundQuery, *scimfilter.Validator) {
	q := state.InboundQuery{Start: max(p.StartIndex, 1), Count: min(max(p.Count, 0), maxPage)}
	if p.FilterValidator == nil {
		return q, nil
	}
	exp := p.FilterValidator.GetFilter()
	unescape(exp)
	v := scimfilter.NewFilterValidator(exp, withCommon(table), extensions(table)...)
	if f, ok := toInbound(exp); ok {
		q.Filter = f
	}
	return q, &v
}

// listResources answers a list request of one resource type: in the store's SQL when the
// filter converts and the store can evaluate it, else by evaluating the filter over a scan.
func listResources[T any](r *http.Request, s *Server, p elimity.ListRequestParams, table string,
	list func(context.Context, string, state.InboundQuery) (int, []T, error),
	render func([]T) ([]elimity.Resource, error),
	scan func(*http.Request, *scimfilter.Validator, state.InboundQuery) (elimity.Page, error)) (elimity.Page, error) {
	q, v := listQuery(p, table, s.maxPage)
	if v != nil && q.Filter == nil {
		return scan(r, v, q)
	}
	total, page, err := list(r.Context(), systemOf(r), q)
	if errors.Is(err, state.ErrInboundFilter) {
		return scan(r, v, q)
	}
	if err != nil {
		return elimity.Page{}, s.scimError(r, err)
	}
	res, err := render(page)
	if err != nil {
		return elimity.Page{}, s.scimError(r, err)
	}
	return elimity.Page{TotalResults: total, Resources: res}, nil
}

func withCommon(table string) schema.Schema {
	s := schema.CoreGroupSchema()
	if table == "users" {
		s = schema.CoreUserSchema()
	}
	s.Attributes = append(s.Attributes, schema.CommonAttributes()...)
	return s
}

func extensions(table string) []schema.Schema {
	if table == "users" {
		return []schema.Schema{schema.ExtensionEnterpriseUser()}
	}
	return nil
}

// unescape reads each string compare value as the JSON string RFC 7644 §3.4.2.2 says it
// is: the parser keeps its backslashes (`"a \"b\""` stays `a \"b\"`).
func unescape(e filter.Expression) {
	switch e := e.(type) {
	case *filter.AttributeExpression:
		if s, ok := e.CompareValue.(string); ok && strings.Contains(s, `\`) {
			var out string
			if json.Unmarshal([]byte(`"`+s+`"`), &out) == nil {
				e.CompareValue = out
			}
		}
	case *filter.LogicalExpression:
		unescape(e.Left)
		unescape(e.Right)
	case *filter.NotExpression:
		unescape(e.Expression)
	case *filter.ValuePath:
		unescape(e.ValueFilter)
	}
}

// toInbound converts a parsed filter to the store's form; ok is false when some part of it
// is not one the store evaluates (a value path, an extension attribute, a number).
func toInbound(e filter.Expression) (*state.InboundFilter, bool) {
	switch e := e.(type) {
	case *filter.AttributeExpression:
		if e.AttributePath.URIPrefix != nil {
			return nil, false
		}
		v := e.CompareValue
		name := e.AttributePath.String()
		if s, isStr := v.(string); isStr && strings.HasPrefix(strings.ToLower(name), "meta.") {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return nil, false
			}
			v = t
		}
		switch v.(type) {
		case string, bool, time.Time, nil:
		default:
			return nil, false
		}
		return &state.InboundFilter{Op: string(e.Operator), Attr: name, Value: v}, true
	case *filter.LogicalExpression:
		l, okL := toInbound(e.Left)
		r, okR := toInbound(e.Right)
		return &state.InboundFilter{Op: string(e.Operator), Sub: []*state.InboundFilter{l, r}}, okL && okR
	case *filter.NotExpression:
		s, ok := toInbound(e.Expression)
		return &state.InboundFilter{Op: "not", Sub: []*state.InboundFilter{s}}, ok
	}
	return nil, false
}

// scanLimit bounds one scan batch of the fallback path.
const scanLimit = 500

// fallbackPage evaluates v over every resource scan yields, in the store's order, keeping
// the total and the requested window. Each batch is its own short read.
func fallbackPage[T any](r *http.Request, s *Server, v *scimfilter.Validator, q state.InboundQuery,
	scan func(state.InboundCursor) ([]T, error), cursor func(T) state.InboundCursor,
	view func([]T) ([]map[string]any, []elimity.Resource, error)) (elimity.Page, error) {
	var page elimity.Page
	var after state.InboundCursor
	for {
		batch, err := scan(after)
		if err != nil {
			return elimity.Page{}, s.scimError(r, err)
		}
		if len(batch) == 0 {
			return page, nil
		}
		maps, res, err := view(batch)
		if err != nil {
			return elimity.Page{}, s.scimError(r, err)
		}
		for i, m := range maps {
			if err := v.PassesFilter(m); err != nil {
				continue
			}
			page.TotalResults++
			if page.TotalResults >= q.Start && len(page.Resources) < q.Count {
				page.Resources = append(page.Resources, res[i])
			}
		}
		after = cursor(batch[len(batch)-1])
	}
}

// filterable is a resource as the filter sees it: its attributes with id, externalId and
// meta's times.
func filterable(res elimity.Resource) map[string]any {
	m := make(map[string]any, len(res.Attributes)+3)
	for k, v := range res.Attributes {
		m[k] = v
	}
	m["id"] = res.ID
	if res.ExternalID.Present() {
		m["externalId"] = res.ExternalID.Value()
	}
	mt := map[string]any{}
	if res.Meta.Created != nil {
		mt["created"] = res.Meta.Created.Format(time.RFC3339Nano)
	}
	if res.Meta.LastModified != nil {
		mt["lastModified"] = res.Meta.LastModified.Format(time.RFC3339Nano)
	}
	m["meta"] = mt
	return m
}

func (s *Server) scanUsers(r *http.Request, v *scimfilter.Validator, q state.InboundQuery) (elimity.Page, error) {
	return fallbackPage(r, s, v, q,
		func(after state.InboundCursor) ([]state.InboundUser, error) {
			return s.store.ScanInboundUsers(r.Context(), systemOf(r), after, scanLimit)
		},
		func(u state.InboundUser) state.InboundCursor {
			return state.InboundCursor{Created: u.Created, ID: u.ID}
		},
		func(us []state.InboundUser) ([]map[string]any, []elimity.Resource, error) {
			maps, res := make([]map[string]any, len(us)), make([]elimity.Resource, len(us))
			for i, u := range us {
				res[i] = userResource(u)
				maps[i] = filterable(res[i])
			}
			return maps, res, nil
		})
}
