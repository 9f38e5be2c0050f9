package linux

import "testing"

func TestTmpfsOptions(t *testing.T) {
	tests := []struct {
		name    string
		in      Tmpfs
		want    string
		wantErr bool
	}{
		{"store", Tmpfs{Size: 16 << 20, Inodes: 4096, Mode: 0o700, NoSwap: true},
			"size=16777216,nr_inodes=4096,mode=0700,uid=0,gid=0,noswap", false},
		{"no noswap on old kernels", Tmpfs{Size: 1 << 20, Inodes: 64, Mode: 0o700},
			"size=1048576,nr_inodes=64,mode=0700,uid=0,gid=0", false},
		{"owner", Tmpfs{Size: 4096, Inodes: 1, Mode: 0o500, UID: 1000, GID: 1001},
			"size=4096,nr_inodes=1,mode=0500,uid=1000,gid=1001", false},
		{"unbounded size refused", Tmpfs{Inodes: 1, Mode: 0o700}, "", true},
		{"unbounded inodes refused", Tmpfs{Size: 1, Mode: 0o700}, "", true},
		{"bad mode", Tmpfs{Size: 1, Inodes: 1, Mode: 0o10000}, "", true},
		{"negative uid", Tmpfs{Size: 1, Inodes: 1, Mode: 0o700, UID: -1}, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.in.Options()
			if (err != nil) != tc.wantErr {
				t.Fatalf("Options() error = %v, wantErr %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("Options() = %q, want %q", got, tc.want)
			}
		})
	}
}
