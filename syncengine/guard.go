package syncengine

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/state"
)

// destructive are the operations the guard holds back.
var destructive = []string{"remove_member", "archive_group", "delete_group"}

// groupDeletions are the destructive operations on whole groups.
var groupDeletions = []string{"archive_group", "delete_group"}

// guard applies the flow's safety rules to a stored plan. Removals are held per group by
// the plan itself (removals only on positive knowledge: a group whose source listing was
// incomplete or whose members did not all resolve gets no removals); an incomplete source
// member pull also holds every group deletion this run, and every removal when the pull
// could not say which groups it missed. A source that shrank below min_source_ratio of the
// last good run, or removals/deletions beyond the limits, block the whole run: the
// returned reason says what tripped (execute adds how to approve or reject), and nothing is
// pushed until an operator approves it.
func (e *Engine) guard(ctx context.Context, log *slog.Logger, runID int64, name string, flow config.Flow,
	p *pullState, stats state.PlanStats) (string, error) {
	st := e.o.Store
	if !p.sourceMembersComplete {
		held := groupDeletions
		if stats.IncompleteGroups == 0 {
			held = destructive
		}
		n, err := st.SetPlannedStatus(ctx, runID, held, state.ChangeSkipped, "source_incomplete")
		if err != nil {
			return "", err
		}
		if n > 0 {
			log.Warn("source pull incomplete: changes held this run", "operations", held, "changes", n,
				"incomplete_groups", stats.IncompleteGroups)
		}
	}
	var reasons []string
	lim := flow.Limits
	// A run narrowed to chosen groups is not comparable with a whole source.
	if lim.MinSourceRatio > 0 && !p.narrowed {
		base, err := st.LastBaselineRun(ctx, name)
		if err == nil {
			check := func(what string, now, before int64) {
				if before > 0 && float64(now) < lim.MinSourceRatio*float64(before) {
					reasons = append(reasons, fmt.Sprintf("source %s shrank from %d to %d %s (below min_source_ratio %.2f)",
						flow.Source, before, now, what, lim.MinSourceRatio))
				}
			}
			check("groups", stats.SourceGroups, base.Counts["source_groups"])
			check("members", stats.SourceMembers, base.Counts["source_members"])
		}
	}
	gc, err := st.GuardCounts(ctx, runID)
	if err != nil {
		return "", err
	}
	reasons = append(reasons, limitReasons(lim, p.liveTargets, gc, stats.TargetMembers)...)
	return joinReasons(reasons), nil
}

// joinReasons is the guard's verdict: "" to push, else every limit that tripped.
func joinReasons(reasons []string) string {
	return strings.Join(reasons, "; ")
}

// limitReasons says which of the flow's removal and deletion limits a stored plan exceeds
// on each target: gc are its planned destructive changes, members each target's members
// (the denominator of the percentage). Every plan that pushes passes them: a sync's and a
// revert's.
func limitReasons(lim config.Limits, targets []string, gc map[string]state.TargetGuardCounts, members map[string]int64) []string {
	var reasons []string
	for _, t := range targets {
		c := gc[t]
		if c.Removals > int64(lim.MaxMemberRemovals) {
			reasons = append(reasons, fmt.Sprintf("%s: %d member removals exceed max_member_removals %d", t, c.Removals, lim.MaxMemberRemovals))
		}
		if total := members[t]; total > 0 && c.Removals > 0 {
			pct := 100 * float64(c.Removals) / float64(total)
			if pct > lim.MaxMemberRemovalsPercent {
				reasons = append(reasons, fmt.Sprintf("%s: %d member removals are %.1f%% of %d members, above max_member_removals_percent %g",
					t, c.Removals, pct, total, lim.MaxMemberRemovalsPercent))
			}
		}
		if c.Deletions > int64(lim.MaxGroupDeletions) {
			reasons = append(reasons, fmt.Sprintf("%s: %d group deletions exceed max_group_deletions %d", t, c.Deletions, lim.MaxGroupDeletions))
		}
	}
	return reasons
}
