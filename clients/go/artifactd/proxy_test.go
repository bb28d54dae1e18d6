package artifactd_test

import (
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
)

// cuttingProxy relays TCP between the client and a test server, counts the
// bytes each way, and cuts every connection on command or once a number of
// bytes have passed: how the tests drop a connection mid-transfer (as
// test/support/cutting-proxy.ts does for the Node tests).
type cuttingProxy struct {
	URL         string
	listener    net.Listener
	target      string
	up, down    atomic.Int64
	connections atomic.Int64

	mu    sync.Mutex
	open  map[net.Conn]bool
	armed *cutArm
}

type cutArm struct {
	up   bool
	at   int64
	done chan struct{}
}

func startCuttingProxy(t *testing.T, targetURL string) *cuttingProxy {
	t.Helper()
	target, err := url.Parse(targetURL)
	if err != nil {
		t.Fatal(err)
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttingProxy{URL: "http://" + listener.Addr().String(), listener: listener, target: target.Host, open: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(func() {
		_ = listener.Close()
		p.CutNow()
	})
	return p
}

func (p *cuttingProxy) serve() {
	for {
		client, err := p.listener.Accept()
		if err != nil {
			return
		}
		upstream, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		p.connections.Add(1)
		p.mu.Lock()
		p.open[client], p.open[upstream] = true, true
		p.mu.Unlock()
		go p.relay(client, upstream, true)
		go p.relay(upstream, client, false)
	}
}

func (p *cuttingProxy) relay(from, to net.Conn, up bool) {
	defer func() {
		_ = from.Close()
		_ = to.Close()
		p.mu.Lock()
		delete(p.open, from)
		delete(p.open, to)
		p.mu.Unlock()
	}()
	buffer := make([]byte, 32*1024)
	for {
		n, err := from.Read(buffer)
		if n > 0 {
			if _, writeErr := to.Write(buffer[:n]); writeErr != nil {
				return
			}
			p.count(up, int64(n))
		}
		if err != nil {
			return
		}
	}
}

func (p *cuttingProxy) count(up bool, n int64) {
	total := p.down.Add(n)
	if up {
		p.down.Add(-n)
		total = p.up.Add(n)
	}
	p.mu.Lock()
	arm := p.armed
	if arm != nil && arm.up == up && total >= arm.at {
		p.armed = nil
	} else {
		arm = nil
	}
	p.mu.Unlock()
	if arm != nil {
		p.CutNow()
		close(arm.done)
	}
}

// CutAfter cuts every open connection once n more bytes have gone up (client
// → server) or down; the channel closes when it has cut.
func (p *cuttingProxy) CutAfter(up bool, n int64) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	base := p.down.Load()
	if up {
		base = p.up.Load()
	}
	p.armed = &cutArm{up: up, at: base + n, done: make(chan struct{})}
	return p.armed.done
}

// CutNow closes every open connection.
func (p *cuttingProxy) CutNow() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for conn := range p.open {
		_ = conn.Close()
	}
	clear(p.open)
}
