// Package plcsim is the lab's stateful workload: a Modbus TCP server that
// simulates a small PLC whose registers change every scan cycle, so that a
// client can tell whether the process kept running, froze, or was restarted
// while it was being live-migrated.
//
// # Register map
//
// Any Modbus unit id is accepted and addresses the same PLC.
//
// Holding registers (function codes 3, 6, 16), addresses 0..NumHoldingRegisters-1:
//
//	0  RegScanHi   scan counter, high word  (read-only)
//	1  RegScanLo   scan counter, low word   (read-only)
//	10 RegMarker   free; by convention the HMI probe writes its marker here
//	2..NumHoldingRegisters-1  free; a value a client writes is kept
//
// The scan counter is a uint32 that grows by one per scan cycle (ScanPeriod,
// 10 ms) and wraps after about 497 days. It counts cycles actually executed,
// not wall time: while the process is frozen (e.g. by a CRIU checkpoint) it
// stands still, and it never jumps when the process resumes. A write that
// touches register 0 or 1 is rejected as a whole with exception 2 (illegal
// data address), so that a client gets told instead of silently ignored.
//
// Input registers (function code 4), addresses 0..NumInputRegisters-1:
//
//	0 InRegTankLevel  tank level, 0..TankMax; fills while the pump is off, drains while it runs
//	1 InRegPump       pump running (0/1)
//	2 InRegPumpStarts number of pump starts (wraps at 65536)
//	3 InRegMode       1 = auto, 0 = hand
//	others read as 0
//
// Coils (function codes 1, 5, 15), addresses 0..NumCoils-1:
//
//	0 CoilPumpCmd  pump command, obeyed in hand mode
//	1 CoilAuto     auto mode (on at start): the PLC starts the pump at
//	               AutoStartLevel and stops it at AutoStopLevel
//	others are free and keep what clients write
//
// Discrete inputs (function code 2), addresses 0..NumDiscreteInputs-1:
//
//	0 DInPump      pump running
//	1 DInHighLevel level >= HighAlarmLevel
//	2 DInLowLevel  level <= LowAlarmLevel
//
// An access beyond those ranges gets exception 2 (illegal data address).
package plcsim

import "time"

// ScanPeriod is the PLC's scan cycle: the scan counter grows by one per period.
const ScanPeriod = 10 * time.Millisecond

// Holding registers.
const (
	RegScanHi           = 0
	RegScanLo           = 1
	RegMarker           = 10
	NumHoldingRegisters = 128
)

// Input registers.
const (
	InRegTankLevel    = 0
	InRegPump         = 1
	InRegPumpStarts   = 2
	InRegMode         = 3
	NumInputRegisters = 16
)

// Coils.
const (
	CoilPumpCmd = 0
	CoilAuto    = 1
	NumCoils    = 64
)

// Discrete inputs.
const (
	DInPump           = 0
	DInHighLevel      = 1
	DInLowLevel       = 2
	NumDiscreteInputs = 16
)

// The simulated process, in tank-level units (0..TankMax).
const (
	TankMax        = 1000
	AutoStartLevel = 800
	AutoStopLevel  = 200
	HighAlarmLevel = 900
	LowAlarmLevel  = 100
	// Rates in level units per second.
	FillRate  = 20
	DrainRate = 30
)
