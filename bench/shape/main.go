package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to accept connections on")
	to := flag.String("to", "", "address every accepted connection is forwarded to")
	rate := flag.String("rate", "100mbit", "rate of each direction: N[kmg]bit")
	rtt := flag.Duration("rtt", 40*time.Millisecond, "round-trip time added (half each way)")
	queue := flag.Int("queue", 256<<10, "bytes queued in each direction beyond the bandwidth-delay product")
	flag.Parse()
	bps, err := parseRate(*rate)
	if err != nil || *to == "" || *rtt < 0 || *queue < 0 {
		fmt.Fprintln(os.Stderr, "usage: shape -listen HOST:PORT -to HOST:PORT [-rate 100mbit] [-rtt 40ms] [-queue BYTES]")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() { <-ctx.Done(); ln.Close() }()
	fmt.Println(ln.Addr())
	p := &Proxy{To: *to, Link: Link{Rate: bps, Delay: *rtt / 2, Queue: *queue}}
	if err := p.Serve(ln); err != nil && ctx.Err() == nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "shape: %d connections, %d bytes up, %d bytes down\n", p.Conns.Load(), p.Up.Load(), p.Down.Load())
}

// parseRate reads a rate such as 100mbit, 1gbit or 512kbit as bytes per
// second.
func parseRate(s string) (float64, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	mult := 1.0
	for _, u := range []struct {
		suffix string
		m      float64
	}{{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.m
			break
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("rate %q: want a positive number of bits per second such as 100mbit", s)
	}
	return v * mult / 8, nil
}
