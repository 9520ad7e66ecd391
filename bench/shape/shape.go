package main

import (
	"errors"
	"log"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Link is one direction of a shaped link.
type Link struct {
	Rate  float64       // bytes per second
	Delay time.Duration // one-way propagation delay
	Queue int           // bytes that may wait beyond the bandwidth-delay product
}

// window is how many bytes may be in flight in one direction: what the link
// holds (rate times round trip) plus its queue.
func (l Link) window() int {
	return int(l.Rate*2*l.Delay.Seconds()) + l.Queue
}

// clock schedules the bytes of one direction: they leave one after the
// other at the link's rate and arrive Delay later.
type clock struct {
	link Link
	free time.Time // when the link has sent everything scheduled so far
}

// schedule returns when n bytes handed to the link at now arrive.
func (c *clock) schedule(now time.Time, n int) time.Time {
	start := c.free
	if now.After(start) {
		start = now
	}
	c.free = start.Add(time.Duration(float64(n) / c.link.Rate * float64(time.Second)))
	return c.free.Add(c.link.Delay)
}

// Proxy forwards every connection accepted to To through a shaped link in
// each direction.
type Proxy struct {
	To   string
	Link Link

	// Conns counts the connections accepted; Up the bytes carried towards
	// To, Down the bytes carried back.
	Conns, Up, Down atomic.Int64
}

// Serve accepts connections on ln until it is closed.
func (p *Proxy) Serve(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		p.Conns.Add(1)
		go p.handle(c)
	}
}

func (p *Proxy) handle(in net.Conn) {
	out, err := net.Dial("tcp", p.To)
	if err != nil {
		log.Printf("dial %s: %v", p.To, err)
		in.Close()
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); pipe(out, in, p.Link, &p.Up) }()
	go func() { defer wg.Done(); pipe(in, out, p.Link, &p.Down) }()
	wg.Wait()
	in.Close()
	out.Close()
}

type chunk struct {
	data   []byte
	arrive time.Time
}

// pipe copies src to dst through the link, then half-closes dst. Reading
// stops while a window's worth of bytes is in flight, so the sender meets
// the link's back-pressure.
func pipe(dst, src net.Conn, l Link, carried *atomic.Int64) {
	var (
		mu       sync.Mutex
		room     = sync.NewCond(&mu)
		inFlight int
		broken   bool
	)
	window := max(l.window(), 64<<10)
	q := make(chan chunk, 1<<16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range q {
			time.Sleep(time.Until(c.arrive))
			n, err := dst.Write(c.data)
			carried.Add(int64(n))
			mu.Lock()
			inFlight -= len(c.data)
			if err != nil {
				broken = true
			}
			room.Broadcast()
			mu.Unlock()
			if err != nil {
				src.Close() // the other side is gone: stop the sender too
				for range q {
				}
				return
			}
		}
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}()
	ck := clock{link: l}
	for {
		buf := make([]byte, 16<<10)
		n, err := src.Read(buf)
		if n > 0 {
			mu.Lock()
			for inFlight+n > window && inFlight > 0 && !broken {
				room.Wait()
			}
			inFlight += n
			stop := broken
			mu.Unlock()
			if stop {
				break
			}
			q <- chunk{data: buf[:n], arrive: ck.schedule(time.Now(), n)}
		}
		if err != nil {
			break
		}
	}
	close(q)
	<-done
}
