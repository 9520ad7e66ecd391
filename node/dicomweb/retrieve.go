package dicomweb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/dicomesh/dicomesh/node/archive"
	"github.com/dicomesh/dicomesh/node/dicomweb/part10"
	"github.com/dicomesh/dicomesh/node/dicomweb/render"
)

// ref names one instance of a study.
type ref struct{ series, sop string }

// refs lists the instances the request's path names: the whole study, a
// series or one instance.
func refs(st archive.Study, r *http.Request) []ref {
	series, instance := r.PathValue("series"), r.PathValue("instance")
	var out []ref
	for _, se := range st.Series {
		if series != "" && se.UID != series {
			continue
		}
		for _, in := range se.Instances {
			if instance == "" || in.SOPInstanceUID == instance {
				out = append(out, ref{se.UID, in.SOPInstanceUID})
			}
		}
	}
	return out
}

// load reads one instance through the store and splits it into elements.
func (s *service) load(ctx context.Context, study, sop string) (*part10.Instance, error) {
	rc, err := s.c.Store.ReadInstance(ctx, study, sop)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, err
	}
	return part10.Parse(b)
}

// target resolves the request's study and instances; it answers the
// request itself when they are not there.
func (s *service) target(w http.ResponseWriter, r *http.Request) (context.Context, archive.Study, []ref, bool) {
	ctx, ok := s.ctx(w, r)
	if !ok {
		return nil, archive.Study{}, nil, false
	}
	st, err := s.c.Store.Study(ctx, r.PathValue("study"))
	if err != nil {
		fail(w, err)
		return nil, st, nil, false
	}
	rs := refs(st, r)
	if len(rs) == 0 {
		http.Error(w, "not found", http.StatusNotFound)
		return nil, st, nil, false
	}
	return ctx, st, rs, true
}

func instanceURL(r *http.Request, study string, x ref) string {
	return base(r) + "/studies/" + study + "/series/" + x.series + "/instances/" + x.sop
}

// metadataWorkers read and decrypt instances in parallel for one metadata
// request.
const metadataWorkers = 4

// metadata serves the DICOM JSON of every instance the path names, bulk
// data by reference.
func (s *service) metadata(w http.ResponseWriter, r *http.Request) {
	ctx, st, rs, ok := s.target(w, r)
	if !ok {
		return
	}
	out := make([]part10.Dataset, len(rs))
	errs := make([]error, len(rs))
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(metadataWorkers, len(rs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				in, err := s.load(ctx, st.UID, rs[i].sop)
				if err != nil {
					errs[i] = err
					continue
				}
				out[i] = in.JSON(instanceURL(r, st.UID, rs[i]) + "/bulk")
			}
		}()
	}
	for i := range rs {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			fail(w, err)
			return
		}
	}
	w.Header().Set("Content-Type", "application/dicom+json")
	json.NewEncoder(w).Encode(out)
}

// bulk serves one bulk data element, named by its tag path
// (TAG, or TAG/ITEM/TAG... inside sequences), as application/octet-stream.
func (s *service) bulk(w http.ResponseWriter, r *http.Request) {
	ctx, st, rs, ok := s.target(w, r)
	if !ok {
		return
	}
	in, err := s.load(ctx, st.UID, rs[0].sop)
	if err != nil {
		fail(w, err)
		return
	}
	e, ok := part10.Lookup(in.Elements, strings.Split(r.PathValue("path"), "/"))
	if !ok {
		http.Error(w, "no such bulk data element", http.StatusNotFound)
		return
	}
	parts := [][]byte{e.Value}
	if e.Fragments != nil {
		parts = e.Fragments[1:]
	}
	writeParts(w, "application/octet-stream", parts)
}

// frameAccept decides the media type and transfer syntax of frames from
// the Accept header: the stored transfer syntax is served as it is
// (transfer-syntax=* or the stored one); native little endian is also
// served as explicit VR little endian, the default. Nothing is transcoded.
func frameAccept(accept, stored string) (mediaType, ts string, ok bool) {
	native := !part10.Encapsulated(stored)
	if accept == "" {
		accept = "*/*"
	}
	for _, rng := range strings.Split(accept, ",") {
		mt, params := mediaRange(rng)
		typ := mt
		if mt == "multipart/related" {
			typ = params["type"]
			if typ == "" {
				typ = "application/octet-stream"
			}
		}
		want := params["transfer-syntax"]
		switch {
		case typ == "*/*" || typ == "application/octet-stream":
			if want == "*" || want == stored {
				return "application/octet-stream", stored, true
			}
			if native && stored != part10.ExplicitVRBigEndian && (want == "" || want == part10.ExplicitVRLittleEndian) {
				return "application/octet-stream", part10.ExplicitVRLittleEndian, true
			}
		case strings.HasPrefix(typ, "image/") || strings.HasPrefix(typ, "video/"):
			if !native && (want == "*" || want == stored) {
				return typ, stored, true
			}
		}
	}
	return "", "", false
}

// maxFrames bounds the frame numbers one request may list.
const maxFrames = 4096

// frameList parses a WADO-RS frame list, "1,3,5", 1-based.
func frameList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("frame number %q", f)
		}
		if len(out) == maxFrames {
			return nil, fmt.Errorf("more than %d frames", maxFrames)
		}
		out = append(out, n)
	}
	return out, nil
}

