package dicomweb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"sync"

	"github.com/dicomesh/dicomesh/node/archive"
	"github.com/dicomesh/dicomesh/node/audit"
	"github.com/dicomesh/dicomesh/node/ingest"
)

// Store is what the service reads and writes: the node, which audits every
// operation before it proceeds.
type Store interface {
	Studies(ctx context.Context, q archive.Query) ([]archive.Study, error)
	Study(ctx context.Context, uid string) (archive.Study, error)
	ReadInstance(ctx context.Context, studyUID, sopInstanceUID string) (io.ReadCloser, error)
	// BeginStore starts storing the instances of one study received by
	// STOW-RS as they arrive. When another writer has the study open it
	// fails with archive.ErrBusy, or, if wait, waits for it until ctx
	// ends: a caller that holds other studies open must not wait, or two
	// such callers could wait for each other.
	BeginStore(ctx context.Context, study string, wait bool) (StudyWriter, error)
}

// StudyWriter stores the instances of one study: Add may be called from
// several goroutines at once and keeps nothing of data once it returns;
// Commit or Rollback ends it, after the Adds have returned. Nothing is
// stored before Commit returns nil.
type StudyWriter interface {
	Add(ctx context.Context, meta archive.InstanceMeta, data []byte) error
	Commit(ctx context.Context) error
	Rollback()
}

// Config configures the service.
type Config struct {
	Store Store
	// Actor says who makes a request; an error refuses it (401).
	Actor func(*http.Request) (audit.Actor, error)
	// WithActor attaches the actor to a request's context for the store.
	WithActor func(context.Context, audit.Actor) context.Context
	// MaxStowBytes bounds a STOW-RS request body.
	MaxStowBytes int64
	// StowWorkers is how many instances of a STOW-RS request are stored
	// at once while the rest of the body arrives (default 4).
	StowWorkers int
}

// Handler serves QIDO-RS, WADO-RS and STOW-RS under /dicom-web/.
func Handler(c Config) http.Handler {
	if c.MaxStowBytes == 0 {
		c.MaxStowBytes = 4 << 30
	}
	if c.StowWorkers <= 0 {
		c.StowWorkers = 4
	}
	s := &service{c}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /dicom-web/studies", s.qido(studyLevel))
	mux.HandleFunc("GET /dicom-web/studies/{study}/series", s.qido(seriesLevel))
	mux.HandleFunc("GET /dicom-web/studies/{study}/series/{series}/instances", s.qido(instanceLevel))
	mux.HandleFunc("GET /dicom-web/studies/{study}", s.wado)
	mux.HandleFunc("GET /dicom-web/studies/{study}/series/{series}", s.wado)
	mux.HandleFunc("GET /dicom-web/studies/{study}/series/{series}/instances/{instance}", s.wado)
	for _, p := range []string{"/studies/{study}", "/studies/{study}/series/{series}", "/studies/{study}/series/{series}/instances/{instance}"} {
		mux.HandleFunc("GET /dicom-web"+p+"/metadata", s.metadata)
		mux.HandleFunc("GET /dicom-web"+p+"/thumbnail", s.rendered(true))
	}
	inst := "GET /dicom-web/studies/{study}/series/{series}/instances/{instance}"
	mux.HandleFunc(inst+"/rendered", s.rendered(false))
	mux.HandleFunc(inst+"/frames/{frames}", s.frames)
	mux.HandleFunc(inst+"/frames/{frames}/rendered", s.rendered(false))
	mux.HandleFunc(inst+"/frames/{frames}/thumbnail", s.rendered(true))
	mux.HandleFunc(inst+"/bulk/{path...}", s.bulk)
	mux.HandleFunc("POST /dicom-web/studies", s.stow)
	mux.HandleFunc("OPTIONS /dicom-web/", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	return cors(mux)
}

// cors allows browser viewers on every response, errors included.
func cors(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		w.Header().Set("Access-Control-Allow-Headers", "Accept, Content-Type, Authorization, X-Dicomesh-User")
		w.Header().Set("Access-Control-Expose-Headers", "Content-Type")
		h.ServeHTTP(w, r)
	})
}

type service struct{ c Config }

