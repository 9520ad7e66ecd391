package canon

import "testing"

func benchMsg() *msg {
	return &msg{
		U: 1 << 40, I: -12345, B: true, Raw: make([]byte, 64), S: "study description",
		Sub: &msg{U: 7, S: "nested"}, List: []string{"id:aa", "demo:bb", "phon:cc"},
		Subs: []*msg{{U: 1}, {S: "x"}, {Raw: make([]byte, 32)}},
	}
}

func BenchmarkMarshal(b *testing.B) {
	m := benchMsg()
	b.SetBytes(int64(len(Marshal(m))))
	for b.Loop() {
		Marshal(m)
	}
}

func BenchmarkUnmarshal(b *testing.B) {
	enc := Marshal(benchMsg())
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		var m msg
		if err := Unmarshal(enc, &m); err != nil {
			b.Fatal(err)
		}
	}
}