// mediaRange splits a media range into its type and parameters. It is
// lenient where viewers are: OHIF sends type=application/octet-stream
// unquoted, which mime.ParseMediaType refuses.
func mediaRange(s string) (string, map[string]string) {
	parts := strings.Split(s, ";")
	params := map[string]string{}
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(p, "=")
		params[strings.ToLower(strings.TrimSpace(k))] = strings.Trim(strings.TrimSpace(v), `"`)
	}
	return strings.ToLower(strings.TrimSpace(parts[0])), params
}

// frames serves the listed frames of one instance as multipart/related.
func (s *service) frames(w http.ResponseWriter, r *http.Request) {
	list, err := frameList(r.PathValue("frames"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ctx, st, rs, ok := s.target(w, r)
	if !ok {
		return
	}
	in, err := s.load(ctx, st.UID, rs[0].sop)
	if err != nil {
		fail(w, err)
		return
	}
	mt, ts, ok := frameAccept(r.Header.Get("Accept"), in.TransferSyntax)
	if !ok {
		http.Error(w, "the frames are stored as "+in.TransferSyntax+" and are not transcoded: accept that transfer syntax or transfer-syntax=*", http.StatusNotAcceptable)
		return
	}
	all, err := in.Frames()
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	var parts [][]byte
	for _, n := range list {
		if n > len(all) {
			http.Error(w, fmt.Sprintf("frame %d of %d", n, len(all)), http.StatusNotFound)
			return
		}
		parts = append(parts, all[n-1])
	}
	writeParts(w, mt+"; transfer-syntax="+ts, parts)
}

// writeParts answers with each part in a multipart/related body.
func writeParts(w http.ResponseWriter, partType string, parts [][]byte) {
	b := make([]byte, 12)
	rand.Read(b)
	boundary := "dicomesh-" + hex.EncodeToString(b)
	typ, _, _ := strings.Cut(partType, ";")
	w.Header().Set("Content-Type", `multipart/related; type="`+typ+`"; boundary=`+boundary)
	mw := multipart.NewWriter(w)
	mw.SetBoundary(boundary)
	for _, p := range parts {
		pw, err := mw.CreatePart(map[string][]string{"Content-Type": {partType}})
		if err != nil {
			return
		}
		if _, err := pw.Write(p); err != nil {
			return
		}
	}
	mw.Close()
}

// rendered serves one frame (the first unless the path names one) as an
// image: JPEG unless PNG is asked for, with the window and viewport
// parameters of PS3.18 8.3.5.1. A thumbnail is a rendered image of the
// middle instance of what the path names, fitted into 128x128 unless a
// viewport says otherwise.
func (s *service) rendered(thumbnail bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		frame := 1
		if f := r.PathValue("frames"); f != "" {
			list, err := frameList(f)
			if err != nil || len(list) != 1 {
				http.Error(w, "rendered: one frame number", http.StatusBadRequest)
				return
			}
			frame = list[0]
		}
		var win *render.Window
		if v := q.Get("window"); v != "" {
			wv, err := render.ParseWindow(v)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			win = &wv
		}
		vw, vh := 0, 0
		if thumbnail {
			vw, vh = 128, 128
		}
		if v := q.Get("viewport"); v != "" {
			a, b, _ := strings.Cut(v, ",")
			x, err1 := strconv.Atoi(a)
			y, err2 := strconv.Atoi(b)
			if err1 != nil || err2 != nil || x <= 0 || y <= 0 || x > 1<<14 || y > 1<<14 {
				http.Error(w, "viewport: want width,height", http.StatusBadRequest)
				return
			}
			vw, vh = x, y
		}
		quality := 90
		if v := q.Get("quality"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 100 {
				http.Error(w, "quality: want 1 to 100", http.StatusBadRequest)
				return
			}
			quality = n
		}
		mediaType, ok := imageAccept(r.Header.Get("Accept"))
		if !ok {
			http.Error(w, "rendered images are image/jpeg or image/png", http.StatusNotAcceptable)
			return
		}
		ctx, st, rs, ok := s.target(w, r)
		if !ok {
			return
		}
		if thumbnail { // a study's thumbnail shows its first series
			n := 0
			for n < len(rs) && rs[n].series == rs[0].series {
				n++
			}
			rs = rs[:n]
		}
		in, err := s.load(ctx, st.UID, rs[len(rs)/2].sop)
		if err != nil {
			fail(w, err)
			return
		}
		all, err := in.Frames()
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		if frame > len(all) {
			http.Error(w, fmt.Sprintf("frame %d of %d", frame, len(all)), http.StatusNotFound)
			return
		}
		img, err := render.Image(in.Pixels(), all[frame-1], win)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotAcceptable)
			return
		}
		if vw > 0 {
			img = render.Fit(img, vw, vh)
		}
		w.Header().Set("Content-Type", mediaType)
		render.Encode(w, img, mediaType, quality)
	}
}

// imageAccept picks image/jpeg or image/png from an Accept header.
func imageAccept(accept string) (string, bool) {
	if accept == "" {
		return "image/jpeg", true
	}
	for _, rng := range strings.Split(accept, ",") {
		mt, _ := mediaRange(rng)
		switch mt {
		case "image/jpeg", "image/png":
			return mt, true
		case "image/*", "*/*":
			return "image/jpeg", true
		}
	}
	return "", false
}
