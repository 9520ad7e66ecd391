package node

import (
	"context"
	"io"
	"path/filepath"
	"testing"

	"github.com/dicomesh/dicomesh/internal/synth"
	"github.com/dicomesh/dicomesh/node/archive"
	"github.com/dicomesh/dicomesh/node/audit"
)

func openTestNode(t testing.TB) *Node {
	t.Helper()
	h := Home(filepath.Join(t.TempDir(), "home"))
	if _, err := Init(h, DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	n, err := Open(h, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func writeStudy(t *testing.T, preset string) string {
	t.Helper()
	dir, _ := synthStudy(t, preset, nil)
	return dir
}

// synthStudy writes a generated study of the preset, its spec changed by
// edit (when not nil), into a new folder.
func synthStudy(t testing.TB, preset string, edit func(*synth.Spec)) (string, synth.Study) {
	t.Helper()
	spec, err := synth.DefaultSpec(preset)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(&spec)
	}
	dir := t.TempDir()
	st, err := synth.Write(dir, spec)
	if err != nil {
		t.Fatal(err)
	}
	return dir, st
}

// TestOperationsAreAudited: import, query, export and instance reads each
// leave a record naming the actor, the patient and the study.
func TestOperationsAreAudited(t *testing.T) {
	n := openTestNode(t)
	ctx := WithActor(context.Background(), audit.Actor{User: "dr.ames", Purpose: "TREAT"})
	rep, err := n.Ingest(ctx, nil, writeStudy(t, "cr"))
	if err != nil || len(rep.Studies) != 1 {
		t.Fatalf("ingest: %v %+v", err, rep)
	}
	st := rep.Studies[0]
	if _, err := n.Studies(ctx, archive.Query{PatientID: st.PatientID, Issuer: st.Issuer}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Export(ctx, st.UID, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	rc, err := n.ReadInstance(ctx, st.UID, st.Series[0].Instances[0].SOPInstanceUID)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, rc)
	rc.Close()

	recs, err := n.Audit.Search(context.Background(), audit.Actor{User: "officer"}, audit.Query{Patient: st.Issuer + "|" + st.PatientID})
	if err != nil {
		t.Fatal(err)
	}
	want := []audit.Event{audit.EventImport, audit.EventQuery, audit.EventExport, audit.EventInstancesAccessed}
	if len(recs) != len(want) {
		t.Fatalf("%d records for the patient, want %d: %+v", len(recs), len(want), recs)
	}
	for i, r := range recs {
		if r.Event != want[i] || r.User != "dr.ames" || r.Purpose != "TREAT" || r.Facility != n.FacilityID {
			t.Errorf("record %d: %+v, want event %s by dr.ames for TREAT", i, r, want[i])
		}
		if r.Event != audit.EventQuery && r.Study != st.UID {
			t.Errorf("record %d names study %q, want %s", i, r.Study, st.UID)
		}
	}
}

// TestNoAuditNoAccess: once the audit log cannot take records, imports are
// not committed and reads return nothing.
func TestNoAuditNoAccess(t *testing.T) {
	n := openTestNode(t)
	ctx := context.Background()
	rep, err := n.Ingest(ctx, nil, writeStudy(t, "cr"))
	if err != nil {
		t.Fatal(err)
	}
	st := rep.Studies[0]
	n.Audit.Close() // every later Append fails

	if _, err := n.Studies(ctx, archive.Query{}); err == nil {
		t.Error("query answered without an audit record")
	}
	if _, err := n.Export(ctx, st.UID, t.TempDir()); err == nil {
		t.Error("export done without an audit record")
	}
	if rc, err := n.ReadInstance(ctx, st.UID, st.Series[0].Instances[0].SOPInstanceUID); err == nil {
		rc.Close()
		t.Error("instance read without an audit record")
	}
	_, err = n.Ingest(ctx, nil, writeStudy(t, "mr"))
	if err == nil {
		t.Fatal("import committed without an audit record")
	}
	all, _ := n.Archive.Studies(archive.Query{})
	if len(all) != 1 {
		t.Fatalf("%d studies after a refused import, want 1", len(all))
	}
}
