package state

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// InboundFilter is a SCIM filter (RFC 7644 §3.4.2.2) over the attributes the inbound
// tables keep in columns, which the store evaluates in SQL. The face parses the request's
// filter and builds one; a filter on any other attribute is evaluated by the face over
// ScanInbound* instead (ErrInboundFilter tells it so).
type InboundFilter struct {
	// Op is and, or, not (over Sub), or a comparison: eq ne co sw ew pr gt ge lt le.
	Op string
	// Attr is the attribute path as the filter names it (userName, emails.value, ...),
	// compared case-insensitively.
	Attr  string
	Value any // a string, a bool or a time.Time
	Sub   []*InboundFilter
}

// ErrInboundFilter marks a filter the store cannot evaluate in SQL.
var ErrInboundFilter = errors.New("filter not evaluable in SQL")

// inboundColumn is how one filterable attribute maps to SQL: expr is the column, ci that
// it compares without case (caseExact false in RFC 7643), kind its value type.
type inboundColumn struct {
	expr string
	ci   bool
	kind string // string, bool, time
}

var inboundColumns = map[string]map[string]inboundColumn{
	"users": {
		"id": {"id::text", false, "string"}, "username": {"user_name", true, "string"},
		"externalid": {"external_id", false, "string"}, "displayname": {"display_name", true, "string"},
		"active": {"active", false, "bool"}, "meta.created": {"created_at", false, "time"},
		"meta.lastmodified": {"modified_at", false, "time"},
		// emails.value is any of the user's addresses, as RFC 7644's multi-valued filter
		// says: each is matched on its own (compareMulti).
		"emails.value": {"", true, "multi"},
	},
	"groups": {
		"id": {"id::text", false, "string"}, "displayname": {"display_name", true, "string"},
		"externalid": {"external_id", false, "string"}, "meta.created": {"created_at", false, "time"},
		"meta.lastmodified": {"modified_at", false, "time"},
		"members.value":     {"members", false, "members"},
	},
}

// filterSQL compiles f into a condition on table's rows, appending its arguments to args.
type filterSQL struct {
	table string
	args  []any
}

func (c *filterSQL) arg(v any) string {
	c.args = append(c.args, v)
	return fmt.Sprintf("$%d", len(c.args))
}

func (c *filterSQL) compile(f *InboundFilter) (string, error) {
	switch op := strings.ToLower(f.Op); op {
	case "and", "or":
		if len(f.Sub) != 2 {
			return "", fmt.Errorf("%w: %s needs two operands", ErrInboundFilter, op)
		}
		l, err := c.compile(f.Sub[0])
		if err != nil {
			return "", err
		}
		r, err := c.compile(f.Sub[1])
		if err != nil {
			return "", err
		}
		return "(" + l + " " + strings.ToUpper(op) + " " + r + ")", nil
	case "not":
		if len(f.Sub) != 1 {
			return "", fmt.Errorf("%w: not needs one operand", ErrInboundFilter)
		}
		s, err := c.compile(f.Sub[0])
		if err != nil {
			return "", err
		}
		return "(NOT coalesce(" + s + ", false))", nil
	}
	col, ok := inboundColumns[c.table][strings.ToLower(f.Attr)]
	if !ok {
		return "", fmt.Errorf("%w: attribute %s", ErrInboundFilter, f.Attr)
	}
	return c.compare(col, strings.ToLower(f.Op), f.Value)
}

