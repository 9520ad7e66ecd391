package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dicomesh/dicomesh/node"
)

// childEnv makes the test binary act as the dicomesh command (TestMain).
const childEnv = "DICOMESH_CLI_CHILD"

// hospital is one facility's home, driven through the real command line in
// separate processes.
type hospital struct {
	t    *testing.T
	home string
	run  *exec.Cmd
}

func newHospital(t *testing.T, name string) *hospital {
	h := &hospital{t: t, home: filepath.Join(t.TempDir(), "home")}
	h.ok("init", "--facility", name)
	return h
}

func (h *hospital) cmd(args ...string) *exec.Cmd {
	c := exec.Command(os.Args[0], append([]string{"--home", h.home}, args...)...)
	c.Env = append(os.Environ(), childEnv+"=1", "DICOMESH_USER=tester")
	return c
}

// ok runs a command to completion and returns its standard output.
func (h *hospital) ok(args ...string) string {
	h.t.Helper()
	var out, errb bytes.Buffer
	c := h.cmd(args...)
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Run(); err != nil {
		h.t.Fatalf("dicomesh %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// try runs a command and returns its output, or "" if it failed.
func (h *hospital) try(args ...string) string {
	out, err := h.cmd(args...).Output()
	if err != nil {
		return ""
	}
	return string(out)
}

// start runs the node in the background on ephemeral loopback ports, with
// any further flags of run, and waits until it is up.
func (h *hospital) start(flags ...string) {
	h.t.Helper()
	os.Remove(filepath.Join(h.home, "node.json"))
	h.run = h.cmd(append([]string{"run", "--p2p", "/ip4/127.0.0.1/tcp/0", "--http", "127.0.0.1:0"}, flags...)...)
	logf, _ := os.Create(filepath.Join(filepath.Dir(h.home), "run.log"))
	h.run.Stdout, h.run.Stderr = logf, logf
	if err := h.run.Start(); err != nil {
		h.t.Fatal(err)
	}
	cmd := h.run
	h.t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	h.eventually("the node to start", func() bool {
		ri, err := node.ReadRunInfo(node.Home(h.home))
		return err == nil && ri.PID == cmd.Process.Pid
	})
}

// kill stops the node as a crash would.
func (h *hospital) kill() {
	h.run.Process.Signal(syscall.SIGKILL)
	h.run.Wait()
}

func (h *hospital) members() []node.Member {
	h.t.Helper()
	var ms []node.Member
	if err := json.Unmarshal([]byte(h.ok("federation", "members", "-o", "json")), &ms); err != nil {
		h.t.Fatal(err)
	}
	return ms
}

func (h *hospital) eventually(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(filepath.Dir(h.home), "run.log"))
			h.t.Fatalf("timed out waiting for %s\n%s", what, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// agree reports whether a hospital sees n active voters and one leader.
func agree(ms []node.Member, n int) bool {
	voters, leaders := 0, 0
	for _, m := range ms {
		if m.Role == "voter" && m.Status == "active" {
			voters++
		}
		if m.Leader {
			leaders++
		}
	}
	return voters == n && leaders == 1
}

// TestFederationProcesses: three hospitals as separate processes on
// loopback form a federation by invitation (one joining before it runs,
// one while it runs), publish a study on ingest and find it from another;
// a follower cut off (paused) misses writes and catches up; the leader is
// killed and the others go on; it restarts and catches up; an invitation
// cannot be used twice; a member left without a quorum queues its
// publication durably, through a crash, until the others are back.
func TestFederationProcesses(t *testing.T) {
	a, b, c := newHospital(t, "Rural Hospital"), newHospital(t, "Regional Hospital"), newHospital(t, "Tertiary Center")
	a.ok("federation", "create", "--name", "Valley")
	a.start()
	tokB := strings.TrimSpace(a.ok("federation", "invite", "--name", "Regional Hospital"))
	b.ok("federation", "join", tokB) // before b runs
	b.start()
	c.start()
	tokC := strings.TrimSpace(b.ok("federation", "invite")) // issued by a follower
	c.ok("federation", "join", tokC)                        // while c runs
	for _, h := range []*hospital{a, b, c} {
		h.eventually("three voters and a leader", func() bool { return agree(h.members(), 3) })
	}

	// The same invitation a second time is refused, by the registry.
	d := newHospital(t, "Fourth")
	var out bytes.Buffer
	j := d.cmd("federation", "join", tokC)
	j.Stdout, j.Stderr = &out, &out
	if err := j.Run(); err == nil || !strings.Contains(out.String(), "used") {
		t.Fatalf("a reused invitation: %v\n%s", err, out.String())
	}

	// A study ingested at the rural hospital is published and found from
	// the tertiary center by patient ID.
	dir := filepath.Join(t.TempDir(), "cr")
	a.ok("synth", "--preset", "cr", "--patient-id", "MRN9", "--issuer", "RURAL", "--out", dir)
	a.ok("ingest", dir)
	c.eventually("the manifest to reach the tertiary center", func() bool {
		return strings.Contains(c.try("find", "--patient-id", "MRN9", "--issuer", "RURAL", "-o", "json"), `"facility": "Rural Hospital"`)
	})

	// The tertiary center pulls it: the owner grants (opt-out policy, for
	// treatment), the blocks arrive verified, the study is stored, and both
	// audit trails record the disclosure.
	var cands []node.Candidate
	json.Unmarshal([]byte(c.ok("find", "--patient-id", "MRN9", "--issuer", "RURAL", "-o", "json")), &cands)
	if len(cands) != 1 {
		t.Fatalf("candidates %+v", cands)
	}
	var pullErr bytes.Buffer
	pull := c.cmd("pull", cands[0].ManifestID, "--purpose", "TREAT", "--user", "dr.house", "--progress")
	pull.Stderr = &pullErr
	if out, err := pull.Output(); err != nil || !strings.Contains(string(out), "stored study") || !strings.Contains(pullErr.String(), "pulling: ") {
		t.Fatalf("pull: %v\n%s\n%s", err, out, pullErr.String())
	}
	if out := c.ok("studies", "--patient-id", "MRN9", "--issuer", "RURAL", "-o", "json"); !strings.Contains(out, `"patient_id": "MRN9"`) {
		t.Fatalf("the pulled study is not listed: %s", out)
	}
	if out := a.ok("audit", "search", "--event", "110106", "-o", "json"); !strings.Contains(out, `"user": "dr.house"`) || !strings.Contains(out, `"purpose": "TREAT"`) {
		t.Fatalf("the owner's audit trail lacks the disclosure: %s", out)
	}
	if out := c.ok("audit", "search", "--event", "110104", "-o", "json"); !strings.Contains(out, `"patient": "RURAL|MRN9"`) {
		t.Fatalf("the recipient's audit trail lacks the transfer: %s", out)
	}

	// The patient's directive denies sharing: the next request is refused
	// with the owner's reason (exit status 4) and audited as denied; an
	// emergency with a reason breaks the glass, flagged; once revoked, the
	// directive is gone.
	dirID := strings.Fields(a.ok("consent", "record", "--patient-id", "MRN9", "--issuer", "RURAL", "--deny"))[2]
	if out := a.ok("consent", "list", "--patient-id", "MRN9", "--issuer", "RURAL", "-o", "json"); !strings.Contains(out, `"effect": "deny"`) {
		t.Fatalf("consent list: %s", out)
	}
	var pullOut bytes.Buffer
	p := c.cmd("pull", cands[0].ManifestID, "--purpose", "TREAT")
	p.Stdout, p.Stderr = &pullOut, &pullOut
	err := p.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 4 || !strings.Contains(pullOut.String(), "directive-deny") {
		t.Fatalf("pull against a deny: %v\n%s", err, pullOut.String())
	}
	if out := a.ok("audit", "search", "--outcome", "denied", "-o", "json"); !strings.Contains(out, `"event": "110106"`) {
		t.Fatalf("the denial is not in the owner's audit trail: %s", out)
	}
	c.ok("pull", cands[0].ManifestID, "--purpose", "ETREAT", "--break-glass", "unconscious in the trauma bay")
	if out := a.ok("audit", "search", "--break-glass", "-o", "json"); !strings.Contains(out, "trauma bay") {
		t.Fatalf("break-glass not recorded at the owner: %s", out)
	}
	if out := a.ok("audit", "flags", "--kind", "break-glass", "-o", "json"); !strings.Contains(out, `"kind": "break-glass"`) {
		t.Fatalf("break-glass not flagged for review at the owner: %s", out)
	}
	a.ok("consent", "revoke", dirID)
	if out := a.ok("consent", "list", "--patient-id", "MRN9", "--issuer", "RURAL", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("revoked directive still listed: %s", out)
	}

	// The owner's audit checkpoints are anchored in the registry: verify
	// through the running node checks them too.
	a.eventually("an anchored audit checkpoint", func() bool {
		return strings.Contains(a.try("audit", "verify"), "anchored in the registry") &&
			!strings.Contains(a.try("audit", "verify"), "(0 anchored")
	})
	if out := a.ok("audit", "verify"); !strings.Contains(out, "ok: the log verifies") {
		t.Fatalf("audit verify: %s", out)
	}

	// A follower is cut off (its process paused: no heartbeats, no
	// answers, as a partition would do); the two others go on writing; once
	// it is back it catches up.
	var follower *hospital
	for _, h := range []*hospital{a, b, c} {
		for _, m := range h.members() {
			if m.Self && !m.Leader && follower == nil {
				follower = h
			}
		}
	}
	follower.run.Process.Signal(syscall.SIGSTOP)
	var writer *hospital
	for _, h := range []*hospital{a, b, c} {
		if h != follower {
			writer = h
		}
	}
	dirP := filepath.Join(t.TempDir(), "paused")
	writer.ok("synth", "--preset", "cr", "--seed", "5", "--patient-id", "MRN5", "--issuer", "PAUSE", "--out", dirP)
	writer.ok("ingest", dirP)
	for _, h := range []*hospital{a, b, c} {
		if h != follower && h != writer {
			h.eventually("the write made while a member was cut off", func() bool {
				return strings.Contains(h.try("find", "--patient-id", "MRN5", "--issuer", "PAUSE", "-o", "json"), `"manifest_id"`)
			})
		}
	}
	follower.run.Process.Signal(syscall.SIGCONT)
	follower.eventually("the cut-off member to catch up", func() bool {
		return strings.Contains(follower.try("find", "--patient-id", "MRN5", "--issuer", "PAUSE", "-o", "json"), `"manifest_id"`)
	})

	// The leader dies: the two others elect another and go on.
	var leader *hospital
	var leaderID string
	var rest []*hospital
	for _, h := range []*hospital{a, b, c} {
		for _, m := range h.members() {
			if m.Leader && m.Self {
				leader, leaderID = h, m.PeerID
			}
		}
	}
	if leader == nil {
		t.Fatal("no leader")
	}
	for _, h := range []*hospital{a, b, c} {
		if h != leader {
			rest = append(rest, h)
		}
	}
	leader.kill()
	for _, h := range rest {
		h.eventually("a new leader", func() bool {
			for _, m := range h.members() {
				if m.Leader && m.PeerID != leaderID {
					return true
				}
			}
			return false
		})
	}
	// Writes go on with two of three: a study ingested at a survivor is
	// found at the other.
	dir2 := filepath.Join(t.TempDir(), "mr")
	rest[0].ok("synth", "--preset", "mr", "--slices", "2", "--patient-id", "MRN7", "--issuer", "CITY", "--out", dir2)
	rest[0].ok("ingest", dir2)
	rest[1].eventually("the second manifest", func() bool {
		return strings.Contains(rest[1].try("find", "--patient-id", "MRN7", "--issuer", "CITY", "-o", "json"), `"manifest_id"`)
	})
	// The dead leader restarts on its stores and catches up.
	leader.start()
	leader.eventually("the restarted member to catch up", func() bool {
		return strings.Contains(leader.try("find", "--patient-id", "MRN7", "--issuer", "CITY", "-o", "json"), `"manifest_id"`)
	})

	// Quorum lost: the two others are paused. The member left alone still
	// ingests, queueing the publication in its outbox, and still answers
	// finds from its replica; it crashes with the publication queued and
	// restarts; once the others are back, the outbox drains and the
	// manifest reaches every member.
	alone, others := leader, rest
	for _, h := range others {
		h.run.Process.Signal(syscall.SIGSTOP)
	}
	dirQ := filepath.Join(t.TempDir(), "quorum")
	alone.ok("synth", "--preset", "cr", "--seed", "11", "--patient-id", "MRN11", "--issuer", "ALONE", "--out", dirQ)
	alone.ok("ingest", dirQ)
	if out := alone.ok("find", "--patient-id", "MRN7", "--issuer", "CITY", "-o", "json"); !strings.Contains(out, `"manifest_id"`) {
		t.Fatalf("without a quorum the member no longer answers finds from its replica: %s", out)
	}
	if out := alone.try("find", "--patient-id", "MRN11", "--issuer", "ALONE", "-o", "json"); strings.Contains(out, `"manifest_id"`) {
		t.Fatalf("a manifest was committed without a quorum: %s", out)
	}
	alone.kill()
	alone.start()
	for _, h := range others {
		h.run.Process.Signal(syscall.SIGCONT)
	}
	for _, h := range []*hospital{a, b, c} {
		h.eventually("the publication queued without a quorum", func() bool {
			return strings.Contains(h.try("find", "--patient-id", "MRN11", "--issuer", "ALONE", "-o", "json"), `"manifest_id"`)
		})
	}
}
