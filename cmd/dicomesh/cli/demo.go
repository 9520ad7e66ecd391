package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/federation/blocks"
	"github.com/dicomesh/dicomesh/internal/synth"
	"github.com/dicomesh/dicomesh/node"
	"github.com/dicomesh/dicomesh/node/archive"
	"github.com/dicomesh/dicomesh/node/audit"
	"github.com/dicomesh/dicomesh/node/ingest"
	"github.com/dicomesh/dicomesh/simnet"
)

func demoCmd(e *env) *cobra.Command {
	var (
		slices int
		keep   bool
	)
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run three hospitals on this machine and walk through finding, consenting and pulling a patient's priors",
		Long: `The demo starts a federation of three hospitals in this process (real nodes:
encrypted archives and audit logs on disk, libp2p on loopback sockets, Raft
between them), generates studies at the rural hospital, and walks through what
a transferring physician at the tertiary center does: find the patient's
priors, request them, let the owner check consent, pull them with every block
verified, import them under the local patient ID, and read both audit trails.
Then a patient who refused sharing, and an emergency that breaks the glass.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			dir, err := os.MkdirTemp("", "dicomesh-demo-")
			if err != nil {
				return err
			}
			if keep {
				fmt.Fprintf(e.stdout, "(keeping %s)\n", dir)
			} else {
				defer os.RemoveAll(dir)
			}
			return runDemo(e, dir, slices)
		},
	}
	c.Flags().IntVar(&slices, "slices", 60, "CT slices to generate")
	c.Flags().BoolVar(&keep, "keep", false, "keep the demo's folder instead of deleting it")
	return c
}

func runDemo(e *env, dir string, slices int) error {
	w := e.stdout
	ctx := e.ctx
	n := 0
	step := func(format string, args ...any) {
		n++
		fmt.Fprintf(w, "\n%d. %s\n", n, fmt.Sprintf(format, args...))
	}
	say := func(format string, args ...any) { fmt.Fprintf(w, "   "+format+"\n", args...) }
	start := time.Now()

	step("Start three hospitals, each with its own node: a rural hospital founds the\n   federation, a regional hospital and a tertiary center join with invitations.")
	net, err := simnet.Start(ctx, simnet.Config{Dir: filepath.Join(dir, "hospitals"), Federation: "Valley Health",
		Facilities: []string{"Rural Hospital", "Regional Hospital", "Tertiary Center"}})
	if err != nil {
		return err
	}
	defer net.Close()
	rural, tertiary := net.Members[0], net.Members[2]
	ms, _ := rural.Node.Members()
	for _, m := range ms {
		lead := ""
		if m.Leader {
			lead = " (registry leader)"
		}
		say("%-18s %s  %s%s", m.Name, m.PeerID[:16]+"...", m.Role, lead)
	}
	say("The registry is replicated by all three with Raft over libp2p; there is no central server.")

	step("At the rural hospital, a CT of %d slices and a chest X-ray are taken of\n   Jane Doe, and another patient, John Roe, has a CT. The node ingests them.", slices)
	ct, err := writeStudy(filepath.Join(dir, "scanner", "ct"), "ct", slices, "MRN0001", "DOE", "JANE", "19800101", "F", 1)
	if err != nil {
		return err
	}
	cr, err := writeStudy(filepath.Join(dir, "scanner", "cr"), "cr", 0, "MRN0001", "DOE", "JANE", "19800101", "F", 2)
	if err != nil {
		return err
	}
	roe, err := writeStudy(filepath.Join(dir, "scanner", "roe"), "ct", 8, "MRN0002", "ROE", "JOHN", "19700505", "M", 3)
	if err != nil {
		return err
	}
	ruralCtx := node.WithActor(ctx, audit.Actor{User: "tech.smith"})
	rep, err := rural.Node.Ingest(ruralCtx, nil, filepath.Join(dir, "scanner"))
	if err != nil {
		return err
	}
	say("%d instances stored, compressed and encrypted to a fresh key per study.", rep.Stored)
	say("Each study is published to the registry as a manifest: blinded patient tokens,")
	say("the root of its encrypted blocks, and details sealed to the federation's key.")

	step("Jane Doe is transferred to the tertiary center. Dr. Grey searches the federation\n   by her name, birth date and sex; no demographics leave the tertiary center.")
	grey := node.WithActor(ctx, audit.Actor{User: "dr.grey", Purpose: "TREAT"})
	var cands []node.Candidate
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		cands, err = tertiary.Node.Find(grey, node.PatientFromName("DOE^JANE", "19800101", "F"))
		if err == nil && len(cands) >= 2 {
			break
		}
	}
	if len(cands) < 2 {
		return fmt.Errorf("demo: the studies did not reach the tertiary center's registry replica: %v", err)
	}
	for _, c := range cands {
		say("%s at %s: %s %s, %d instances, %.1f MB (matched on %s)", c.ManifestID[:12], c.Facility, c.StudyDate,
			strings.Join(c.Modalities, ","), c.Instances, float64(c.Bytes)/1e6, strings.Join(c.Matched, "+"))
	}

	ctCand := cands[0]
	for _, c := range cands {
		if strings.Contains(strings.Join(c.Modalities, ","), "CT") {
			ctCand = c
		}
	}
	step("Dr. Grey requests the CT for treatment. The rural hospital checks Jane's consent\n   (no directive; its policy shares for treatment), writes its audit record, and\n   grants: the study key sealed to the tertiary center alone. The blocks are pulled\n   peer to peer, each verified against its content address on arrival.")
	var last blocks.Progress
	t := time.Now()
	st, err := tertiary.Node.Pull(grey, node.PullRequest{Manifest: ctCand.ManifestID, Purpose: "TREAT", User: "dr.grey",
		LocalPatientID: "TC-55512", LocalIssuer: "TERTIARY"}, func(p blocks.Progress) { last = p })
	if err != nil {
		return err
	}
	secs := time.Since(t).Seconds()
	say("%d blocks, %.1f MB of ciphertext in %.2fs; %d instances decrypted and checked", last.Blocks, float64(last.Bytes)/1e6, secs, st.Instances)
	say("against the study's manifest, then committed at once.")
	if err := sameInstances(ctx, tertiary.Node, ct); err != nil {
		return err
	}
	say("Every instance is byte for byte what the rural scanner produced.")

	step("Import reconciliation: the tertiary center knows Jane as TC-55512. The study is\n   served to its PACS under that ID; the original values are kept in the\n   Original Attributes Sequence and no UID changes.")
	local, err := servedFirst(grey, tertiary.Node, st)
	if err != nil {
		return err
	}
	say("Patient ID %s|%s as received becomes %s|%s in the files served locally.", st.Issuer, st.PatientID, local.IssuerOfPatientID, local.PatientID)

	step("John Roe told the rural hospital he does not want his images shared. Staff record\n   his directive in the registry, under his blinded token.")
	clerk := node.WithActor(ctx, audit.Actor{User: "clerk.jones"})
	if _, err := rural.Node.RecordConsent(clerk, node.ConsentInput{PatientID: "MRN0002", Issuer: roe.Patient.Issuer}); err != nil {
		return err
	}
	roeCands, err := tertiary.Node.Find(grey, crypto.Patient{Issuer: roe.Patient.Issuer, ID: "MRN0002"})
	if err != nil || len(roeCands) == 0 {
		return fmt.Errorf("demo: John Roe's study not found: %v", err)
	}
	_, err = tertiary.Node.Pull(grey, node.PullRequest{Manifest: roeCands[0].ManifestID, Purpose: "TREAT", User: "dr.grey"}, nil)
	var denied *node.DeniedError
	if !errors.As(err, &denied) {
		return fmt.Errorf("demo: the request for John Roe's study was not denied: %v", err)
	}
	say("A routine request is refused: %s", denied.Reason)

	step("John Roe arrives unconscious. Dr. Grey invokes break-glass for emergency treatment,\n   with a reason. The rural hospital's policy allows it; the access is flagged.")
	if _, err := tertiary.Node.Pull(grey, node.PullRequest{Manifest: roeCands[0].ManifestID, Purpose: "ETREAT", User: "dr.grey",
		BreakGlass: "unconscious after a road accident, no history available"}, nil); err != nil {
		return err
	}
	say("Granted and pulled; both hospitals' audit trails carry the reason.")

	step("A compliance officer at each hospital reads the audit trail (reading it is itself\n   recorded) and checks that it was not altered.")
	for _, m := range []*simnet.Member{rural, tertiary} {
		officer := audit.Actor{User: "officer." + strings.ToLower(strings.Fields(m.Name)[0])}
		recs, err := m.Node.Audit.Search(ctx, officer, audit.Query{})
		if err != nil {
			return err
		}
		say("%s:", m.Name)
		for _, r := range recs {
			if r.Patient == "" && r.Peer == "" {
				continue
			}
			flag := ""
			if r.BreakGlass != "" {
				flag = "  BREAK-GLASS"
			}
			say("  %s  %-22s %-8s %-12s %-14s %s%s", r.Time.Format("15:04:05"), r.Event.Display(), r.Outcome, r.User, dash(r.Patient), dash(r.Purpose), flag)
		}
		if _, err := m.Node.Audit.Checkpoint(ctx); err != nil {
			return err
		}
		rep, err := audit.Verify(ctx, m.Home.AuditDir(), audit.VerifyOptions{Origin: m.Node.Audit.Origin(), Key: m.Node.Identity.SignKey()})
		if err != nil {
			return err
		}
		say("  %d records, all covered by signed checkpoints: the log verifies.", rep.Records)
	}
	_ = cr
	fmt.Fprintf(w, "\nDone in %.1fs. To run a real node: dicomesh init, dicomesh federation create or join, dicomesh run.\n", time.Since(start).Seconds())
	return nil
}

// writeStudy generates a study for one patient.
func writeStudy(dir, preset string, slices int, id, family, given, birth, sex string, seed int64) (synth.Study, error) {
	spec, err := synth.DefaultSpec(preset)
	if err != nil {
		return synth.Study{}, err
	}
	if slices > 0 {
		spec.Slices = slices
	}
	spec.Seed = seed
	spec.Patient.ID, spec.Patient.Family, spec.Patient.Given, spec.Patient.BirthDate, spec.Patient.Sex = id, family, given, birth, sex
	return synth.Write(dir, spec)
}

// sameInstances checks that every generated file reads back byte-identical
// from n's archive.
func sameInstances(ctx context.Context, n *node.Node, st synth.Study) error {
	for _, f := range st.Files {
		rc, err := n.Archive.ReadInstance(ctx, st.UID, f.SOPInstanceUID)
		if err != nil {
			return err
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return err
		}
		if sum := sha256.Sum256(b); !bytes.Equal(sum[:], f.SHA256[:]) {
			return fmt.Errorf("demo: instance %s differs from the original", f.SOPInstanceUID)
		}
	}
	return nil
}

// servedFirst reads the study's first instance as the node serves it to
// local systems (DICOMweb, DIMSE) and returns what the parser sees.
func servedFirst(ctx context.Context, n *node.Node, st archive.Study) (archive.InstanceMeta, error) {
	full, err := n.Archive.Study(st.UID)
	if err != nil {
		return archive.InstanceMeta{}, err
	}
	rc, err := n.ReadInstance(ctx, st.UID, full.Series[0].Instances[0].SOPInstanceUID)
	if err != nil {
		return archive.InstanceMeta{}, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return archive.InstanceMeta{}, err
	}
	return ingest.Parse(b)
}