func (c *filterSQL) compare(col inboundColumn, op string, v any) (string, error) {
	if op == "pr" {
		switch col.kind {
		case "members":
			return "EXISTS (SELECT 1 FROM scim_members m WHERE m.system = t.system AND m.group_id = t.id)", nil
		case "multi":
			return emailElements + "coalesce(e->>'value', '') <> '')", nil
		}
		return "(" + col.expr + " IS NOT NULL AND " + col.expr + "::text <> '')", nil
	}
	switch col.kind {
	case "bool":
		b, ok := v.(bool)
		if !ok || (op != "eq" && op != "ne") {
			return "", fmt.Errorf("%w: a boolean compares with eq or ne", ErrInboundFilter)
		}
		return "(" + col.expr + " " + map[string]string{"eq": "=", "ne": "<>"}[op] + " " + c.arg(b) + ")", nil
	case "time":
		ts, ok := v.(time.Time)
		sym, known := map[string]string{"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}[op]
		if !ok || !known {
			return "", fmt.Errorf("%w: a dateTime compares with eq ne gt ge lt le", ErrInboundFilter)
		}
		return "(" + col.expr + " " + sym + " " + c.arg(ts) + ")", nil
	case "members":
		s, ok := v.(string)
		if !ok || op != "eq" || !uuidPattern.MatchString(s) {
			return "", fmt.Errorf("%w: members.value compares with eq to a user id", ErrInboundFilter)
		}
		return "EXISTS (SELECT 1 FROM scim_members m WHERE m.system = t.system AND m.group_id = t.id AND m.user_id = " +
			c.arg(s) + "::uuid)", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%w: a string attribute compares with a string", ErrInboundFilter)
	}
	return c.compareString(col, op, s)
}

// compareString compares a text column (or, for emails.value, each address).
func (c *filterSQL) compareString(col inboundColumn, op, s string) (string, error) {
	expr := col.expr
	if col.ci {
		expr, s = "lower("+expr+")", strings.ToLower(s)
	}
	esc := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
	if col.kind == "multi" {
		return c.compareMulti(op, esc)
	}
	switch op {
	case "eq":
		return "(" + expr + " = " + c.arg(s) + ")", nil
	case "ne":
		return "(" + expr + " IS DISTINCT FROM " + c.arg(s) + ")", nil
	case "co":
		return "(" + expr + " LIKE " + c.arg("%"+esc+"%") + ")", nil
	case "sw":
		return "(" + expr + " LIKE " + c.arg(esc+"%") + ")", nil
	case "ew":
		return "(" + expr + " LIKE " + c.arg("%"+esc) + ")", nil
	case "gt", "ge", "lt", "le":
		sym := map[string]string{"gt": ">", "ge": ">=", "lt": "<", "le": "<="}[op]
		return "(" + expr + " COLLATE \"C\" " + sym + " " + c.arg(s) + ")", nil
	}
	return "", fmt.Errorf("%w: operator %s", ErrInboundFilter, op)
}

// emailElements opens a condition on each of a user's emails (e); a stored emails that is
// not an array has none.
const emailElements = "EXISTS (SELECT 1 FROM jsonb_array_elements(CASE jsonb_typeof(t.attrs->'emails') WHEN 'array' THEN t.attrs->'emails' ELSE '[]' END) e WHERE "

// compareMulti matches each address on its own, without case.
func (c *filterSQL) compareMulti(op, esc string) (string, error) {
	each := emailElements + "lower(e->>'value') LIKE "
	switch op {
	case "eq":
		return each + c.arg(esc) + ")", nil
	case "co":
		return each + c.arg("%"+esc+"%") + ")", nil
	case "sw":
		return each + c.arg(esc+"%") + ")", nil
	case "ew":
		return each + c.arg("%"+esc) + ")", nil
	}
	return "", fmt.Errorf("%w: emails.value compares with eq co sw ew pr", ErrInboundFilter)
}

// InboundQuery is one list request: the filter (nil: all), and the page (Start is
// 1-based, RFC 7644 §3.4.2.4; Count 0 asks only for the total).
type InboundQuery struct {
	Filter *InboundFilter
	Start  int
	Count  int
}

// listInbound runs q over table in one read-only transaction: the total and the page see
// the same snapshot.
func listInbound[T any](ctx context.Context, s *Store, system, table, cols string, q InboundQuery,
	scan func(pgx.Row) (T, error)) (int, []T, error) {
	c := &filterSQL{table: table, args: []any{system}}
	where := "t.system = $1"
	if q.Filter != nil {
		cond, err := c.compile(q.Filter)
		if err != nil {
			return 0, nil, err
		}
		where += " AND coalesce(" + cond + ", false)"
	}
	var total int
	var page []T
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY`); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM scim_"+table+" t WHERE "+where, c.args...).Scan(&total); err != nil {
			return err
		}
		if q.Count <= 0 {
			return nil
		}
		args := append(c.args, max(q.Start, 1)-1, q.Count)
		rows, err := tx.Query(ctx, fmt.Sprintf("SELECT %s FROM scim_%s t WHERE %s ORDER BY t.created_at, t.id OFFSET $%d LIMIT $%d",
			cols, table, where, len(args)-1, len(args)), args...)
		if err != nil {
			return err
		}
		page, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (T, error) { return scan(r) })
		return err
	})
	if err != nil && !errors.Is(err, ErrInboundFilter) {
		return 0, nil, fmt.Errorf("state: list the %s of scim_inbound system %s: %w", table, system, err)
	}
	return total, page, err
}

// ListInboundUsers answers a list request on system's users.
func (s *Store) ListInboundUsers(ctx context.Context, system string, q InboundQuery) (int, []InboundUser, error) {
	return listInbound(ctx, s, system, "users", userCols, q, scanUser)
}

// ListInboundGroups answers a list request on system's groups.
func (s *Store) ListInboundGroups(ctx context.Context, system string, q InboundQuery) (int, []InboundGroup, error) {
	return listInbound(ctx, s, system, "groups", groupCols, q, scanGroup)
}

// ScanInboundUsers reads up to limit users after id after (in created order), each call
// its own short transaction: the face's path for filters the store cannot evaluate.
func (s *Store) ScanInboundUsers(ctx context.Context, system string, after InboundCursor, limit int) ([]InboundUser, error) {
	return scanInbound(ctx, s, system, "users", userCols, after, limit, scanUser)
}

// ScanInboundGroups is ScanInboundUsers for groups.
func (s *Store) ScanInboundGroups(ctx context.Context, system string, after InboundCursor, limit int) ([]InboundGroup, error) {
	return scanInbound(ctx, s, system, "groups", groupCols, after, limit, scanGroup)
}

// InboundCursor is where a scan stopped: the last row's creation time and id. The zero
// value starts at the beginning.
type InboundCursor struct {
	Created time.Time
	ID      string
}

func scanInbound[T any](ctx context.Context, s *Store, system, table, cols string, after InboundCursor, limit int,
	scan func(pgx.Row) (T, error)) ([]T, error) {
	if after.ID == "" {
		after.ID = "00000000-0000-0000-0000-000000000000"
	}
	rows, err := s.pool.Query(ctx, fmt.Sprintf(`SELECT %s FROM scim_%s t
		WHERE t.system = $1 AND (t.created_at, t.id) > ($2, $3::uuid) ORDER BY t.created_at, t.id LIMIT $4`, cols, table),
		system, after.Created, after.ID, limit)
	if err != nil {
		return nil, fmt.Errorf("state: scan the %s of scim_inbound system %s: %w", table, system, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (T, error) { return scan(r) })
	if err != nil {
		return nil, fmt.Errorf("state: scan the %s of scim_inbound system %s: %w", table, system, err)
	}
	return out, nil
}
