package demo

import (
	"fmt"
	"strings"
)

// Query is a SQL statement to look at the demo's result with.
type Query struct {
	Title string
	SQL   string
}

// Queries returns the three queries the demo prints: the mirror groups (group_overview),
// what groupsync wrote in each system, and the changes of the runs. Table names are qualified with
// schema, so they work from a plain psql session. They hold no double quote, dollar sign or
// exclamation mark, so they paste inside a double-quoted shell argument.
func Queries(schema string, runIDs []int64) []Query {
	ids := make([]string, 0, len(runIDs))
	for _, id := range runIDs {
		ids = append(ids, fmt.Sprint(id))
	}
	if len(ids) == 0 {
		ids = []string{"0"}
	}
	s := schema + "."
	return []Query{
		{
			Title: "Each mirror group: the systems it is linked in, and whether it is in step everywhere",
			SQL: "SELECT name, flows, systems, in_sync, members_missing, changes_held FROM " + s + "group_overview " +
				"ORDER BY in_sync, name",
		},
		{
			// From changes, not sync_metadata: a push also stamps last_sync_out on the source
			// group it came from, which groupsync did not write (README "What groupsync wrote").
			Title: "What groupsync wrote, per system and kind of record",
			SQL: "SELECT target_system AS system, " +
				"CASE WHEN operation IN ('add_member', 'remove_member') THEN 'membership' ELSE 'group' END AS record_kind, " +
				"operation, count(DISTINCT (target_group_id, coalesce(target_account_id, ''))) AS records " +
				"FROM " + s + "changes WHERE status = 'applied' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
		},
		{
			Title: "The changes the runs planned, and what became of them",
			SQL: "SELECT flow, target_system, operation, status, coalesce(reason, '') AS reason, count(*) " +
				"FROM " + s + "changes WHERE run_id IN (" + strings.Join(ids, ", ") + ") " +
				"GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5",
		},
	}
}

// PsqlCommand is the shell command line that runs q against the database at url, with
// the password redacted.
func PsqlCommand(databaseURL string, q Query) string {
	return fmt.Sprintf("psql %q -c %q", RedactURL(databaseURL), q.SQL)
}
