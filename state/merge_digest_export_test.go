package state

// HashMemberText is what a member digest hashes a member's text with (Postgres'
// hashtextextended), so tests can check it against the server.
func HashMemberText(text string, seed int64) int64 {
	return int64(hashBytesExtended(text, uint64(seed)))
}

// DisableMemberDigests makes s's membership merges stage every member, as before member
// digests, so tests can compare both.
func DisableMemberDigests(s *Store) {
	k := s.knobs()
	k.noDigest = true
	mergeKnobsByStore.Store(s, k)
}

// LeftOut says how many listed members w's Commit left out because their group's digest
// matched the mirror's, and how many rows it staged.
func LeftOut(w *MembershipMerge) (left, staged int64) { return w.m.left, w.m.staged }

// SetDigestHoldBytes bounds how much of the listing s's membership merges hold while
// their groups' digests may still match, so tests can overflow it cheaply.
func SetDigestHoldBytes(s *Store, n int) {
	k := s.knobs()
	k.digestHold = n
	mergeKnobsByStore.Store(s, k)
}

// BreakDigestFallback closes the file w's left-out groups' rows go to, as a full disk or a
// removed TMPDIR would make it fail, so tests can see a merge that needs it fail cleanly.
func BreakDigestFallback(w *MembershipMerge) {
	if w.gate != nil && w.gate.fallback != nil {
		_ = w.gate.fallback.f.Close()
	}
}
