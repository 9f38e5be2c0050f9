package container

import (
	"archive/tar"
	"bytes"
	"errors"
	"strings"
	"testing"
)

const testPasswd = `root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1::/:/sbin/nologin

appuser:x:1000:1001:App:/home/app:/bin/sh
other:x:2000:2000::/:
broken:x:notanumber:5::/:
short:x
numname:x:3000:3000::/:
`

const testGroup = `root:x:0:
appgroup:x:1001:appuser
shared:x:1500:appuser,other
badgroup:x:oops:
`

func TestResolveUserSpec(t *testing.T) {
	tests := []struct {
		name          string
		spec          string
		passwd, group string
		noFiles       bool
		wantUID       int
		wantGID       int
		wantErr       error
		wantMsg       string
	}{
		{name: "name", spec: "appuser", wantUID: 1000, wantGID: 1001},
		{name: "name:group", spec: "appuser:shared", wantUID: 1000, wantGID: 1500},
		{name: "name:gid", spec: "appuser:42", wantUID: 1000, wantGID: 42},
		{name: "uid with entry takes its gid", spec: "1000", wantUID: 1000, wantGID: 1001},
		{name: "uid without entry gets gid 0", spec: "4242", wantUID: 4242, wantGID: 0},
		{name: "uid:gid", spec: "1000:1000", wantUID: 1000, wantGID: 1000},
		{name: "uid:group", spec: "2000:appgroup", wantUID: 2000, wantGID: 1001},
		{name: "root by name", spec: "root", wantUID: 0, wantGID: 0},
		{name: "empty user part is uid 0", spec: ":1500", wantUID: 0, wantGID: 1500},
		{name: "numeric spec without files", spec: "1000:1000", noFiles: true, wantUID: 1000, wantGID: 1000},
		{name: "bare uid without files", spec: "1234", noFiles: true, wantUID: 1234, wantGID: 0},
		{name: "unknown user", spec: "nobody", wantErr: ErrUserNotFound, wantMsg: `no entry "nobody" in the image's /etc/passwd`},
		{name: "unknown group", spec: "appuser:nogroup", wantErr: ErrUserNotFound, wantMsg: `no entry "nogroup" in the image's /etc/group`},
		{name: "name without passwd file", spec: "appuser", noFiles: true, wantErr: ErrUserNotFound},
		{name: "malformed passwd line", spec: "broken", wantErr: ErrUserNotFound, wantMsg: "/etc/passwd line 7 is malformed"},
		{name: "short passwd line", spec: "short", wantErr: ErrUserNotFound, wantMsg: "/etc/passwd line 8 is malformed"},
		{name: "malformed group line", spec: "appuser:badgroup", wantErr: ErrUserNotFound, wantMsg: "/etc/group line 4 is malformed"},
		{name: "uid out of range", spec: "4294967296", wantErr: ErrUserNotFound},
		{name: "gid out of range", spec: "1:2147483648", wantErr: ErrUserNotFound},
		{name: "empty group", spec: "appuser:", wantErr: ErrInvalid},
		{name: "two colons", spec: "a:b:c", wantErr: ErrInvalid},
		{name: "newline", spec: "app\nuser", wantErr: ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			passwd, group := []byte(testPasswd), []byte(testGroup)
			if tc.noFiles {
				passwd, group = nil, nil
			}
			uid, gid, err := resolveUserSpec(tc.spec, passwd, group)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("resolveUserSpec(%q) = %d:%d, %v; want error %v", tc.spec, uid, gid, err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantMsg) {
					t.Errorf("error %q does not say %q", err, tc.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatalf("resolveUserSpec(%q): %v", tc.spec, err)
			}
			if uid != tc.wantUID || gid != tc.wantGID {
				t.Errorf("resolveUserSpec(%q) = %d:%d, want %d:%d", tc.spec, uid, gid, tc.wantUID, tc.wantGID)
			}
		})
	}
}

func TestNeedsLookup(t *testing.T) {
	tests := []struct {
		spec string
		want bool
	}{
		{"1000:1000", false},
		{"0:0", false},
		{"1000", true},
		{"appuser", true},
		{"appuser:1000", true},
		{"1000:appgroup", true},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			if got := needsLookup(tc.spec); got != tc.want {
				t.Errorf("needsLookup(%q) = %v, want %v", tc.spec, got, tc.want)
			}
		})
	}
}

func TestReadSingleFile(t *testing.T) {
	tarOf := func(hdr *tar.Header, body []byte) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
		tw.Close()
		return buf.Bytes()
	}
	big := bytes.Repeat([]byte("x"), maxIDFileSize+1)
	tests := []struct {
		name     string
		stream   []byte
		wantData string
		wantLink string
		wantErr  bool
	}{
		{name: "file", stream: tarOf(&tar.Header{Name: "passwd", Typeflag: tar.TypeReg, Size: 5, Mode: 0o644}, []byte("root\n")), wantData: "root\n"},
		{name: "symlink", stream: tarOf(&tar.Header{Name: "passwd", Typeflag: tar.TypeSymlink, Linkname: "../usr/lib/passwd"}, nil), wantLink: "../usr/lib/passwd"},
		{name: "directory", stream: tarOf(&tar.Header{Name: "passwd/", Typeflag: tar.TypeDir, Mode: 0o755}, nil), wantErr: true},
		{name: "too big", stream: tarOf(&tar.Header{Name: "passwd", Typeflag: tar.TypeReg, Size: int64(len(big)), Mode: 0o644}, big), wantErr: true},
		{name: "empty stream", stream: nil, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data, link, err := readSingleFile(bytes.NewReader(tc.stream))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("readSingleFile = %d bytes, %q; want an error", len(data), link)
				}
				return
			}
			if err != nil || string(data) != tc.wantData || link != tc.wantLink {
				t.Errorf("readSingleFile = %q, %q, %v; want %q, %q", data, link, err, tc.wantData, tc.wantLink)
			}
		})
	}
}
