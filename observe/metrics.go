// Package observe makes a running groupsync visible to an operator: Prometheus metrics fed
// by the connectors and the sync engine, gauges read from the mirror on each scrape, and the
// HTTP server for /healthz, /readyz and /metrics.
//
// Metric names are a public interface (dashboards, alerts and the e2e and bench suites
// scrape them); they are listed in README.md and must not be renamed lightly.
package observe

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/groupsync/groupsync/state"
)

// Metric names. Counters end in _total, durations are in seconds.
const (
	MetricRuns              = "groupsync_runs_total"
	MetricRunDuration       = "groupsync_run_duration_seconds"
	MetricChanges           = "groupsync_changes_total"
	MetricAPIRequests       = "groupsync_api_requests_total"
	MetricAPIDuration       = "groupsync_api_request_duration_seconds"
	MetricAPIRetries        = "groupsync_api_retries_total"
	MetricRateLimitWaits    = "groupsync_rate_limit_waits_total"
	MetricRateLimitWaitSecs = "groupsync_rate_limit_wait_seconds_total"
	MetricMirrorRecords     = "groupsync_mirror_records"
	MetricLastSuccess       = "groupsync_last_success_timestamp_seconds"
	MetricAwaitingApproval  = "groupsync_runs_awaiting_approval"
	MetricBuildInfo         = "groupsync_build_info"
)

// Metrics holds groupsync's collectors on one registry. It implements
// connectors.RequestObserver and syncengine.Observer; all methods are safe for concurrent
// use (the Prometheus vectors are).
type Metrics struct {
	reg *prometheus.Registry

	runs           *prometheus.CounterVec
	runDuration    *prometheus.HistogramVec
	changes        *prometheus.CounterVec
	requests       *prometheus.CounterVec
	requestSeconds *prometheus.HistogramVec
	retries        *prometheus.CounterVec
	rlWaits        *prometheus.CounterVec
	rlWaitSeconds  *prometheus.CounterVec
}

// NewMetrics registers groupsync's metrics, plus the Go runtime and process collectors, on
// reg. A private registry (not prometheus.DefaultRegisterer) keeps tests isolated and the
// exposition free of anything groupsync did not choose.
func NewMetrics(reg *prometheus.Registry, version string) *Metrics {
	m := &Metrics{
		reg: reg,
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRuns, Help: "Finished runs by flow and status (succeeded, partial, failed, blocked, dry_run, planned).",
		}, []string{"flow", "status"}),
		runDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: MetricRunDuration, Help: "Wall time of a run (pull, link, plan, guard, push) by flow.",
			// A run spans from a second (small tenants) to an hour (large ones behind slow APIs).
			Buckets: []float64{1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 3600},
		}, []string{"flow"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricChanges, Help: "Changes written to a target system, by system, operation and outcome (applied, failed).",
		}, []string{"system", "operation", "status"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricAPIRequests, Help: "HTTP attempts against a system's API by endpoint (route template) and status code; code none when no response arrived.",
		}, []string{"system", "endpoint", "code"}),
		requestSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: MetricAPIDuration, Help: "Duration of one HTTP attempt against a system's API.",
			Buckets: []float64{.025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"system", "endpoint"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricAPIRetries, Help: "Retried API requests by system (transient errors and rate limits).",
		}, []string{"system"}),
		rlWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRateLimitWaits, Help: "Waits imposed by a system's rate-limit signal (429, Retry-After, lockouts).",
		}, []string{"system"}),
		rlWaitSeconds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRateLimitWaitSecs, Help: "Total time spent waiting on a system's rate-limit signal.",
		}, []string{"system"}),
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: MetricBuildInfo, Help: "Always 1; the version label says which groupsync build runs.",
	}, []string{"version"})
	build.WithLabelValues(version).Set(1)
	reg.MustRegister(m.runs, m.runDuration, m.changes, m.requests, m.requestSeconds, m.retries, m.rlWaits,
		m.rlWaitSeconds, build,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is the registry the metrics are on, for the /metrics handler.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// RunFinished implements syncengine.Observer.
func (m *Metrics) RunFinished(flow, status string, d time.Duration) {
	m.runs.WithLabelValues(flow, status).Inc()
	m.runDuration.WithLabelValues(flow).Observe(d.Seconds())
}

// ChangeDone implements syncengine.Observer.
func (m *Metrics) ChangeDone(system, operation, status string, n int) {
	m.changes.WithLabelValues(system, operation, status).Add(float64(n))
}

// ObserveRequest implements connectors.RequestObserver.
func (m *Metrics) ObserveRequest(system, endpoint string, status int, d time.Duration) {
	code := "none"
	if status > 0 {
		code = strconv.Itoa(status)
	}
	m.requests.WithLabelValues(system, endpoint, code).Inc()
	m.requestSeconds.WithLabelValues(system, endpoint).Observe(d.Seconds())
}

// ObserveRetry implements connectors.RequestObserver.
func (m *Metrics) ObserveRetry(system, _ string, wait time.Duration, rateLimited bool) {
	m.retries.WithLabelValues(system).Inc()
	if rateLimited {
		m.rlWaits.WithLabelValues(system).Inc()
		m.rlWaitSeconds.WithLabelValues(system).Add(wait.Seconds())
	}
}

// MirrorSource is what the mirror gauges read; *state.Store implements it.
type MirrorSource interface {
	SystemCounts(ctx context.Context) ([]state.SystemCount, error)
	PendingApprovals(ctx context.Context) ([]state.PendingApproval, error)
	LastSuccesses(ctx context.Context) (map[string]time.Time, error)
}

// WatchMirror registers the gauges read from the mirror: records by system and kind, the
// last successful run per flow and the runs awaiting approval. They are read on each scrape
// (three small queries on counters the merges maintain), so every replica reports the
// shared truth, including runs made by other replicas, and nothing goes stale between
// scrapes. A query slower than timeout fails that scrape's mirror gauges only.
func (m *Metrics) WatchMirror(src MirrorSource, timeout time.Duration, logger *slog.Logger) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m.reg.MustRegister(&mirrorCollector{src: src, timeout: timeout, logger: logger})
}

