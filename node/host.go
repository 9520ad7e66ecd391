package node

import (
	"fmt"
	"slices"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/connmgr"
	p2pcrypto "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	p2pconnmgr "github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dicomesh/dicomesh/crypto"
)

// hostConfig is what newHost needs to build a facility's libp2p host.
type hostConfig struct {
	identity *crypto.Identity
	listen   []string
	announce []string                // announced instead of the listen addresses when not empty
	gater    connmgr.ConnectionGater // nil admits every authenticated peer
	metrics  prometheus.Registerer   // nil disables libp2p metrics
}

// newHost builds the libp2p host: TCP only, Noise, yamux, no relay, the
// facility's Ed25519 key as the peer identity. Federation peers are protected
// in the connection manager by the services that use them.
func newHost(c hostConfig) (host.Host, error) {
	priv, err := p2pcrypto.UnmarshalEd25519PrivateKey(c.identity.PrivateSignKey())
	if err != nil {
		return nil, fmt.Errorf("libp2p identity: %w", err)
	}
	cm, err := p2pconnmgr.NewConnManager(64, 256)
	if err != nil {
		return nil, fmt.Errorf("libp2p connection manager: %w", err)
	}
	opts := []libp2p.Option{
		libp2p.Identity(priv),
		libp2p.ListenAddrStrings(c.listen...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.DisableRelay(),
		libp2p.ConnectionManager(cm),
		libp2p.UserAgent("dicomesh"),
	}
	if len(c.announce) > 0 {
		var as []ma.Multiaddr
		for _, a := range c.announce {
			m, err := ma.NewMultiaddr(a)
			if err != nil {
				return nil, fmt.Errorf("announce address %q: %w", a, err)
			}
			as = append(as, m)
		}
		opts = append(opts, libp2p.AddrsFactory(func([]ma.Multiaddr) []ma.Multiaddr { return slices.Clone(as) }))
	}
	if c.gater != nil {
		opts = append(opts, libp2p.ConnectionGater(c.gater))
	}
	if c.metrics != nil {
		opts = append(opts, libp2p.PrometheusRegisterer(c.metrics))
	} else {
		opts = append(opts, libp2p.DisableMetrics())
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("libp2p host: %w", err)
	}
	return h, nil
}

// PeerID is the libp2p peer id of a facility: the hash of its Ed25519
// signing key. It is the facility's id in the federation and the audit trail.
func PeerID(id *crypto.Identity) (peer.ID, error) {
	pub, err := p2pcrypto.UnmarshalEd25519PublicKey(id.SignKey())
	if err != nil {
		return "", fmt.Errorf("facility key: %w", err)
	}
	return peer.IDFromPublicKey(pub)
}
