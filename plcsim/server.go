package plcsim

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	mb "github.com/simonvetter/modbus"
)

// Server is a running Modbus TCP server in front of a PLC.
type Server struct {
	addr    string
	mbs     *mb.ModbusServer
	clients *clientTracker
	log     *slog.Logger

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	stopErr  error
}

// sweepPeriod is how often quiet sessions are looked for; it only affects
// when a "client disconnected" line is logged.
const sweepPeriod = time.Second

// Serve starts serving p on cfg.Listen. The server runs until ctx ends or
// Close is called; it does not run the scan loop (see PLC.Run).
func Serve(ctx context.Context, p *PLC, cfg Config) (*Server, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	idle := cfg.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	maxClients := cfg.MaxClients
	if maxClients == 0 {
		maxClients = DefaultMaxClients
	}
	addr, err := resolvePort(cfg.Listen)
	if err != nil {
		return nil, err
	}
	clients := newClientTracker(log, idle)
	mbs, err := mb.NewServer(&mb.ServerConfiguration{
		URL:        "tcp://" + addr,
		Timeout:    idle,
		MaxClients: maxClients,
		// The library's own warnings (protocol errors, rejected clients)
		// go through slog like everything else.
		Logger: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}, &registers{plc: p, clients: clients})
	if err != nil {
		return nil, fmt.Errorf("modbus server on %s: %w", addr, err)
	}
	if err := mbs.Start(); err != nil {
		return nil, fmt.Errorf("modbus server listen on %s: %w", addr, err)
	}
	log.Info("plcsim listening", "addr", addr, "scan_period", ScanPeriod,
		"idle_timeout", idle, "max_clients", maxClients)

	s := &Server{addr: addr, mbs: mbs, clients: clients, log: log,
		stop: make(chan struct{}), done: make(chan struct{})}
	go s.watch(ctx)
	return s, nil
}

// resolvePort turns port 0 into a concrete free port, because the library
// calls net.Listen itself and never says which port it got. Reserving by
// listening and closing is racy in principle; it is meant for tests.
func resolvePort(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("listen address %q: %w", listen, err)
	}
	if port != "0" {
		return listen, nil
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return "", fmt.Errorf("reserve a port on %q: %w", listen, err)
	}
	defer l.Close()
	_, port, err = net.SplitHostPort(l.Addr().String())
	if err != nil {
		return "", fmt.Errorf("reserved address %q: %w", l.Addr(), err)
	}
	return net.JoinHostPort(host, port), nil
}

// watch sweeps quiet sessions and stops the server when ctx ends.
func (s *Server) watch(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(sweepPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.shutdown()
			return
		case <-s.stop:
			s.shutdown()
			return
		case now := <-t.C:
			s.clients.sweep(now)
		}
	}
}

func (s *Server) shutdown() {
	s.stopErr = s.mbs.Stop()
	s.clients.closeAll()
	s.log.Info("plcsim stopped listening", "addr", s.addr)
}

// Addr is the address the server listens on, with a concrete port.
func (s *Server) Addr() string { return s.addr }

// Close stops listening and closes every client session. It is safe to call
// more than once and after ctx has ended.
func (s *Server) Close() error {
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
	if s.stopErr != nil {
		return fmt.Errorf("stop modbus server on %s: %w", s.addr, s.stopErr)
	}
	return nil
}

// Run is the whole simulator: a PLC, its server on cfg.Listen, and the scan
// loop, until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	p, err := New(cfg)
	if err != nil {
		return err
	}
	srv, err := Serve(ctx, p, cfg)
	if err != nil {
		return err
	}
	runErr := p.Run(ctx)
	if err := srv.Close(); err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}
