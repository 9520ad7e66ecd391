package simnet

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dicomesh/dicomesh/crypto"
	"github.com/dicomesh/dicomesh/registry"
)

// BenchmarkPublish commits signed PublishManifest commands (about 1 KiB
// each, signatures verified by every replica) on a federation of three
// voters in this process: Raft over libp2p on loopback, raft-wal on disk
// with fsync, 64 commands in flight. "leader": every command is submitted
// at the founding member (the leader); "mixed": half of them at another
// member, which forwards them.
func BenchmarkPublish(b *testing.B) {
	for _, via := range []struct {
		name    string
		members int
	}{{"leader", 1}, {"mixed", 2}} {
		b.Run(via.name, func(b *testing.B) { benchPublish(b, via.members) })
	}
}

func benchPublish(b *testing.B, via int) {
	ctx := context.Background()
	net, err := Start(ctx, Config{Dir: b.TempDir(), Federation: "Bench", Facilities: []string{"A", "B", "C"}})
	if err != nil {
		b.Fatal(err)
	}
	defer net.Close()
	fed, _ := net.Members[0].Node.Registry().Federation()
	owner := net.Members[1].Node
	cmds := make([]registry.Signed, b.N)
	for i := range cmds {
		var tok crypto.Token
		tok.Kind = crypto.TokenID
		rand.Read(tok.Sum[:])
		loc := make([]byte, 700)
		rand.Read(loc)
		m := registry.Manifest{ID: fmt.Sprintf("m%08d", i), Owner: owner.FacilityID, Version: 1, Tokens: []crypto.Token{tok},
			Root: "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi", Bytes: 200 << 20, Locator: loc}
		if cmds[i], err = registry.Sign(owner.Identity, fed, registry.KindPublishManifest, &m, time.Now(), rand.Reader); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(cmds[0])))
	b.ResetTimer()
	var wg sync.WaitGroup
	next := make(chan int)
	for w := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			node := net.Members[w%via].Node
			for i := range next {
				res, err := node.Submit(ctx, cmds[i])
				if err != nil || res.Code != registry.OK {
					b.Errorf("%v %+v", err, res)
				}
			}
		}()
	}
	for i := range cmds {
		next <- i
	}
	close(next)
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "manifests/s")
}
