//go:build linux

package linux

import (
	"reflect"
	"strings"
	"testing"
)

// TestParseMountinfo: lines as the kernel writes them, through moby's parser and ours of the
// propagation fields.
func TestParseMountinfo(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    MountInfo
		wantErr bool
	}{
		{
			name: "proc(5) example",
			line: "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue",
			want: MountInfo{ID: 36, Parent: 35, Major: 98, Minor: 0, Root: "/mnt1", Mountpoint: "/mnt2",
				Options: "rw,noatime", Master: 1, FSType: "ext3", Source: "/dev/root", SuperOptions: "rw,errors=continue"},
		},
		{
			name: "publish point, slave of the store group",
			line: "46 43 0:40 /v/token/3 /run/anax-agent/secrets/publish/svc1/token ro,nosuid,nodev,noexec,relatime master:2 - tmpfs anax-secret-store rw,size=1024k,nr_inodes=4096,mode=700,noswap",
			want: MountInfo{ID: 46, Parent: 43, Major: 0, Minor: 40, Root: "/v/token/3",
				Mountpoint: "/run/anax-agent/secrets/publish/svc1/token", Options: "ro,nosuid,nodev,noexec,relatime",
				Master: 2, FSType: "tmpfs", Source: "anax-secret-store", SuperOptions: "rw,size=1024k,nr_inodes=4096,mode=700,noswap"},
		},
		{
			name: "shared and slave and propagate_from",
			line: "60 25 0:40 / /x rw shared:7 master:2 propagate_from:3 - tmpfs tmpfs rw",
			want: MountInfo{ID: 60, Parent: 25, Minor: 40, Root: "/", Mountpoint: "/x", Options: "rw",
				Shared: 7, Master: 2, PropagateFrom: 3, FSType: "tmpfs", Source: "tmpfs", SuperOptions: "rw"},
		},
		{
			name: "unbindable and unknown optional field",
			line: "61 25 0:41 / /y rw unbindable future:9 - tmpfs tmpfs rw",
			want: MountInfo{ID: 61, Parent: 25, Minor: 41, Root: "/", Mountpoint: "/y", Options: "rw",
				Unbindable: true, FSType: "tmpfs", Source: "tmpfs", SuperOptions: "rw"},
		},
		{
			name: "escaped space tab newline backslash",
			line: `62 25 0:42 /a\040b /m\011n\012o\134p rw - tmpfs my\040src rw`,
			want: MountInfo{ID: 62, Parent: 25, Minor: 42, Root: "/a b", Mountpoint: "/m\tn\no\\p", Options: "rw",
				FSType: "tmpfs", Source: "my src", SuperOptions: "rw"},
		},
		{name: "too short", line: "1 2 3:4 / /", wantErr: true},
		{name: "no separator", line: "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 ext3 /dev/root rw", wantErr: true},
		{name: "bad device", line: "36 35 980 / /m rw - ext3 /dev/root rw", wantErr: true},
		{name: "bad group", line: "36 35 98:0 / /m rw shared:x - ext3 /dev/root rw", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			list, err := ParseMountinfo(strings.NewReader(tc.line + "\n"))
			if (err != nil) != tc.wantErr {
				t.Fatalf("error = %v, wantErr %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if len(list) != 1 || !reflect.DeepEqual(list[0], tc.want) {
				t.Errorf("got  %+v\nwant %+v", list, tc.want)
			}
		})
	}
}

func TestParseMountinfoFile(t *testing.T) {
	in := "22 27 0:21 / /proc rw,relatime - proc proc rw\n27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
	got, err := ParseMountinfo(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Mountpoint != "/proc" || got[1].Mountpoint != "/" {
		t.Errorf("got %+v, want /proc and /", got)
	}
	if _, err := ParseMountinfo(strings.NewReader("garbage\n")); err == nil {
		t.Error("ParseMountinfo(garbage) = nil error, want an error")
	}
}
