package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/registry"
	"github.com/groupsync/groupsync/state"
)

// Check results.
const (
	checkOK      = "ok"
	checkFailed  = "failed"
	checkSkipped = "skipped"
)

// checkProbeEmail is the address the find-account check looks up: on a reserved domain
// (RFC 2606), so it never matches a person and "not found" is the expected answer.
const checkProbeEmail = "groupsync-check@example.invalid"

// checkTimeout bounds one check, retries included, so an unreachable system fails its row
// instead of holding the command.
const checkTimeout = time.Minute

// checkRow is one line of `groupsync check`; its JSON form is the --output json contract.
type checkRow struct {
	System string `json:"system"`
	Check  string `json:"check"`
	Result string `json:"result"`
	// Detail is what an ok check saw, why one was skipped, or the error of a failed one
	// (emails redacted; secrets never reach it).
	Detail string `json:"detail,omitempty"`
	// Fix says what to change when the check failed.
	Fix string `json:"fix,omitempty"`
}

func newCheckCommand(a *app) *cobra.Command {
	output := "table"
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check every system's credentials and access with read-only calls",
		Long: `check connects to the mirror's database and reads its schema version, then opens every
configured system and makes one read-only call for each thing its flows
need: list groups (which also proves the credentials), list one group's members, read an
account by id (sources) or look one up by email (targets), and, for targets whose API offers
one, a read that needs the same access as the writes. It writes nothing, neither to the
systems nor to the mirror, and prints one row per check with what to fix.

Exit status: 0 when every check passed, 1 when any failed.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return usageError("--output %q: use table or json", output)
			}
			return runCheck(cmd.Context(), a, output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", output, "output format: table or json")
	return cmd
}

func runCheck(ctx context.Context, a *app, output string) error {
	cfg, logger, err := a.setup()
	if err != nil {
		return err
	}
	names := slices.Sorted(maps.Keys(cfg.Systems))
	results := make([][]checkRow, len(names)+1)
	var wg sync.WaitGroup
	// Systems are independent: checking them at once bounds the command by the slowest.
	wg.Go(func() { results[0] = []checkRow{checkDatabase(ctx, cfg, logger)} })
	for i, name := range names {
		wg.Go(func() { results[i+1] = checkSystem(ctx, cfg, name, logger) })
	}
	wg.Wait()
	rows := slices.Concat(results...)
	if output == "json" {
		enc := json.NewEncoder(a.env.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rows); err != nil {
			return err
		}
	} else {
		printChecks(a.env.stdout, rows)
	}
	failed := 0
	for _, r := range rows {
		if r.Result == checkFailed {
			failed++
		}
	}
	if failed > 0 {
		return &exitError{code: exitFailure, err: fmt.Errorf("%d of %d checks failed", failed, len(rows))}
	}
	return nil
}

// checkDatabase connects to the mirror and reads its schema version: the one call every
// command makes first. It migrates nothing.
func checkDatabase(ctx context.Context, cfg *config.Config, logger *slog.Logger) checkRow {
	// In parentheses: no system can be named so (config refuses it), so the row never
	// reads as a system's.
	row := checkRow{System: "(database)", Check: "connect"}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	cur, latest, err := func() (int, int, error) {
		store, err := state.Open(ctx, cfg.Database.URL.Reveal(), state.Options{Schema: cfg.Database.Schema, MaxConns: 1, Logger: logger})
		if err != nil {
			return 0, 0, err
		}
		defer store.Close()
		return store.MigrationStatus(ctx)
	}()
	switch {
	case err != nil:
		row.Result, row.Detail = checkFailed, redactEmails(redactURL(err.Error(), cfg.Database.URL.Reveal()))
		row.Fix = "check database.url (env " + config.EnvPrefix + "DATABASE_URL or " + config.EnvPrefix +
			"DATABASE_URL_FILE): host, port, user, password and database, and that Postgres is up"
	case cur < latest:
		row.Result, row.Detail = checkOK, fmt.Sprintf("schema %s at version %d of %d: groupsync migrate (or any engine command) brings it up",
			cfg.Database.Schema, cur, latest)
	default:
		row.Result, row.Detail = checkOK, fmt.Sprintf("schema %s at version %d", cfg.Database.Schema, cur)
	}
	return row
}

// redactURL takes the database URL, and its password alone, out of an error message: a
// driver may quote the connection string it was given.
func redactURL(msg, dbURL string) string {
	if dbURL == "" {
		return msg
	}
	msg = strings.ReplaceAll(msg, dbURL, "[REDACTED]")
	if u, err := url.Parse(dbURL); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "[REDACTED]")
		}
	}
	return msg
}

// systemRoles says what the flows do with a system: read it as a source, write it as a target.
func systemRoles(cfg *config.Config, name string) (source, target bool) {
	for _, f := range cfg.Flows {
		source = source || f.Source == name
		target = target || slices.Contains(f.Targets, name)
	}
	return source, target
}

// checkSystem runs the checks of one system in order; each later check uses what the list
// calls found (a group to read members of, an account id to read).
func checkSystem(ctx context.Context, cfg *config.Config, name string, logger *slog.Logger) []checkRow {
	sc := cfg.SystemConfig(name)
	row := func(check string) checkRow { return checkRow{System: name, Check: check} }
	if sc.Kind == connectors.KindSCIMInbound {
		// Nothing to call: its identity provider calls groupsync (the SCIM face).
		r := row("list groups")
		r.Result, r.Detail = checkSkipped, "kind scim_inbound is pushed to groupsync's SCIM face on scim.listen; there is no API to call"
		return []checkRow{r}
	}
	// A plain client: check runs outside any run, so there is no lease to fence its
	// requests by.
	conn, err := registry.Open(sc, connectors.Deps{HTTPClient: &http.Client{}, Logger: logger.With("system", name)})
	if err != nil {
		r := row("open")
		r.Result, r.Detail, r.Fix = checkFailed, redactEmails(err.Error()), "fix systems."+name+" in "+cfg.Path
		return []checkRow{r}
	}
	source, target := systemRoles(cfg, name)
	var rows []checkRow
	add := func(check string, detail string, err error) {
		r := row(check)
		switch {
		case err == nil:
			r.Result, r.Detail = checkOK, detail
		case errors.Is(err, errSkipped):
			r.Result, r.Detail = checkSkipped, detail
		default:
			r.Result, r.Detail, r.Fix = checkFailed, redactEmails(err.Error()), checkFix(sc, err)
		}
		rows = append(rows, r)
	}
	group, detail, err := checkListGroups(ctx, conn)
	add("list groups", detail, err)
	if err != nil {
		return rows // the credentials or the address are wrong: every other call fails alike
	}
	member, detail, err := checkListMembers(ctx, conn, group)
	add("list members", detail, err)
	if source {
		detail, err = checkReadAccount(ctx, conn, member)
		add("read account", detail, err)
	}
	if target {
		detail, err = checkFindAccount(ctx, conn)
		add("find account by email", detail, err)
		detail, err = checkWriteAccess(ctx, conn)
		add("write access", detail, err)
	}
	if !source && !target {
		rows = append(rows, checkRow{System: name, Check: "flows", Result: checkSkipped, Detail: "no flow reads or writes this system"})
	}
	return rows
}

// errSkipped marks a check that could not run for a reason that is not a failure.
var errSkipped = errors.New("skipped")

// errAccountNotReturned is a member's account that reading it by id did not return.
var errAccountNotReturned = errors.New("a member's account was not returned by id")

// errEnough stops a listing after its first page: one call is all a check needs.
var errEnough = errors.New("enough")

// checkListGroups reads the first page of groups and returns one group id to read members of.
func checkListGroups(ctx context.Context, conn connectors.Connector) (string, string, error) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	var first string
	n := 0
	_, err := conn.ListGroups(ctx, func(page []connectors.Group) error {
		n = len(page)
		if n > 0 {
			first = page[0].ID
		}
		return errEnough
	})
	if err != nil && !errors.Is(err, errEnough) {
		return "", "", err
	}
	return first, fmt.Sprintf("%d groups on the first page", n), nil
}

// checkListMembers reads the first page of one group's members and returns one account id.
func checkListMembers(ctx context.Context, conn connectors.Connector, group string) (string, string, error) {
	if group == "" {
		return "", "no group to read members of", errSkipped
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	var account string
	n := 0
	_, err := conn.ListMembers(ctx, group, func(page []connectors.Member) error {
		n = len(page)
		for _, m := range page {
			if m.Type == connectors.MemberUser || strings.HasPrefix(m.Type, connectors.MemberUser+":") {
				account = m.AccountID
				break
			}
		}
		return errEnough
	})
	if err != nil && !errors.Is(err, errEnough) {
		return "", "", err
	}
	return account, fmt.Sprintf("%d members on the first page of one group", n), nil
}

// checkReadAccount reads one member's account by id, as a source's pull does to learn
// members' emails.
func checkReadAccount(ctx context.Context, conn connectors.Connector, account string) (string, error) {
	if account == "" {
		return "no member to read the account of", errSkipped
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	n := 0
	_, err := conn.ListAccounts(ctx, []string{account}, func(page []connectors.Account) error {
		n += len(page)
		return nil
	})
	if err != nil {
		return "", err
	}
	if n == 0 {
		return "", errAccountNotReturned
	}
	return "a member's account read by id", nil
}

// checkFindAccount looks up an address nobody has, as a target's plan does for every source
// member it has no account for: "not found" is the expected, successful answer.
func checkFindAccount(ctx context.Context, conn connectors.Connector) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	_, err := conn.FindAccountByEmail(ctx, checkProbeEmail)
	switch {
	case err == nil, errors.Is(err, connectors.ErrNotFound):
		return "lookup by email answered", nil
	case errors.Is(err, connectors.ErrUnsupported):
		return "this system cannot look accounts up by email", errSkipped
	}
	return "", err
}

// checkWriteAccess runs the connector's write probe where its API offers one.
func checkWriteAccess(ctx context.Context, conn connectors.Connector) (string, error) {
	p, ok := conn.(connectors.WriteProber)
	if !ok {
		return fmt.Sprintf("%s offers no read-only write probe", conn.Kind()), errSkipped
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	return p.ProbeWrite(ctx)
}

// credentialHints name, per kind, the settings that carry the credentials.
var credentialHints = map[connectors.Kind]func(env string) string{
	connectors.KindDevRev:        func(env string) string { return env + "TOKEN (or " + env + "TOKEN_FILE)" },
	connectors.KindAirtable:      func(env string) string { return env + "TOKEN (or " + env + "TOKEN_FILE)" },
	connectors.KindSelfCommunity: func(env string) string { return env + "TOKEN, or " + env + "JWT_SECRET with options.jwt_user_id" },
	connectors.KindSocialcast:    func(env string) string { return env + "TOKEN, or " + env + "USERNAME with " + env + "PASSWORD" },
	connectors.KindSCIM:          func(env string) string { return env + "TOKEN (or " + env + "TOKEN_FILE)" },
}

// permissionHints say, per kind, what access the calls need (reference/apis.md).
var permissionHints = map[connectors.Kind]string{
	connectors.KindDevRev:        "the token's user needs access to groups and dev users",
	connectors.KindAirtable:      "an enterprise admin's token with the enterprise.account:read, enterprise.groups:read, enterprise.user:read and, to write, enterprise.scim.usersAndGroups:manage scopes",
	connectors.KindSelfCommunity: "account search and member writes need an admin: options.jwt_user_id (or the token's user) must be one",
	connectors.KindSocialcast:    "the user needs to be a community admin",
	connectors.KindSCIM:          "the provider's SCIM token must be allowed to read and write Users and Groups",
}

// checkFix says what to change for a failed check, by the error's class.
func checkFix(sc connectors.SystemConfig, err error) string {
	env := config.SystemEnvPrefix(sc.Name)
	var ce *connectors.Error
	errors.As(err, &ce)
	switch {
	case errors.Is(err, connectors.ErrUnauthorized) && ce != nil && ce.Status == http.StatusForbidden:
		return "the credentials lack access: " + permissionHints[sc.Kind]
	case errors.Is(err, connectors.ErrUnauthorized):
		return "the credentials were refused: check " + credentialHints[sc.Kind](env)
	case errors.Is(err, connectors.ErrRateLimited):
		return "the system is throttling: run check again later"
	case ce != nil && ce.Status >= 500:
		return "the system answered with a server error: run check again later, or ask its operator"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, connectors.ErrRetryable), errors.As(err, new(*url.Error)):
		return "cannot reach " + sc.BaseURL + ": check systems." + sc.Name + ".base_url and the network"
	case errors.Is(err, errAccountNotReturned):
		return "the system hides accounts from these credentials: " + permissionHints[sc.Kind]
	case errors.Is(err, connectors.ErrNotFound):
		return "the address answered but not as " + string(sc.Kind) + ": check systems." + sc.Name + ".base_url and options"
	}
	return "the system refused the call: check systems." + sc.Name + " (base_url, options) and " + permissionHints[sc.Kind]
}

// emailRE finds addresses in error text: an API may echo the email a lookup asked for.
var emailRE = regexp.MustCompile(`[A-Za-z0-9._%+\-]+(@|%40)[A-Za-z0-9.\-]+\.[A-Za-z]{2,}`)

func redactEmails(s string) string { return emailRE.ReplaceAllString(s, "[email]") }

// printChecks writes the table form.
func printChecks(w io.Writer, rows []checkRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SYSTEM\tCHECK\tRESULT\tDETAIL\tFIX")
	for _, r := range rows {
		fix := r.Fix
		if fix == "" {
			fix = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.System, r.Check, r.Result, clip(r.Detail, 80), fix)
	}
	if len(rows) == 0 {
		fmt.Fprintln(tw, "(no systems configured)")
	}
	_ = tw.Flush()
}