var (
	descRecords = prometheus.NewDesc(MetricMirrorRecords,
		"Live (not tombstoned) records of a system in the mirror, by kind (groups, accounts, memberships).",
		[]string{"system", "kind"}, nil)
	descLastSuccess = prometheus.NewDesc(MetricLastSuccess,
		"Unix time when the flow's latest succeeded run finished (any replica).", []string{"flow"}, nil)
	descAwaiting = prometheus.NewDesc(MetricAwaitingApproval,
		"Runs blocked by the guard that no operator approved yet (groupsync apply RUN --allow-deletes).", nil, nil)
)

type mirrorCollector struct {
	src     MirrorSource
	timeout time.Duration
	logger  *slog.Logger
}

func (c *mirrorCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRecords
	ch <- descLastSuccess
	ch <- descAwaiting
}

func (c *mirrorCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	if counts, err := c.src.SystemCounts(ctx); err != nil {
		c.fail(ch, descRecords, err)
	} else {
		for _, s := range counts {
			ch <- prometheus.MustNewConstMetric(descRecords, prometheus.GaugeValue, float64(s.Groups), s.Name, "groups")
			ch <- prometheus.MustNewConstMetric(descRecords, prometheus.GaugeValue, float64(s.Accounts), s.Name, "accounts")
			ch <- prometheus.MustNewConstMetric(descRecords, prometheus.GaugeValue, float64(s.Memberships), s.Name, "memberships")
		}
	}
	if last, err := c.src.LastSuccesses(ctx); err != nil {
		c.fail(ch, descLastSuccess, err)
	} else {
		for flow, at := range last {
			ch <- prometheus.MustNewConstMetric(descLastSuccess, prometheus.GaugeValue, float64(at.UnixMilli())/1000, flow)
		}
	}
	if pending, err := c.src.PendingApprovals(ctx); err != nil {
		c.fail(ch, descAwaiting, err)
	} else {
		ch <- prometheus.MustNewConstMetric(descAwaiting, prometheus.GaugeValue, float64(len(pending)))
	}
}

// fail reports a gauge that could not be read: the scrape carries the error (promhttp
// serves the rest with ContinueOnError) and the log says why.
func (c *mirrorCollector) fail(ch chan<- prometheus.Metric, d *prometheus.Desc, err error) {
	c.logger.Warn("reading mirror gauges for /metrics", "error", err)
	ch <- prometheus.NewInvalidMetric(d, err)
}
