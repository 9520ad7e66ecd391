package node

import (
	"testing"
)

// TestHostAnnounces checks that a host with announce addresses gives those,
// not its listen addresses, to the peers and the registry, and that a bad
// one is refused.
func TestHostAnnounces(t *testing.T) {
	n := openTestNode(t)
	want := "/dns4/pacs.example.org/tcp/4801"
	h, err := newHost(hostConfig{identity: n.Identity, listen: []string{"/ip4/127.0.0.1/tcp/0"}, announce: []string{want}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if as := h.Addrs(); len(as) != 1 || as[0].String() != want {
		t.Errorf("host announces %v, want [%s]", as, want)
	}
	if len(h.Network().ListenAddresses()) == 0 {
		t.Error("the host listens nowhere")
	}
	if _, err := newHost(hostConfig{identity: n.Identity, listen: []string{"/ip4/127.0.0.1/tcp/0"}, announce: []string{"127.0.0.1:4801"}}); err == nil {
		t.Error("a host-port announce address was accepted")
	}
}

func TestListenLoopback(t *testing.T) {
	for _, bad := range []string{"0.0.0.0:0", ":0", "localhost:0", "10.1.2.3:0", "nonsense"} {
		if l, err := listenLoopback(bad); err == nil {
			l.Close()
			t.Errorf("listenLoopback(%q) listened", bad)
		}
	}
	for _, good := range []string{"127.0.0.1:0", "[::1]:0"} {
		l, err := listenLoopback(good)
		if err != nil {
			if good == "[::1]:0" {
				continue // no IPv6 loopback on this machine
			}
			t.Fatalf("listenLoopback(%q): %v", good, err)
		}
		l.Close()
	}
}
