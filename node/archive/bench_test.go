package archive

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/dicomesh/dicomesh/internal/synth"
)

// ctSlices returns n CT slices of 512x512 16-bit pixels (about 525 KB each)
// from internal/synth, with metadata filled in as ingest would.
func ctSlices(b testing.TB, n int) ([]InstanceMeta, [][]byte) {
	b.Helper()
	spec, err := synth.DefaultSpec("ct")
	if err != nil {
		b.Fatal(err)
	}
	spec.Slices = n
	var metas []InstanceMeta
	var datas [][]byte
	err = synth.Instances(spec, func(name string, data []byte) error {
		i := len(datas)
		metas = append(metas, InstanceMeta{
			SOPClassUID: "1.2.840.10008.5.1.4.1.1.2", SOPInstanceUID: fmt.Sprintf("2.25.1.%d", i),
			SeriesInstanceUID: "2.25.1", StudyInstanceUID: "2.25", TransferSyntaxUID: "1.2.840.10008.1.2.1",
			PatientID: "MRN1", PatientName: "DOE^JANE", StudyDate: "20260301", Modality: "CT",
			SeriesNumber: 1, InstanceNumber: i + 1,
		})
		datas = append(datas, data)
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return metas, datas
}

// BenchmarkCommitStudy stores a study of 100 CT slices (about 52 MB) per
// iteration, durably, from 4 goroutines, as ingest does: with one syncfs per
// commit (the default) and with every block file synced.
func BenchmarkCommitStudy(b *testing.B) {
	metas, datas := ctSlices(b, 100)
	for _, mode := range []struct {
		name    string
		perFile bool
	}{{"syncfs", false}, {"per-file", true}} {
		b.Run(mode.name, func(b *testing.B) {
			a, err := Open(Config{Dir: b.TempDir(), Owner: newOwner(b), PerFileSync: mode.perFile})
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			commitStudies(b, a, metas, datas)
		})
	}
}

func commitStudies(b *testing.B, a *Archive, metas []InstanceMeta, datas [][]byte) {
	const workers = 4
	n := len(datas)
	var total int64
	for _, d := range datas {
		total += int64(len(d))
	}
	ctx := context.Background()
	b.SetBytes(total)
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		uid := fmt.Sprintf("2.25.%d", it)
		tx, err := a.Begin(uid)
		if err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		next := make(chan int)
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					m := metas[i]
					m.StudyInstanceUID = uid
					if _, err := tx.Add(ctx, m, datas[i]); err != nil {
						b.Error(err)
					}
				}
			}()
		}
		for i := range n {
			next <- i
		}
		close(next)
		wg.Wait()
		if _, err := tx.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "instances/s")
}
