package plcsim

import (
	mb "github.com/simonvetter/modbus"
)

// registers serves the PLC's memory to simonvetter/modbus. It is a separate
// type so that the library's handler methods stay off PLC's API.
type registers struct {
	plc     *PLC
	clients *clientTracker
}

var _ mb.RequestHandler = (*registers)(nil)

// inRange reports whether [addr, addr+qty) lies inside a table of size n.
func inRange(addr, qty uint16, n int) bool {
	return qty > 0 && int(addr)+int(qty) <= n
}

func (r *registers) HandleCoils(req *mb.CoilsRequest) ([]bool, error) {
	r.clients.touch(req.ClientAddr)
	if !inRange(req.Addr, req.Quantity, NumCoils) {
		return nil, mb.ErrIllegalDataAddress
	}
	p := r.plc
	p.mu.Lock()
	defer p.mu.Unlock()
	if req.IsWrite {
		copy(p.coils[req.Addr:], req.Args)
		return nil, nil
	}
	out := make([]bool, req.Quantity)
	copy(out, p.coils[req.Addr:])
	return out, nil
}

func (r *registers) HandleDiscreteInputs(req *mb.DiscreteInputsRequest) ([]bool, error) {
	r.clients.touch(req.ClientAddr)
	if !inRange(req.Addr, req.Quantity, NumDiscreteInputs) {
		return nil, mb.ErrIllegalDataAddress
	}
	p := r.plc
	p.mu.Lock()
	level := p.levelMilli / 1000
	var in [NumDiscreteInputs]bool
	in[DInPump] = p.pump
	in[DInHighLevel] = level >= HighAlarmLevel
	in[DInLowLevel] = level <= LowAlarmLevel
	p.mu.Unlock()
	out := make([]bool, req.Quantity)
	copy(out, in[req.Addr:])
	return out, nil
}

func (r *registers) HandleHoldingRegisters(req *mb.HoldingRegistersRequest) ([]uint16, error) {
	r.clients.touch(req.ClientAddr)
	if !inRange(req.Addr, req.Quantity, NumHoldingRegisters) {
		return nil, mb.ErrIllegalDataAddress
	}
	p := r.plc
	p.mu.Lock()
	defer p.mu.Unlock()
	if req.IsWrite {
		// The scan counter belongs to the PLC: refuse the whole write rather
		// than apply part of it.
		if req.Addr <= RegScanLo {
			return nil, mb.ErrIllegalDataAddress
		}
		copy(p.holding[req.Addr:], req.Args)
		return nil, nil
	}
	// Both words come from one locked read, so a client never sees the
	// high word of one scan with the low word of the next.
	p.holding[RegScanHi] = uint16(p.scan >> 16)
	p.holding[RegScanLo] = uint16(p.scan)
	out := make([]uint16, req.Quantity)
	copy(out, p.holding[req.Addr:])
	return out, nil
}

func (r *registers) HandleInputRegisters(req *mb.InputRegistersRequest) ([]uint16, error) {
	r.clients.touch(req.ClientAddr)
	if !inRange(req.Addr, req.Quantity, NumInputRegisters) {
		return nil, mb.ErrIllegalDataAddress
	}
	p := r.plc
	p.mu.Lock()
	var in [NumInputRegisters]uint16
	in[InRegTankLevel] = uint16(p.levelMilli / 1000)
	in[InRegPump] = b2u(p.pump)
	in[InRegPumpStarts] = p.pumpStarts
	in[InRegMode] = b2u(p.coils[CoilAuto])
	p.mu.Unlock()
	out := make([]uint16, req.Quantity)
	copy(out, in[req.Addr:])
	return out, nil
}

func b2u(b bool) uint16 {
	if b {
		return 1
	}
	return 0
}
