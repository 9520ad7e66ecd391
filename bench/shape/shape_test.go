package main

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	for in, want := range map[string]float64{"100mbit": 12.5e6, "1gbit": 125e6, "8kbit": 1000, "800": 100} {
		got, err := parseRate(in)
		if err != nil || got != want {
			t.Errorf("parseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "fast", "-5mbit", "0mbit"} {
		if _, err := parseRate(in); err == nil {
			t.Errorf("parseRate(%q) accepted", in)
		}
	}
}

func TestClockSchedule(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := clock{link: Link{Rate: 1000, Delay: 20 * time.Millisecond}}
	// Back to back: the second chunk waits for the first to leave.
	if got, want := c.schedule(t0, 100), t0.Add(120*time.Millisecond); !got.Equal(want) {
		t.Errorf("first chunk arrives %v, want %v", got.Sub(t0), want.Sub(t0))
	}
	if got, want := c.schedule(t0, 100), t0.Add(220*time.Millisecond); !got.Equal(want) {
		t.Errorf("second chunk arrives %v, want %v", got.Sub(t0), want.Sub(t0))
	}
	// After the link went idle, a chunk leaves at once.
	t1 := t0.Add(time.Second)
	if got, want := c.schedule(t1, 500), t1.Add(520*time.Millisecond); !got.Equal(want) {
		t.Errorf("chunk after idle arrives %v, want %v", got.Sub(t1), want.Sub(t1))
	}
	if w := (Link{Rate: 12.5e6, Delay: 20 * time.Millisecond, Queue: 1000}).window(); w != 501000 {
		t.Errorf("window = %d, want 501000", w)
	}
}

// TestProxyCarriesBothDirections sends data each way through the proxy and
// checks it arrives whole and in order, and that a half-close reaches the
// other end.
func TestProxyCarriesBothDirections(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	reply := make([]byte, 300<<10)
	rand.Read(reply)
	var got bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := echo.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(&got, c) // until the client's half-close
		c.Write(reply)
	}()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := &Proxy{To: echo.Addr().String(), Link: Link{Rate: 50e6, Delay: time.Millisecond, Queue: 8 << 10}}
	go p.Serve(ln)

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sent := make([]byte, 1<<20)
	rand.Read(sent)
	if _, err := c.Write(sent); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	back, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if !bytes.Equal(got.Bytes(), sent) {
		t.Errorf("server received %d bytes, not the %d sent", got.Len(), len(sent))
	}
	if !bytes.Equal(back, reply) {
		t.Errorf("client received %d bytes, not the %d replied", len(back), len(reply))
	}
	if p.Conns.Load() != 1 || p.Up.Load() != int64(len(sent)) || p.Down.Load() != int64(len(reply)) {
		t.Errorf("proxy counted %d connections, %d bytes up, %d down; want 1, %d, %d",
			p.Conns.Load(), p.Up.Load(), p.Down.Load(), len(sent), len(reply))
	}
}
