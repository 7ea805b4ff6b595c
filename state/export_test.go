package state

// UsePerPageCopy makes s stage each Write with its own COPY instead of one streamed COPY,
// so tests and benchmarks can compare the two.
func UsePerPageCopy(s *Store) { s.copyMode = copyPerPage }

// DisableFirstLoadFastPath makes s's merges stage every row even when the system has no
// rows of the kind yet, so tests can compare both paths.
func DisableFirstLoadFastPath(s *Store) {
	k := s.knobs()
	k.noDirect = true
	mergeKnobsByStore.Store(s, k)
}

// SetMaxTrackedKeys bounds s's duplicate-detection set, so tests can overflow it cheaply.
func SetMaxTrackedKeys(s *Store, n int) {
	k := s.knobs()
	k.maxKeys = n
	mergeKnobsByStore.Store(s, k)
}
