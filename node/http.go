package node

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// check is one named readiness condition.
type check struct {
	name string
	fn   func() error
}

// newMetrics returns the node's Prometheus registry with the Go and process
// collectors and the node's own gauges.
func (n *Node) newMetrics() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "dicomesh_archive_studies",
			Help: "Studies in the local archive.",
		}, func() float64 {
			s, err := n.Archive.Studies(archiveAll)
			if err != nil {
				return -1
			}
			return float64(len(s))
		}),
	)
	return reg
}

// handler serves /healthz, /readyz and /metrics.
func (n *Node) handler(reg *prometheus.Registry, checks []check) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		status := map[string]string{}
		code := http.StatusOK
		for _, c := range checks {
			if err := c.fn(); err != nil {
				status[c.name] = err.Error()
				code = http.StatusServiceUnavailable
			} else {
				status[c.name] = "ok"
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(status)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}
