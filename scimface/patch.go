package scimface

import (
	"net/http"
	"reflect"
	"strings"

	elimity "github.com/elimity-com/scim"
	scimerrors "github.com/elimity-com/scim/errors"
	filter "github.com/scim2/filter-parser/v2"
)

// applyOp applies one PATCH operation (RFC 7644 §3.5.2) to a user's attributes. The library
// has checked the path against the schema and the value's type; this is the edit itself.
func applyOp(attrs map[string]any, op elimity.PatchOperation) error {
	if op.Path == nil {
		// No path: the value is a map of attribute paths to values (§3.5.2.1, §3.5.2.3;
		// Entra ID sends its replaces this way).
		m, ok := op.Value.(map[string]any)
		if !ok {
			return scimerrors.ScimErrorInvalidValue
		}
		for k, v := range m {
			p, err := filter.ParsePath([]byte(k))
			if err != nil {
				return scimerrors.ScimErrorInvalidPath
			}
			if err := applyOp(attrs, elimity.PatchOperation{Op: op.Op, Path: &p, Value: v}); err != nil {
				return err
			}
		}
		return nil
	}
	unescape(op.Path.ValueExpression)
	container := attrs
	if uri := op.Path.AttributePath.URI(); uri != "" {
		ext, _ := attrs[uri].(map[string]any)
		if ext == nil {
			ext = map[string]any{}
			attrs[uri] = ext
		}
		container = ext
	}
	name := key(container, op.Path.AttributePath.AttributeName)
	if op.Path.ValueExpression != nil {
		return applyFiltered(container, name, op)
	}
	if sub := op.Path.AttributePath.SubAttributeName(); sub != "" {
		inner, _ := container[name].(map[string]any)
		if inner == nil {
			inner = map[string]any{}
		}
		applySimple(inner, key(inner, sub), op.Op, op.Value)
		container[name] = inner
		return nil
	}
	applySimple(container, name, op.Op, op.Value)
	return nil
}

// key is the attribute's key as stored (attribute names are case-insensitive), or name.
func key(m map[string]any, name string) string {
	for k := range m {
		if strings.EqualFold(k, name) {
			return k
		}
	}
	return name
}

// applySimple edits an attribute without a value filter: add merges into a multi-valued
// attribute (skipping values already there) and sets a single one; replace sets; remove
// deletes.
func applySimple(m map[string]any, name, op string, value any) {
	switch op {
	case elimity.PatchOperationRemove:
		delete(m, name)
	case elimity.PatchOperationAdd:
		have, isList := m[name].([]any)
		add, addList := value.([]any)
		if isList && addList {
			for _, v := range add {
				if !containsValue(have, v) {
					have = append(have, v)
				}
			}
			m[name] = have
			return
		}
		m[name] = value
	default:
		m[name] = value
	}
}

func containsValue(list []any, v any) bool {
	for _, x := range list {
		if reflect.DeepEqual(x, v) {
			return true
		}
	}
	return false
}

// applyFiltered edits the elements of a multi-valued attribute its filter selects
// (emails[type eq "work"].value). An add or replace that selects nothing adds an element
// made of the filter's eq terms and the value, as Entra ID expects of its
// `emails[type eq "work"].value` replace on a user without a work address; a remove that
// selects nothing succeeds (removing what is not there is done).
func applyFiltered(m map[string]any, name string, op elimity.PatchOperation) error {
	list, _ := m[name].([]any)
	sub := op.Path.SubAttributeName()
	hit := false
	var kept []any
	for _, e := range list {
		el, _ := e.(map[string]any)
		if el == nil || !matches(op.Path.ValueExpression, el) {
			kept = append(kept, e)
			continue
		}
		hit = true
		switch {
		case op.Op == elimity.PatchOperationRemove && sub == "":
			continue
		case op.Op == elimity.PatchOperationRemove:
			delete(el, key(el, sub))
		case sub != "":
			el[key(el, sub)] = op.Value
		default:
			if v, ok := op.Value.(map[string]any); ok {
				el = v
			}
		}
		kept = append(kept, el)
	}
	if !hit && op.Op != elimity.PatchOperationRemove {
		el := eqTerms(op.Path.ValueExpression)
		if el == nil {
			return scimerrors.ScimError{ScimType: scimerrors.ScimTypeNoTarget, Status: http.StatusBadRequest,
				Detail: "the path's filter selects no value, and is not one a new value can be made from"}
		}
		if sub != "" {
			el[sub] = op.Value
		} else if v, ok := op.Value.(map[string]any); ok {
			for k, x := range v {
				el[k] = x
			}
		}
		kept = append(kept, el)
	}
	m[name] = kept
	return nil
}

// matches evaluates a value filter on one element of a multi-valued attribute. Strings
// compare without case, as the core schemas' sub-attributes (type, value) are caseExact
// false.
func matches(e filter.Expression, el map[string]any) bool {
	switch e := e.(type) {
	case *filter.LogicalExpression:
		if e.Operator == filter.AND {
			return matches(e.Left, el) && matches(e.Right, el)
		}
		return matches(e.Left, el) || matches(e.Right, el)
	case *filter.NotExpression:
		return !matches(e.Expression, el)
	case *filter.AttributeExpression:
		v, present := el[key(el, e.AttributePath.AttributeName)]
		if e.Operator == filter.PR {
			return present && v != nil && v != ""
		}
		return compare(string(e.Operator), v, e.CompareValue)
	}
	return false
}

func compare(op string, v, ref any) bool {
	if b, ok := ref.(bool); ok {
		have, _ := v.(bool)
		return (op == "eq" && have == b) || (op == "ne" && have != b)
	}
	rs, ok := ref.(string)
	if !ok {
		return op == "eq" && reflect.DeepEqual(v, ref)
	}
	s, _ := v.(string)
	s, rs = strings.ToLower(s), strings.ToLower(rs)
	switch op {
	case "eq":
		return s == rs
	case "ne":
		return s != rs
	case "co":
		return strings.Contains(s, rs)
	case "sw":
		return strings.HasPrefix(s, rs)
	case "ew":
		return strings.HasSuffix(s, rs)
	}
	return false
}

// eqTerms is the element a filter of eq terms joined by and describes, or nil.
func eqTerms(e filter.Expression) map[string]any {
	switch e := e.(type) {
	case *filter.AttributeExpression:
		if e.Operator != filter.EQ {
			return nil
		}
		return map[string]any{e.AttributePath.AttributeName: e.CompareValue}
	case *filter.LogicalExpression:
		if e.Operator != filter.AND {
			return nil
		}
		l, r := eqTerms(e.Left), eqTerms(e.Right)
		if l == nil || r == nil {
			return nil
		}
		for k, v := range r {
			l[k] = v
		}
		return l
	}
	return nil
}
