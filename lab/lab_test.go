package lab

import "testing"

// Down must remove only what the lab makes: a package's own test
// namespaces (capsec-t…, capsec-ck-…) are not the lab's.
func TestIsLabName(t *testing.T) {
	for name, want := range map[string]bool{
		"capsec-fabric": true, "capsec-hmi": true, "capsec-node-a": true, "capsec-up-b": true,
		"capsec-c-node-a-plc1": true, "capsec-t1a2b-fab": false, "capsec-ck-123": false, "eth0": false,
	} {
		if got := isLabName(name); got != want {
			t.Errorf("isLabName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestNodeNaming(t *testing.T) {
	if NodeName(0) != "node-a" || NodeName(2) != "node-c" || NodeIP(1) != "10.77.0.12" || NodeNetns("node-b") != "capsec-node-b" {
		t.Fatalf("naming: %s %s %s %s", NodeName(0), NodeName(2), NodeIP(1), NodeNetns("node-b"))
	}
}