// ctx authenticates the request and returns the context for the store.
func (s *service) ctx(w http.ResponseWriter, r *http.Request) (context.Context, bool) {
	a, err := s.c.Actor(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return nil, false
	}
	return s.c.WithActor(r.Context(), a), true
}

func fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, archive.ErrNotFound):
		http.Error(w, "not found", http.StatusNotFound)
	default:
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	}
}

// attr is one attribute in the DICOM JSON model (PS3.18 F.2).
type attr struct {
	VR           string `json:"vr"`
	Value        []any  `json:"Value,omitempty"`
	InlineBinary string `json:"InlineBinary,omitempty"`
	BulkDataURI  string `json:"BulkDataURI,omitempty"`
}

type dataset map[string]attr

func (d dataset) str(tag, vr, v string) {
	if v == "" {
		d[tag] = attr{VR: vr}
		return
	}
	d[tag] = attr{VR: vr, Value: []any{v}}
}

func (d dataset) strs(tag, vr string, vs []string) {
	a := attr{VR: vr}
	for _, v := range vs {
		a.Value = append(a.Value, v)
	}
	d[tag] = a
}

func (d dataset) num(tag, vr string, v int) { d[tag] = attr{VR: vr, Value: []any{v}} }

func (d dataset) pn(tag, v string) {
	if v == "" {
		d[tag] = attr{VR: "PN"}
		return
	}
	d[tag] = attr{VR: "PN", Value: []any{map[string]string{"Alphabetic": v}}}
}

func writeDICOMJSON(w http.ResponseWriter, out []dataset) {
	if out == nil {
		out = []dataset{}
	}
	w.Header().Set("Content-Type", "application/dicom+json")
	json.NewEncoder(w).Encode(out)
}

// acceptsDICOM reports whether the Accept header allows
// multipart/related; type="application/dicom".
func acceptsDICOM(r *http.Request) bool {
	a := r.Header.Get("Accept")
	if a == "" || strings.Contains(a, "*/*") {
		return true
	}
	for _, part := range strings.Split(a, ",") {
		mt, params := mediaRange(part)
		if mt == "multipart/related" && (params["type"] == "" || params["type"] == "application/dicom") {
			return true
		}
	}
	return false
}

// writeInstances streams instances as multipart/related application/dicom,
// the original bytes as stored.
func (s *service) writeInstances(ctx context.Context, w http.ResponseWriter, r *http.Request, study string, sops []string) {
	if !acceptsDICOM(r) {
		http.Error(w, "only multipart/related; type=\"application/dicom\" is served here", http.StatusNotAcceptable)
		return
	}
	b := make([]byte, 12)
	rand.Read(b)
	boundary := "dicomesh-" + hex.EncodeToString(b)
	w.Header().Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+boundary)
	mw := multipart.NewWriter(w)
	mw.SetBoundary(boundary)
	for _, sop := range sops {
		rc, err := s.c.Store.ReadInstance(ctx, study, sop)
		if err != nil {
			return // headers are sent: the truncated multipart tells the client
		}
		pw, err := mw.CreatePart(map[string][]string{"Content-Type": {"application/dicom"}})
		if err == nil {
			_, err = io.Copy(pw, rc)
		}
		rc.Close()
		if err != nil {
			return
		}
	}
	mw.Close()
}

