package node

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dicomesh/dicomesh/node/audit"
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
	mux.Handle("/api/v1/audit/", audit.Handler(n.Audit, n.httpActor, nil))
	return mux
}

// httpActor names who makes a request to the node's HTTP API. The listener
// is on loopback by default and trusts the X-Dicomesh-User header of the
// local caller; a request without one is refused.
func (n *Node) httpActor(r *http.Request) (audit.Actor, error) {
	u := r.Header.Get("X-Dicomesh-User")
	if u == "" {
		return audit.Actor{}, errors.New("no X-Dicomesh-User header")
	}
	return audit.Actor{User: u, Facility: n.FacilityID, Purpose: r.Header.Get("X-Dicomesh-Purpose"), Address: r.RemoteAddr}, nil
}
