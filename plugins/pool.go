package plugins

import (
	"context"
	"sync"
)

// PoolConfig sizes a warm instance pool.
type PoolConfig struct {
	// MinIdle instances are kept initialised and ready.
	MinIdle int
	// MaxInstances caps live instances, idle and busy together; Get waits
	// when the cap is reached.
	MaxInstances int
	// MaxEvents is how many events an instance serves before it is
	// replaced; zero means no limit.
	MaxEvents int
}

// PoolStats is a snapshot of a pool's counters.
type PoolStats struct {
	Idle, Busy         int
	Created, Discarded uint64
}

// Pool keeps initialised instances ready. Instances that broke or served
// MaxEvents are discarded, never reused; refills happen in the background.
type Pool struct {
	cfg     PoolConfig
	newInst func(context.Context) (*Instance, error)
	onError func(error)

	mu        sync.Mutex
	idle      []*Instance
	busy      int
	creating  int
	closed    bool
	created   uint64
	discarded uint64
	freed     chan struct{} // signalled when an instance or slot frees up
	refill    chan struct{}
	done      chan struct{}
	wg        sync.WaitGroup
}

func newPool(cfg PoolConfig, newInst func(context.Context) (*Instance, error), onError func(error)) *Pool {
	if cfg.MaxInstances <= 0 {
		cfg.MaxInstances = 64
	}
	cfg.MinIdle = min(max(cfg.MinIdle, 0), cfg.MaxInstances)
	p := &Pool{
		cfg: cfg, newInst: newInst, onError: onError,
		freed:  make(chan struct{}, 1),
		refill: make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	p.wg.Add(1)
	go p.refiller()
	p.kick()
	return p
}

func (p *Pool) kick() {
	select {
	case p.refill <- struct{}{}:
	default:
	}
}

func (p *Pool) signalFreed() {
	select {
	case p.freed <- struct{}{}:
	default:
	}
}

// refiller keeps MinIdle instances ready.
func (p *Pool) refiller() {
	defer p.wg.Done()
	for {
		select {
		case <-p.done:
			return
		case <-p.refill:
		}
		for {
			p.mu.Lock()
			need := !p.closed && len(p.idle)+p.creating < p.cfg.MinIdle && p.liveLocked() < p.cfg.MaxInstances
			if need {
				p.creating++
			}
			p.mu.Unlock()
			if !need {
				break
			}
			inst, err := p.newInst(context.Background())
			p.mu.Lock()
			p.creating--
			if err == nil {
				p.created++
				if p.closed {
					p.mu.Unlock()
					inst.close()
					return
				}
				p.idle = append(p.idle, inst)
			}
			p.mu.Unlock()
			p.signalFreed()
			if err != nil {
				p.onError(err)
				break
			}
		}
	}
}

func (p *Pool) liveLocked() int { return len(p.idle) + p.busy + p.creating }

// Get returns an idle instance, creates one if under the cap, or waits
// until ctx ends.
func (p *Pool) Get(ctx context.Context) (*Instance, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrPoolClosed
		}
		if n := len(p.idle); n > 0 {
			inst := p.idle[n-1]
			p.idle = p.idle[:n-1]
			p.busy++
			p.mu.Unlock()
			p.kick()
			return inst, nil
		}
		if p.liveLocked() < p.cfg.MaxInstances {
			p.creating++
			p.mu.Unlock()
			inst, err := p.newInst(ctx)
			p.mu.Lock()
			p.creating--
			if err != nil {
				p.mu.Unlock()
				p.signalFreed()
				return nil, err
			}
			p.created++
			p.busy++
			p.mu.Unlock()
			p.kick()
			return inst, nil
		}
		p.mu.Unlock()
		select {
		case <-p.freed:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
}

// Put returns an instance after an event. Broken or worn-out instances are
// closed and replaced.
func (p *Pool) Put(inst *Instance) {
	keep := !inst.broken && (p.cfg.MaxEvents == 0 || inst.events < p.cfg.MaxEvents)
	p.mu.Lock()
	p.busy--
	if keep && !p.closed {
		p.idle = append(p.idle, inst)
		p.mu.Unlock()
	} else {
		p.discarded++
		p.mu.Unlock()
		inst.close()
		p.kick()
	}
	p.signalFreed()
}

// Stats reports the pool's counters.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return PoolStats{Idle: len(p.idle), Busy: p.busy, Created: p.created, Discarded: p.discarded}
}

// Close stops the refiller and closes idle instances; busy ones are closed
// as they come back.
func (p *Pool) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	close(p.done)
	p.wg.Wait()
	for _, inst := range idle {
		inst.close()
	}
}
