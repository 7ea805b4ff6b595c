package syncengine

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/groupsync/groupsync/config"
)

// Scheduler runs every flow on its schedule until its context ends. Within one process a
// flow's runs never overlap: the next tick is computed after a run ends, so ticks that
// passed meanwhile are skipped (and logged). Across replicas the lease makes each tick run
// once.
type Scheduler struct {
	e         *Engine
	schedules map[string]Schedule
	running   atomic.Bool
	// OnResult, if set, is called after every scheduled run (tests, metrics).
	OnResult func(flow string, res *Result, err error)
}

// NewScheduler returns a scheduler for the given flow schedules.
func (e *Engine) NewScheduler(schedules map[string]Schedule) *Scheduler {
	return &Scheduler{e: e, schedules: schedules}
}

// Running reports whether the scheduler loop is active (for /readyz).
func (s *Scheduler) Running() bool { return s.running.Load() }

// Run blocks until ctx ends. A run in flight when ctx ends is asked to stop: it lets its
// change in flight finish (within the engine's shutdown grace), records itself
// interrupted, and releases its lease.
func (s *Scheduler) Run(ctx context.Context) error { return s.RunUntil(ctx, nil) }

// RunUntil is Run that also stops, without interrupting anything, when drain closes: no
// new run starts, and the runs in flight finish normally before it returns (a
// configuration reload).
func (s *Scheduler) RunUntil(ctx context.Context, drain <-chan struct{}) error {
	s.running.Store(true)
	defer s.running.Store(false)
	var wg sync.WaitGroup
	for flow, sched := range s.schedules {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.loop(ctx, drain, flow, sched)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.serveRequests(ctx, drain, &wg)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.pruneHistory(ctx, drain)
	}()
	wg.Wait()
	return nil
}

// RequestPoll is how often a scheduler looks for `groupsync trigger` requests.
const RequestPoll = 2 * time.Second

// serveRequests polls the mirror for run requests of this scheduler's flows and runs each
// flow requested (one run serves every pending request of the flow). A flow busy here or
// on another replica gives its requests back, to be served after the run in progress.
func (s *Scheduler) serveRequests(ctx context.Context, drain <-chan struct{}, wg *sync.WaitGroup) {
	flows := make([]string, 0, len(s.schedules))
	for f := range s.schedules {
		flows = append(flows, f)
	}
	clock, st := s.e.o.Clock, s.e.o.Store
	for {
		select {
		case <-ctx.Done():
			return
		case <-drain:
			return
		case <-clock.After(RequestPoll):
		}
		flow, ids, ok, err := st.ClaimRunRequest(ctx, flows, s.e.o.Holder)
		if err != nil {
			if ctx.Err() == nil {
				s.e.logger.Warn("looking for run requests", "error", err)
			}
			continue
		}
		if !ok {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serve(ctx, flow, ids)
		}()
	}
}

func (s *Scheduler) serve(ctx context.Context, flow string, ids []int64) {
	log, st, bg := s.e.logger.With("flow", flow), s.e.o.Store, context.WithoutCancel(ctx)
	log.Info("run requested (groupsync trigger): starting it", "requests", len(ids))
	res, err := s.e.RunFlow(ctx, flow, RunOptions{Trigger: TriggerManual})
	switch {
	case errors.Is(err, ErrFlowBusy):
		err = st.ReleaseRunRequests(bg, ids)
	case err != nil:
		log.Error("requested run could not start", "error", err)
		err = st.RefuseRunRequests(bg, ids, "could not start: "+err.Error())
	case res.Status == StatusPaused:
		err = st.RefuseRunRequests(bg, ids, PausedError(*res.Paused).Error())
	default:
		err = st.ServeRunRequests(bg, ids, res.RunID)
	}
	if err != nil {
		log.Warn("recording the run requests", "error", err)
	}
	if s.OnResult != nil && res != nil {
		s.OnResult(flow, res, nil)
	}
}

func (s *Scheduler) loop(ctx context.Context, drain <-chan struct{}, flow string, sched Schedule) {
	clock := s.e.o.Clock
	log := s.e.logger.With("flow", flow)
	next := sched.Next(clock.Now())
	log.Info("flow scheduled", "next_run", next)
	for {
		select {
		case <-ctx.Done():
			return
		case <-drain:
			return
		case <-clock.After(next.Sub(clock.Now())):
		}
		tick := next
		res, err := s.e.RunFlow(ctx, flow, RunOptions{Trigger: TriggerSchedule, Tick: &tick})
		switch {
		case errors.Is(err, ErrFlowBusy):
			log.Info("tick skipped: the flow runs elsewhere or this tick already ran", "tick", tick)
		case err != nil:
			log.Error("run could not start", "tick", tick, "error", err)
		case res.Status == StatusPaused:
			log.Info("tick skipped: the flow is paused", "tick", tick, "paused_by", res.Paused.PausedBy,
				"reason", res.Paused.Reason, "resume", "groupsync resume "+flow)
		}
		if s.OnResult != nil {
			s.OnResult(flow, res, err)
		}
		now := clock.Now()
		next = sched.Next(now)
		if skipped := countTicks(sched, tick, now); skipped > 0 {
			log.Warn("run outlasted its schedule: late ticks skipped", "skipped_ticks", skipped, "next_run", next)
		}
	}
}

// countTicks counts the ticks strictly between last and now (bounded, for the log line).
func countTicks(sched Schedule, last, now time.Time) int {
	n := 0
	for t := sched.Next(last); !t.After(now) && n < 1000; t = sched.Next(t) {
		n++
	}
	return n
}

// HistoryPruneEvery is how often a scheduler prunes history past history.retention. Every
// replica prunes: a batch another replica deleted first is simply not found again.
const HistoryPruneEvery = time.Hour

// pruneHistory prunes history at start and then every HistoryPruneEvery until ctx ends or
// drain closes. A failure is logged and retried at the next period: history past its
// retention costs room, not correctness.
func (s *Scheduler) pruneHistory(ctx context.Context, drain <-chan struct{}) {
	retention := s.e.o.Config.History.Retention
	if retention <= 0 {
		retention = config.DefaultHistoryRetention
	}
	for {
		start := s.e.o.Clock.Now()
		n, err := s.e.o.Store.PruneHistory(ctx, retention, 0)
		switch {
		case err != nil && ctx.Err() == nil:
			s.e.logger.Warn("pruning history past its retention", "retention", retention.String(), "error", err)
		case n > 0:
			s.e.logger.Info("pruned history past its retention", "intervals", n, "retention", retention.String(),
				"duration_s", s.e.o.Clock.Now().Sub(start).Seconds())
		}
		select {
		case <-ctx.Done():
			return
		case <-drain:
			return
		case <-s.e.o.Clock.After(HistoryPruneEvery):
		}
	}
}
