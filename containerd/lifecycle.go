package containerd

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	hostcontainers "github.com/wharfhq/wharf/host/containers"
)

// lifecycle reports container starts, stops and failures as structured log
// lines tagged container:<class>#<short id>, and as Prometheus metrics.
type lifecycle struct {
	log          *slog.Logger
	running      *prometheus.GaugeVec
	starts       *prometheus.CounterVec
	execs        *prometheus.CounterVec
	failures     *prometheus.CounterVec
	startSeconds *prometheus.HistogramVec
	onExit       func(class, object string)
}

func newLifecycle(log *slog.Logger, reg prometheus.Registerer) *lifecycle {
	l := &lifecycle{
		log: log,
		running: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wharf_containers_running",
			Help: "Containers whose main process runs, per class."}, []string{"class"}),
		starts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wharf_container_starts_total",
			Help: "Containers started, per class."}, []string{"class"}),
		execs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wharf_container_execs_total",
			Help: "Processes started in containers by exec, per class."}, []string{"class"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wharf_container_failures_total",
			Help: "Failed starts (kind=start) and non-zero exits not asked for (kind=exit), per class."}, []string{"class", "kind"}),
		startSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "wharf_container_start_seconds",
			Help:    "Time from a start request to a running container (network included), per class.",
			Buckets: []float64{.025, .05, .1, .15, .2, .3, .5, 1, 2, 5, 10}}, []string{"class"}),
	}
	if reg != nil {
		reg.MustRegister(l.running, l.starts, l.execs, l.failures, l.startSeconds)
	}
	return l
}

// Tag names a container in logs: container:<class>#<first 8 of the id>.
func Tag(class, object string) string {
	return "container:" + class + "#" + object[:min(8, len(object))]
}

func (l *lifecycle) started(mc *Managed, took time.Duration) {
	l.log.Info(Tag(mc.Class, mc.Object)+" start", "class", mc.Class, "object", mc.Object,
		"address", mc.Endpoint.ContainerIP.String(), "took", took.Round(time.Millisecond).String())
	l.starts.WithLabelValues(mc.Class).Inc()
	l.startSeconds.WithLabelValues(mc.Class).Observe(took.Seconds())
	l.watch(mc)
}

// watch counts mc as running until it exits, then logs how it ended.
func (l *lifecycle) watch(mc *Managed) {
	l.running.WithLabelValues(mc.Class).Inc()
	go func() {
		code, _, err := mc.WaitExit()
		l.running.WithLabelValues(mc.Class).Dec()
		if l.onExit != nil {
			defer l.onExit(mc.Class, mc.Object)
		}
		tag := Tag(mc.Class, mc.Object)
		switch {
		case err != nil:
			l.log.Warn(tag+" error", "class", mc.Class, "object", mc.Object, "err", err)
		case mc.StopCause() != "":
			l.log.Info(tag+" stop", "class", mc.Class, "object", mc.Object, "exit_code", code, "reason", mc.StopCause())
		case code == 0:
			l.log.Info(tag+" stop", "class", mc.Class, "object", mc.Object, "exit_code", code)
		case mc.OutOfMemory():
			l.failures.WithLabelValues(mc.Class, "exit").Inc()
			l.log.Warn(tag+" error", "class", mc.Class, "object", mc.Object, "exit_code", code, "reason", hostcontainers.OutOfMemory)
		default:
			l.failures.WithLabelValues(mc.Class, "exit").Inc()
			reason := "exited unexpectedly"
			if sig := mc.SignalledByObject(); sig != "" {
				reason += ", " + sig
			}
			l.log.Warn(tag+" error", "class", mc.Class, "object", mc.Object, "exit_code", code, "reason", reason)
		}
	}()
}

func (l *lifecycle) startFailed(class, object string, err error) {
	l.failures.WithLabelValues(class, "start").Inc()
	l.log.Error(Tag(class, object)+" error", "class", class, "object", object, "err", err)
}

// CountExec records a process started by exec in a container of class.
func (m *Manager) CountExec(class string) { m.life.execs.WithLabelValues(class).Inc() }
