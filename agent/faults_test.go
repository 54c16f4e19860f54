package agent

import (
	"testing"
	"time"
)

func TestParseFault(t *testing.T) {
	var f Faults
	for _, v := range []string{"pause:restore=3s", "corrupt-checkpoint", "pause:send-checkpoint=250ms"} {
		if err := f.Parse(v); err != nil {
			t.Fatalf("%s: %v", v, err)
		}
	}
	if f.Pause["restore"] != 3*time.Second || f.Pause["send-checkpoint"] != 250*time.Millisecond || !f.CorruptCheckpoint {
		t.Fatalf("parsed %+v", f)
	}
	for _, bad := range []string{"pause:restore", "pause:nowhere=1s", "pause:restore=soon", "explode"} {
		if err := f.Parse(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestCorrupterFlipsOneByteOfPages(t *testing.T) {
	a := &Agent{cfg: Config{Faults: Faults{CorruptCheckpoint: true}}, log: discardLogger()}
	hook := a.corrupter()
	inv := []byte{1, 2, 3}
	hook("inventory.img", 0, inv)
	if inv[0] != 1 {
		t.Fatal("corrupted a file that holds no pages")
	}
	p1, p2 := []byte{0x10, 0x20}, []byte{0x30}
	hook("pages-1.img", 0, p1)
	hook("pages-1.img", 2, p2)
	if p1[0] != 0x10^0xff || p1[1] != 0x20 || p2[0] != 0x30 {
		t.Fatalf("want exactly one byte flipped: %x %x", p1, p2)
	}
	if (&Agent{}).corrupter() != nil {
		t.Fatal("corrupter set without the fault")
	}
}

func TestJournalRoundTrip(t *testing.T) {
	a := &Agent{cfg: Config{StateDir: t.TempDir()}, log: discardLogger()}
	j := &journal{ID: "m1", Role: "out", Container: "plc1", Peer: "node-b", State: "dumped", Record: record{Name: "plc1"}}
	if err := a.writeJournal(j); err != nil {
		t.Fatal(err)
	}
	js, err := a.readJournals()
	if err != nil || len(js) != 1 || js[0].State != "dumped" || js[0].Record.Name != "plc1" {
		t.Fatalf("read back %+v, %v", js, err)
	}
	a.dropJournal(j)
	if js, _ := a.readJournals(); len(js) != 0 {
		t.Fatalf("journal left after drop: %+v", js)
	}
}
