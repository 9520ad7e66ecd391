package audit

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

// HTTP limits.
const (
	DefaultHTTPLimit = 1000  // records or flags returned when the request sets no limit
	MaxHTTPLimit     = 10000 // the most a request may ask for; use export for more
)

// ActorFunc says who makes an HTTP request; the node's web server
// authenticates the user. An error refuses the request (401).
type ActorFunc func(*http.Request) (Actor, error)

// Handler serves the log's JSON API for the node's web server to mount at
// /api/v1/audit/:
//
//	GET /api/v1/audit/records?<query>       {"records": [...]}       (Search)
//	GET /api/v1/audit/flags?<query>&kind=k  {"flags": [...]}         (Flags)
//	GET /api/v1/audit/export?format=f&<query>  CSV, FHIR NDJSON or DICOM XML
//	GET /api/v1/audit/verify                {"ok": ..., "report": ...} (Verify)
//	GET /api/v1/audit/checkpoints           {"checkpoints": [...]}   the signed notes
//
// <query> is what ParseQuery reads. Every read is recorded in the log by
// the user actor returns; if that fails the request fails (fail-closed).
// anchor may be nil.
func Handler(l *Log, actor ActorFunc, anchor Anchor) http.Handler {
	h := &handler{l: l, actor: actor, anchor: anchor}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/audit/records", h.records)
	mux.HandleFunc("GET /api/v1/audit/flags", h.flags)
	mux.HandleFunc("GET /api/v1/audit/export", h.export)
	mux.HandleFunc("GET /api/v1/audit/verify", h.verify)
	mux.HandleFunc("GET /api/v1/audit/checkpoints", h.checkpoints)
	return mux
}

type handler struct {
	l      *Log
	actor  ActorFunc
	anchor Anchor
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, errBadRequest), errors.Is(err, ErrInvalidRecord):
		status = http.StatusBadRequest
	case errors.Is(err, errUnauthorized):
		status = http.StatusUnauthorized
	case errors.Is(err, ErrTampered):
		status = http.StatusConflict
	case errors.Is(err, ErrClosed), errors.Is(err, ErrFailed):
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

var (
	errBadRequest   = errors.New("bad request")
	errUnauthorized = errors.New("unauthorized")
)

// prepare authenticates the request and parses its query.
func (h *handler) prepare(r *http.Request) (Actor, Query, error) {
	a, err := h.actor(r)
	if err != nil {
		return Actor{}, Query{}, errors.Join(errUnauthorized, err)
	}
	if a.Address == "" {
		a.Address = r.RemoteAddr
	}
	v := r.URL.Query()
	q, err := ParseQuery(v)
	if err != nil {
		return Actor{}, Query{}, errors.Join(errBadRequest, err)
	}
	return a, q, nil
}

func httpLimit(q *Query) {
	if q.Limit == 0 {
		q.Limit = DefaultHTTPLimit
	}
	q.Limit = min(q.Limit, MaxHTTPLimit)
}

func (h *handler) records(w http.ResponseWriter, r *http.Request) {
	a, q, err := h.prepare(r)
	if err != nil {
		writeError(w, err)
		return
	}
	httpLimit(&q)
	recs, err := h.l.Search(r.Context(), a, q)
	if err != nil {
		writeError(w, err)
		return
	}
	if recs == nil {
		recs = []Record{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"records": recs})
}

func (h *handler) flags(w http.ResponseWriter, r *http.Request) {
	a, q, err := h.prepare(r)
	if err != nil {
		writeError(w, err)
		return
	}
	httpLimit(&q)
	var kinds []FlagKind
	for _, k := range r.URL.Query()["kind"] {
		for _, s := range strings.Split(k, ",") {
			kinds = append(kinds, FlagKind(s))
		}
	}
	fs, err := h.l.Flags(r.Context(), a, q, kinds...)
	if err != nil {
		if !errors.Is(err, ErrTampered) && !errors.Is(err, ErrClosed) && !errors.Is(err, ErrFailed) && !errors.Is(err, ErrInvalidRecord) {
			err = errors.Join(errBadRequest, err)
		}
		writeError(w, err)
		return
	}
	if fs == nil {
		fs = []Flag{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"flags": fs})
}

func (h *handler) export(w http.ResponseWriter, r *http.Request) {
	a, q, err := h.prepare(r)
	if err != nil {
		writeError(w, err)
		return
	}
	f, err := ParseFormat(r.URL.Query().Get("format"))
	if err != nil {
		writeError(w, errors.Join(errBadRequest, err))
		return
	}
	// The export is written to the response as it is read; the reading is
	// recorded before the first byte. An error after that can only cut the
	// response short.
	w.Header().Set("Content-Type", f.ContentType())
	ext := map[Format]string{FormatCSV: "csv", FormatFHIR: "ndjson", FormatDICOM: "xml"}[f]
	w.Header().Set("Content-Disposition", `attachment; filename="audit.`+ext+`"`)
	cw := &committedWriter{w: w}
	if err := h.l.Export(r.Context(), a, q, f, cw); err != nil && !cw.committed {
		w.Header().Del("Content-Disposition")
		writeError(w, err)
	}
}

type committedWriter struct {
	w         http.ResponseWriter
	committed bool
}

func (c *committedWriter) Write(p []byte) (int, error) {
	c.committed = true
	return c.w.Write(p)
}

func (h *handler) verify(w http.ResponseWriter, r *http.Request) {
	a, _, err := h.prepare(r)
	if err != nil {
		writeError(w, err)
		return
	}
	rep, err := h.l.Verify(r.Context(), a, h.anchor)
	if rep == nil {
		writeError(w, err)
		return
	}
	out := map[string]any{"ok": err == nil, "report": rep}
	if err != nil {
		out["error"] = err.Error()
	}
	writeJSON(w, http.StatusOK, out)
}

type checkpointJSON struct {
	Origin string `json:"origin"`
	Size   uint64 `json:"size"`
	Root   string `json:"root"`
	Note   string `json:"note"`
}

func (h *handler) checkpoints(w http.ResponseWriter, r *http.Request) {
	if _, err := h.actor(r); err != nil {
		writeError(w, errors.Join(errUnauthorized, err))
		return
	}
	cps := h.l.Checkpoints()
	out := make([]checkpointJSON, len(cps))
	for i, c := range cps {
		out[i] = checkpointJSON{c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root), string(c.Note)}
	}
	writeJSON(w, http.StatusOK, map[string]any{"checkpoints": out})
}
