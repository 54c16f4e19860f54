package plcsim

import (
	"encoding/binary"
	"errors"
	"os"
	"time"
)

// ballast is memory held only to make the process bigger for migration
// benchmarks, optionally rewritten at a steady rate to model a workload
// that dirties pages while pre-copy runs. Only the scan loop touches it.
type ballast struct {
	buf         []byte
	page        int
	pagesPerSec float64
	owed        float64 // fractional pages carried to the next tick
	cursor      int     // next page to dirty
	seed        uint64
}

// maxDirtyStep caps the catch-up after a long pause (such as a checkpoint
// freeze), so that resuming does not dirty a burst of pages at once.
const maxDirtyStep = 100 * time.Millisecond

// newBallast allocates mib MiB and writes every byte, so that the pages are
// resident and not the shared zero page (which CRIU would skip). It returns
// nil for mib == 0.
func newBallast(mib int, dirtyMiBps float64) (*ballast, error) {
	if mib < 0 || dirtyMiBps < 0 {
		return nil, errors.New("ballast size and dirty rate must not be negative")
	}
	if mib == 0 {
		return nil, nil
	}
	page := os.Getpagesize()
	b := &ballast{
		buf:         make([]byte, mib<<20),
		page:        page,
		pagesPerSec: dirtyMiBps * float64(1<<20) / float64(page),
		seed:        0x9e3779b97f4a7c15,
	}
	// Pseudo-random content, so that a transfer that compresses cannot make
	// the ballast vanish and flatter a benchmark.
	for i := 0; i+8 <= len(b.buf); i += 8 {
		binary.LittleEndian.PutUint64(b.buf[i:], b.next())
	}
	return b, nil
}

// next is xorshift64: cheap, non-zero, good enough to defeat compression.
func (b *ballast) next() uint64 {
	b.seed ^= b.seed << 13
	b.seed ^= b.seed >> 7
	b.seed ^= b.seed << 17
	return b.seed
}

// dirty rewrites one word in each of the pages owed for elapsed time. One
// word is enough: the kernel tracks dirtiness per page.
func (b *ballast) dirty(elapsed time.Duration) {
	if b.pagesPerSec == 0 {
		return
	}
	elapsed = min(elapsed, maxDirtyStep)
	b.owed += b.pagesPerSec * elapsed.Seconds()
	pages := len(b.buf) / b.page
	for ; b.owed >= 1; b.owed-- {
		binary.LittleEndian.PutUint64(b.buf[b.cursor*b.page:], b.next())
		b.cursor = (b.cursor + 1) % pages
	}
}
