package node

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dicomesh/dicomesh/federation/blocks"
	"github.com/dicomesh/dicomesh/node/archive"
	"github.com/dicomesh/dicomesh/node/audit"
	"github.com/dicomesh/dicomesh/node/dicomweb"
	"github.com/dicomesh/dicomesh/node/ingest"
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
	mux.Handle("/api/v1/audit/", audit.Handler(n.Audit, n.httpActor, nodeAnchor{n}))
	mux.Handle("/dicom-web/", dicomweb.Handler(dicomweb.Config{Store: n, Actor: n.viewerActor, WithActor: WithActor, StowWorkers: n.Config.IngestWorkers}))
	mux.HandleFunc("POST /api/v1/ingest", func(w http.ResponseWriter, r *http.Request) {
		a, err := n.httpActor(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var req struct{ Paths []string }
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil || len(req.Paths) == 0 {
			http.Error(w, "want {\"paths\": [...]}", http.StatusBadRequest)
			return
		}
		rep, err := n.Ingest(WithActor(r.Context(), a), nil, req.Paths...)
		writeResult(w, Summarize(rep), err)
	})
	mux.HandleFunc("GET /api/v1/studies", func(w http.ResponseWriter, r *http.Request) {
		a, err := n.httpActor(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		v := r.URL.Query()
		q := archive.Query{PatientID: v.Get("patient_id"), Issuer: v.Get("issuer"), PatientName: v.Get("name"), Modality: v.Get("modality"),
			DateFrom: v.Get("from"), DateTo: v.Get("to"), Accession: v.Get("accession")}
		q.Limit, _ = strconv.Atoi(v.Get("limit"))
		studies, err := n.Studies(WithActor(r.Context(), a), q)
		writeResult(w, studies, err)
	})
	mux.HandleFunc("GET /api/v1/find", func(w http.ResponseWriter, r *http.Request) {
		a, err := n.httpActor(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		v := r.URL.Query()
		p := PatientFromName(v.Get("name"), v.Get("birth_date"), v.Get("sex"))
		p.ID, p.Issuer = v.Get("patient_id"), v.Get("issuer")
		cs, err := n.Find(WithActor(r.Context(), a), p)
		writeResult(w, cs, err)
	})
	mux.HandleFunc("POST /api/v1/pull", func(w http.ResponseWriter, r *http.Request) {
		a, err := n.httpActor(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var req PullRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
			http.Error(w, "want a pull request in JSON", http.StatusBadRequest)
			return
		}
		if req.User == "" {
			req.User = a.User
		}
		if strings.Contains(r.Header.Get("Accept"), "application/x-ndjson") {
			n.streamPull(w, r, a, req)
			return
		}
		st, err := n.Pull(WithActor(r.Context(), a), req, nil)
		var de *DeniedError
		if errors.As(err, &de) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			json.NewEncoder(w).Encode(map[string]string{"error": de.Error()})
			return
		}
		writeResult(w, st, err)
	})
	mux.HandleFunc("POST /api/v1/consent", func(w http.ResponseWriter, r *http.Request) {
		a, err := n.httpActor(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var in ConsentInput
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&in); err != nil {
			http.Error(w, "want a consent directive in JSON", http.StatusBadRequest)
			return
		}
		id, err := n.RecordConsent(WithActor(r.Context(), a), in)
		writeResult(w, map[string]string{"id": id}, err)
	})
	mux.HandleFunc("DELETE /api/v1/consent/{id}", func(w http.ResponseWriter, r *http.Request) {
		a, err := n.httpActor(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		err = n.RevokeConsent(WithActor(r.Context(), a), r.PathValue("id"))
		writeResult(w, map[string]string{"revoked": r.PathValue("id")}, err)
	})
	mux.HandleFunc("GET /api/v1/consent", func(w http.ResponseWriter, r *http.Request) {
		a, err := n.httpActor(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		ds, err := n.Consents(WithActor(r.Context(), a), r.URL.Query().Get("issuer"), r.URL.Query().Get("patient_id"))
		writeResult(w, ds, err)
	})
	mux.HandleFunc("POST /api/v1/push", func(w http.ResponseWriter, r *http.Request) {
		a, err := n.httpActor(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var req struct{ Study, To string }
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
			http.Error(w, "want {\"study\": ..., \"to\": ...}", http.StatusBadRequest)
			return
		}
		dest, err := n.Destination(req.To)
		if err != nil {
			writeResult(w, nil, err)
			return
		}
		res, err := n.Push(WithActor(r.Context(), a), req.Study, dest)
		writeResult(w, res, err)
	})
	mux.HandleFunc("GET /api/v1/federation/members", func(w http.ResponseWriter, r *http.Request) {
		ms, err := n.Members()
		writeResult(w, ms, err)
	})
	mux.HandleFunc("POST /api/v1/federation/invite", func(w http.ResponseWriter, r *http.Request) {
		a, err := n.httpActor(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		ttl, err := time.ParseDuration(r.URL.Query().Get("ttl"))
		if err != nil {
			ttl = 24 * time.Hour
		}
		tok, err := n.Invite(WithActor(r.Context(), a), r.URL.Query().Get("name"), ttl)
		writeResult(w, map[string]string{"token": tok}, err)
	})
	mux.HandleFunc("POST /api/v1/federation/join", func(w http.ResponseWriter, r *http.Request) {
		a, err := n.httpActor(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		body, _ := io.ReadAll(io.LimitReader(r.Body, 16<<10))
		fed, err := n.Join(WithActor(r.Context(), a), strings.TrimSpace(string(body)))
		writeResult(w, map[string]string{"federation": fed}, err)
	})
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

// writeResult answers v as JSON, or err as a 500 with its text.
// PullEvent is one line of a pull streamed as NDJSON: progress while the
// blocks arrive, then the stored study, or the error (Denied when the
// owner refused).
type PullEvent struct {
	Progress *blocks.Progress `json:"progress,omitempty"`
	Study    *archive.Study   `json:"study,omitempty"`
	Error    string           `json:"error,omitempty"`
	Denied   bool             `json:"denied,omitempty"`
}

// pullProgressEvery is how often progress is written at most.
const pullProgressEvery = 100 * time.Millisecond

// streamPull runs a pull and answers with PullEvents, one a line.
func (n *Node) streamPull(w http.ResponseWriter, r *http.Request, a audit.Actor, req PullRequest) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	var mu sync.Mutex
	var last time.Time
	var latest *blocks.Progress
	progress := func(p blocks.Progress) {
		mu.Lock()
		defer mu.Unlock()
		latest = &p
		if time.Since(last) < pullProgressEvery {
			return
		}
		last = time.Now()
		enc.Encode(PullEvent{Progress: &p})
		if flusher != nil {
			flusher.Flush()
		}
	}
	st, err := n.Pull(WithActor(r.Context(), a), req, progress)
	mu.Lock()
	defer mu.Unlock()
	if latest != nil {
		enc.Encode(PullEvent{Progress: latest}) // the final count
	}
	var de *DeniedError
	switch {
	case errors.As(err, &de):
		enc.Encode(PullEvent{Error: de.Error(), Denied: true})
	case err != nil:
		enc.Encode(PullEvent{Error: err.Error()})
	default:
		enc.Encode(PullEvent{Study: &st})
	}
}

func writeResult(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		return
	}
	json.NewEncoder(w).Encode(v)
}

// IngestSummary is an ingest report as the API and the command line show
// it.
type IngestSummary struct {
	Stored, Duplicates, Skipped int
	Bytes                       int64
	Rejected                    []RejectedFile
	Studies                     []archive.Study
}

// RejectedFile is one file an ingest refused.
type RejectedFile struct{ Path, Reason, KeptAt string }

// Summarize turns an ingest report into its summary.
func Summarize(rep ingest.Report) IngestSummary {
	s := IngestSummary{Stored: rep.Stored, Duplicates: rep.Duplicates, Skipped: rep.Skipped, Bytes: rep.Bytes, Studies: rep.Studies}
	for _, r := range rep.Rejected {
		s.Rejected = append(s.Rejected, RejectedFile{Path: r.Path, Reason: r.Err.Error(), KeptAt: r.KeptAt})
	}
	return s
}

// viewerActor names who makes a DICOMweb request: viewers and PACS do not
// send the X-Dicomesh-User header, so they are named by their address on
// the loopback listener.
func (n *Node) viewerActor(r *http.Request) (audit.Actor, error) {
	if a, err := n.httpActor(r); err == nil {
		return a, nil
	}
	return audit.Actor{User: "dicomweb-client", Facility: n.FacilityID, Address: r.RemoteAddr}, nil
}
