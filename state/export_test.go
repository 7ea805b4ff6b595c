package state

import "time"

// UsePerPageCopy makes s stage each Write with its own COPY instead of batches of about a
// megabyte, so tests exercise many COPYs and benchmarks can compare the two.
func UsePerPageCopy(s *Store) { s.copyMode = copyPerPage }

// DisableFirstLoadFastPath makes s's merges classify every row even when the system has no
// rows of the kind yet, so tests can compare both paths.
func DisableFirstLoadFastPath(s *Store) {
	k := s.knobs()
	k.noFirstLoad = true
	mergeKnobsByStore.Store(s, k)
}

// SetMaxTrackedKeys bounds s's duplicate-detection set, so tests can overflow it cheaply.
func SetMaxTrackedKeys(s *Store, n int) {
	k := s.knobs()
	k.maxKeys = n
	mergeKnobsByStore.Store(s, k)
}

// SetStageTimes sets how often s's open merges touch their staging area and after how long
// untouched s's merges sweep an area, so tests need not wait minutes.
func SetStageTimes(s *Store, touchEvery, staleAfter time.Duration) {
	k := s.knobs()
	k.touchEvery, k.staleAfter = touchEvery, staleAfter
	mergeKnobsByStore.Store(s, k)
}

// DisableFirstLoadSpool makes s's first loads stage and insert with INSERT … SELECT at
// Commit instead of spooling to a local file, so tests can compare both first loads.
func DisableFirstLoadSpool(s *Store) {
	k := s.knobs()
	k.noSpool = true
	mergeKnobsByStore.Store(s, k)
}

// SetMaxKnownGroups bounds how many group ids s's spooling membership merges hold.
func SetMaxKnownGroups(s *Store, n int) {
	k := s.knobs()
	k.maxGroups = n
	mergeKnobsByStore.Store(s, k)
}
