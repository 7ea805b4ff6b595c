package syncengine

import "time"

// Clock is the time source of the scheduler, injected so tests drive schedules without
// sleeping.
type Clock interface {
	Now() time.Time
	// After returns a channel that delivers once d has passed.
	After(d time.Duration) <-chan time.Time
}

// Schedule is all the engine needs of a cron schedule; robfig/cron's Schedule satisfies it.
type Schedule interface {
	Next(time.Time) time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
