package xds

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	updates       prometheus.Counter
	applies       prometheus.Counter
	updateDelay   prometheus.Histogram
	applyDuration prometheus.Histogram
	resources     *prometheus.GaugeVec
	streams       *prometheus.GaugeVec
	pushes        *prometheus.CounterVec
	acks          *prometheus.CounterVec
	nacks         *prometheus.CounterVec
}

// newMetrics makes the server's metrics and registers them with reg unless it is nil.
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		updates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meltemi_xds_updates_total",
			Help: "Resource sets handed to the xDS server (before debouncing).",
		}),
		applies: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meltemi_xds_applies_total",
			Help: "Resource sets applied to the xDS caches (after debouncing).",
		}),
		updateDelay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meltemi_xds_update_delay_seconds",
			Help:    "Time from the first pending update to its application (debounce included).",
			Buckets: []float64{.01, .025, .05, .1, .15, .25, .5, 1, 2, 5},
		}),
		applyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meltemi_xds_apply_duration_seconds",
			Help:    "Time to hash a resource set and hand the changes to the xDS caches.",
			Buckets: prometheus.ExponentialBuckets(.0001, 4, 10),
		}),
		resources: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meltemi_xds_resources",
			Help: "Resources served, by type URL.",
		}, []string{"type"}),
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meltemi_xds_connected_streams",
			Help: "Connected xDS streams, by mode (sotw, delta).",
		}, []string{"mode"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meltemi_xds_pushes_total",
			Help: "Discovery responses sent, by type URL.",
		}, []string{"type"}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meltemi_xds_acks_total",
			Help: "Responses clients accepted, by type URL.",
		}, []string{"type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meltemi_xds_nacks_total",
			Help: "Responses clients rejected, by type URL.",
		}, []string{"type"}),
	}
	if reg != nil {
		reg.MustRegister(m.updates, m.applies, m.updateDelay, m.applyDuration, m.resources, m.streams, m.pushes, m.acks, m.nacks)
	}
	return m
}