// wado serves a study, a series or an instance: the path says which.
func (s *service) wado(w http.ResponseWriter, r *http.Request) {
	ctx, ok := s.ctx(w, r)
	if !ok {
		return
	}
	st, err := s.c.Store.Study(ctx, r.PathValue("study"))
	if err != nil {
		fail(w, err)
		return
	}
	var sops []string
	for _, x := range refs(st, r) {
		sops = append(sops, x.sop)
	}
	if len(sops) == 0 {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	s.writeInstances(ctx, w, r, st.UID, sops)
}

// stow stores the instances of a multipart/related request: each part
// passes the guarded parser; the parts of each study are committed
// together; the answer lists what was stored and what failed, and why.
func (s *service) stow(w http.ResponseWriter, r *http.Request) {
	ctx, ok := s.ctx(w, r)
	if !ok {
		return
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/related" || params["boundary"] == "" {
		http.Error(w, "want multipart/related; type=\"application/dicom\"", http.StatusUnsupportedMediaType)
		return
	}
	mr := multipart.NewReader(http.MaxBytesReader(w, r.Body, s.c.MaxStowBytes), params["boundary"])
	// Each part is parsed as it arrives and handed to workers that
	// compress, encrypt and write it while the rest of the body comes in;
	// each study is committed once the body has been read.
	type study struct {
		w     StudyWriter
		metas []archive.InstanceMeta
		mu    sync.Mutex
		err   error // the first Add that failed
	}
	type job struct {
		st   *study
		meta archive.InstanceMeta
		data []byte
	}
	var (
		studies []*study
		byUID   = map[string]*study{}
		failed  []dataset
		jobs    = make(chan job)
		wg      sync.WaitGroup
	)
	for range s.c.StowWorkers {
		wg.Go(func() {
			for j := range jobs {
				err := j.st.w.Add(ctx, j.meta, j.data)
				ingest.Release(j.data) // Add keeps nothing of it
				if err != nil {
					j.st.mu.Lock()
					if j.st.err == nil {
						j.st.err = err
					}
					j.st.mu.Unlock()
				}
			}
		})
	}
	refused := func(m archive.InstanceMeta) {
		d := dataset{}
		d.str("00081150", "UI", m.SOPClassUID)
		d.str("00081155", "UI", m.SOPInstanceUID)
		d.num("00081197", "US", 0xA700) // out of resources
		failed = append(failed, d)
	}
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		var data []byte
		if err == nil {
			data, err = ingest.ReadAll(p, ingest.DefaultConfig().MaxFileBytes+1)
			p.Close()
		}
		if err != nil {
			close(jobs)
			wg.Wait()
			for _, st := range studies {
				st.w.Rollback()
			}
			http.Error(w, "malformed multipart body: "+err.Error(), http.StatusBadRequest)
			return
		}
		m, err := ingest.Parse(data)
		if err != nil {
			ingest.Release(data)
			d := dataset{}
			d.num("00081197", "US", 0xC000) // cannot understand
			d.str("00081196", "LO", limitString(err.Error(), 64))
			failed = append(failed, d)
			continue
		}
		st := byUID[m.StudyInstanceUID]
		if st == nil {
			sw, err := s.c.Store.BeginStore(ctx, m.StudyInstanceUID, len(studies) == 0)
			if err != nil {
				ingest.Release(data)
				refused(m)
				continue
			}
			st = &study{w: sw}
			byUID[m.StudyInstanceUID] = st
			studies = append(studies, st)
		}
		st.metas = append(st.metas, m)
		jobs <- job{st, m, data}
	}
	close(jobs)
	wg.Wait()
	resp := dataset{}
	var stored []any
	var studyURL string
	for _, st := range studies {
		err := st.err
		if err == nil {
			err = st.w.Commit(ctx)
		} else {
			st.w.Rollback()
		}
		if err != nil {
			for _, m := range st.metas {
				refused(m)
			}
			continue
		}
		uid := st.metas[0].StudyInstanceUID
		studyURL = base(r) + "/studies/" + uid
		for _, m := range st.metas {
			d := map[string]attr{}
			dataset(d).str("00081150", "UI", m.SOPClassUID)
			dataset(d).str("00081155", "UI", m.SOPInstanceUID)
			dataset(d).str("00081190", "UR", base(r)+"/studies/"+uid+"/series/"+m.SeriesInstanceUID+"/instances/"+m.SOPInstanceUID)
			stored = append(stored, d)
		}
	}
	if len(studies) == 1 && studyURL != "" {
		resp.str("00081190", "UR", studyURL)
	}
	if len(stored) > 0 {
		resp["00081199"] = attr{VR: "SQ", Value: stored}
	}
	if len(failed) > 0 {
		var fs []any
		for _, f := range failed {
			fs = append(fs, f)
		}
		resp["00081198"] = attr{VR: "SQ", Value: fs}
	}
	status := http.StatusOK
	switch {
	case len(stored) == 0 && len(failed) > 0:
		status = http.StatusConflict
	case len(failed) > 0:
		status = http.StatusAccepted
	}
	w.Header().Set("Content-Type", "application/dicom+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(resp)
}

func limitString(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
