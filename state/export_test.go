package state

// UsePerPageCopy makes s stage each Write with its own COPY instead of one streamed COPY,
// so tests and benchmarks can compare the two.
func UsePerPageCopy(s *Store) { s.copyMode = copyPerPage }
