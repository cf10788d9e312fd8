package xdsclient

import (
	"errors"
	"sync"
)

// Pool holds the xDS clients of a process, one per control-plane address, created on first
// use and shared by every caller that names the address.
type Pool struct {
	opts Options

	mu      sync.Mutex
	clients map[string]*Client
	closed  bool
}

// NewPool returns an empty pool whose clients use opts.
func NewPool(opts Options) *Pool {
	return &Pool{opts: opts, clients: map[string]*Client{}}
}

// Client returns the client of addr, starting it on first use.
func (p *Pool) Client(addr string) (*Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("xds client pool closed")
	}
	if c, ok := p.clients[addr]; ok {
		return c, nil
	}
	c, err := New(addr, p.opts)
	if err != nil {
		return nil, err
	}
	p.clients[addr] = c
	return c, nil
}

// Close closes every client of the pool; later calls of Client fail.
func (p *Pool) Close() {
	p.mu.Lock()
	cs := p.clients
	p.clients, p.closed = nil, true
	p.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}
