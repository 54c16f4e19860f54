package netmove

import "testing"

func TestCountEstablished(t *testing.T) {
	const header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	tests := []struct {
		name, in string
		want     int
		wantErr  bool
	}{
		{"empty", header, 0, false},
		{"listen and established", header +
			"   0: 3205C70A:1B58 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n" +
			"   1: 3205C70A:1B58 0A05C70A:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1\n" +
			"   2: 3205C70A:1B58 0A05C70A:D2F2 06 00000000:00000000 00:00000000 00000000     0        0 0 3 0 0 0 0 0 0\n" +
			"   3: 3205C70A:1B58 0A05C70A:D2F4 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1\n", 2, false},
		{"truncated line", header + "   0: 3205C70A:1B58\n", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := countEstablished([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}
