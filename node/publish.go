package node

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/node/archive"
	"github.com/dicomesh/dicomesh/node/audit"
	"github.com/dicomesh/dicomesh/registry"
)

var randReader = rand.Reader

// hclog bridges Raft's logger to the node's (warnings and above).
func (n *Node) hclog() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: slogWriter{n}})
}

type slogWriter struct{ n *Node }

func (w slogWriter) Write(p []byte) (int, error) {
	w.n.log.Warn(strings.TrimSpace(string(p)), "component", "raft")
	return len(p), nil
}

// manifestID is the registry id of one of this facility's studies: stable
// across versions, opaque to everyone else (an HMAC of the study UID under
// a key derived from the facility's identity).
func (n *Node) manifestID(studyUID string) string {
	k := n.Identity.DeriveKey("manifest id")
	m := hmac.New(sha256.New, k[:])
	m.Write([]byte(studyUID))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

func cutPatient(p string) (issuer, id string, ok bool) { return strings.Cut(p, "|") }

// patientOf is a study's patient as the token functions want it.
func patientOf(st archive.Study) crypto.Patient {
	family, given, _ := strings.Cut(st.PatientName, "^")
	given, _, _ = strings.Cut(given, "^")
	return crypto.Patient{Issuer: st.Issuer, ID: st.PatientID, Family: family, Given: given, BirthDate: st.BirthDate, Sex: st.Sex}
}

// publishCommand builds the command that publishes the current version of
// one of this facility's studies, or nil when the registry already has it.
func (rt *fedRuntime) publishCommand(studyUID string) (registry.Signed, error) {
	st, err := rt.n.Archive.Study(studyUID)
	if err != nil {
		return nil, err
	}
	if st.Source != "" {
		return nil, nil // received studies are announced as holdings, not published
	}
	sec, err := rt.mySecrets()
	if err != nil {
		return nil, err
	}
	dir, err := sec.DirectoryIdentity()
	if err != nil {
		return nil, err
	}
	var series, instances uint64 = uint64(len(st.Series)), uint64(st.Instances)
	loc, err := registry.SealLocator(dir.Recipient().String(), registry.Locator{StudyDate: st.StudyDate, Modalities: st.Modalities,
		BodyParts: st.BodyParts, Description: st.Description, Series: series, Instances: instances})
	if err != nil {
		return nil, err
	}
	m := registry.Manifest{ID: rt.n.manifestID(st.UID), Owner: rt.n.FacilityID, Version: 1,
		Tokens: crypto.PatientTokens(sec.Linkage, patientOf(st)), Root: st.Root.String(), Bytes: uint64(st.Bytes), Locator: loc}
	kind := registry.KindPublishManifest
	if cur, _, ok := rt.fsm.Manifest(m.ID); ok {
		if cur.Root == m.Root {
			return nil, nil
		}
		kind, m.Version = registry.KindReplaceManifest, cur.Version+1
	}
	return registry.Sign(rt.n.Identity, rt.federationID(), kind, &m, time.Now(), randReader)
}

// The outbox: what this facility has to tell the registry, kept on disk
// until the registry took it, so that writes survive a lost quorum and a
// restart. An entry is a file: "<seq>.pub" holds a study UID to publish
// (the command is built when it is sent, from the replica's state), and
// "<seq>.cmd" a signed command.
func (n *Node) outboxDir() string { return n.Home.Path("outbox") }

// queue adds an entry to the outbox, durably.
func (n *Node) queue(ext string, data []byte) error {
	dir := n.outboxDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	name := fmt.Sprintf("%020d%s", time.Now().UnixNano(), ext)
	if err := writeFileAtomic(filepath.Join(dir, name), data, 0o600); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return nil
}

// queuePublish records that studies must be published.
func (n *Node) queuePublish(studies []archive.Study) error {
	if _, err := n.loadFed(); err != nil {
		return nil // not in a federation: nothing to publish
	}
	var errs []error
	for _, st := range studies {
		errs = append(errs, n.queue(".pub", []byte(st.UID)))
	}
	if rt := n.runtime(); rt != nil {
		rt.nudge()
	}
	return errors.Join(errs...)
}

// Outbox lists the entries waiting, oldest first.
func (n *Node) Outbox() ([]string, error) {
	es, err := os.ReadDir(n.outboxDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range es {
		if ext := filepath.Ext(e.Name()); ext == ".pub" || ext == ".cmd" {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out)
	return out, nil
}

// drain sends the outbox to the registry in order. An entry leaves the
// outbox once the registry applied or definitively refused it; on a
// transport failure the rest waits for the next round.
func (rt *fedRuntime) drain(ctx context.Context) {
	if fed, _ := rt.fsm.Federation(); fed == "" {
		return
	}
	names, err := rt.n.Outbox()
	if err != nil || len(names) == 0 {
		return
	}
	for _, name := range names {
		path := filepath.Join(rt.n.outboxDir(), name)
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		cmd := registry.Signed(data)
		if filepath.Ext(name) == ".pub" {
			if cmd, err = rt.publishCommand(string(data)); err != nil {
				rt.n.log.Warn("cannot build a manifest; it stays queued", "err", err)
				return
			}
		}
		if cmd != nil {
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			res, err := rt.submit(sctx, cmd)
			cancel()
			if err != nil {
				return // no quorum: try again later
			}
			if res.Code != registry.OK {
				rt.n.log.Warn("the registry refused a queued command", "code", res.Code.String(), "reason", res.Reason)
			}
			out := audit.Success
			if res.Code != registry.OK {
				out = audit.Denied
			}
			if c, _, err := registry.Open(cmd); err == nil && (c.Kind == registry.KindPublishManifest || c.Kind == registry.KindReplaceManifest) {
				// The manifest (tokens, sealed details) left the facility.
				r := audit.Record{Event: audit.EventExport, Action: audit.ActionCreate, Outcome: out, OutcomeDesc: res.Reason,
					Study: string(data), Query: "manifest published to the registry"}
				if st, err := rt.n.Archive.Study(string(data)); err == nil {
					r.Patient = patient(st)
				}
				rt.n.record(ctx, r)
			} else if err == nil {
				rt.n.record(ctx, audit.Record{Event: audit.EventNetworkEntry, Action: audit.ActionUpdate, Outcome: out,
					OutcomeDesc: res.Reason, Query: "registry command " + c.Kind.String()})
			}
		}
		os.Remove(path)
	}
	syncDir(rt.n.outboxDir())
}

// memberJSON is one member as `federation members -o json` lists it.
type memberJSON struct {
	Name     string   `json:"name"`
	PeerID   string   `json:"peer_id"`
	Role     string   `json:"role"`
	Status   string   `json:"status"`
	Leader   bool     `json:"leader"`
	Self     bool     `json:"self"`
	Addrs    []string `json:"addresses"`
	LastSeen string   `json:"last_seen,omitempty"`
	Admitted string   `json:"admitted"`
}

// Member is a facility of the federation as this node sees it.
type Member = memberJSON

// Members lists the federation's facilities from the running node's
// replica, with who leads and when each was last connected.
func (n *Node) Members() ([]Member, error) {
	rt := n.runtime()
	if rt == nil {
		return n.cachedMembers()
	}
	return rt.memberList(rt.fsm.Facilities()), nil
}

func (rt *fedRuntime) memberList(facs []registry.Facility) []Member {
	_, leader := rt.r.LeaderWithID()
	var out []Member
	for _, f := range facs {
		m := Member{Name: f.Name, PeerID: f.ID, Role: f.Role.String(), Status: f.Status.String(), Leader: string(leader) == f.ID,
			Self: f.ID == rt.n.FacilityID, Addrs: f.Addrs, Admitted: time.UnixMilli(f.AdmittedAt).UTC().Format(time.RFC3339)}
		if m.Addrs == nil {
			m.Addrs = []string{}
		}
		if m.Self {
			m.LastSeen = time.Now().UTC().Format(time.RFC3339)
		} else if pid, err := peerDecode(f.ID); err == nil && len(rt.h.Network().ConnsToPeer(pid)) > 0 {
			m.LastSeen = time.Now().UTC().Format(time.RFC3339)
		}
		out = append(out, m)
	}
	return out
}

const membersCache = "members.json"

func (rt *fedRuntime) writeMembersCache(facs []registry.Facility) {
	ms := rt.memberList(facs)
	for i := range ms {
		// What changes from moment to moment is not cached, so that the
		// file is written only when the membership changes.
		ms[i].Leader, ms[i].LastSeen = false, ""
	}
	b, _ := json.MarshalIndent(ms, "", "  ")
	path := rt.n.Home.Path(membersCache)
	if old, err := os.ReadFile(path); err == nil && string(old) == string(b) {
		return
	}
	os.WriteFile(path, b, 0o600)
}

// cachedMembers is the member list the node wrote when it last ran.
func (n *Node) cachedMembers() ([]Member, error) {
	if _, err := n.loadFed(); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(n.Home.Path(membersCache))
	if errors.Is(err, os.ErrNotExist) {
		return []Member{}, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Member
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Leader, out[i].LastSeen = false, "" // as of the last run, not now
	}
	return out, nil
}

func peerDecode(s string) (peer.ID, error) { return peer.Decode(s) }

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
