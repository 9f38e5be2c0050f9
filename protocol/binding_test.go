package protocol

import (
	"encoding/json"
	"errors"
	"testing"
)

func testBinding() SecretBinding {
	return SecretBinding{
		ServiceOrgid: "myorg", ServiceURL: "example.com.web", ServiceArch: "arm64",
		ServiceVersionRange: "1.0.0",
		Secrets: []BoundSecret{
			{ServiceSecret: "db_password", ManagerSecret: "user/alice/db"},
			{ServiceSecret: "token", ManagerSecret: "token"},
		},
	}
}

func TestValidateBindings(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(bs *[]SecretBinding)
		wantErr string
		wantIs  error
	}{
		{"valid", func(bs *[]SecretBinding) {}, "", nil},
		{"arch any empty", func(bs *[]SecretBinding) { (*bs)[0].ServiceArch = "" }, "", nil},
		{"arch any star", func(bs *[]SecretBinding) { (*bs)[0].ServiceArch = "*" }, "", nil},
		{"version range empty", func(bs *[]SecretBinding) { (*bs)[0].ServiceVersionRange = "" }, "", nil},
		{"org empty", func(bs *[]SecretBinding) { (*bs)[0].ServiceOrgid = "" }, "field secretBinding[0].serviceOrgid: must not be empty", nil},
		{"url empty", func(bs *[]SecretBinding) { (*bs)[0].ServiceURL = "" }, "field secretBinding[0].serviceUrl: must not be empty", nil},
		{"arch bad", func(bs *[]SecretBinding) { (*bs)[0].ServiceArch = "arm 64" }, `field secretBinding[0].serviceArch: must be "*", empty or an architecture of [a-z0-9_-], byte 3 is not`, nil},
		{"version range bad", func(bs *[]SecretBinding) { (*bs)[0].ServiceVersionRange = "[2,1)" },
			`field secretBinding[0].serviceVersionRange: version range "[2,1)": lower bound is above the upper bound`, nil},
		{"no secrets", func(bs *[]SecretBinding) { (*bs)[0].Secrets = nil }, "field secretBinding[0].secrets: must bind at least one secret", nil},
		{"service secret name", func(bs *[]SecretBinding) { (*bs)[0].Secrets[1].ServiceSecret = "tmp" },
			`field secretBinding[0].secrets[1]: secret name "tmp": is a top-level directory a container needs (reserved)`, ErrInvalidSecretName},
		{"manager name", func(bs *[]SecretBinding) { (*bs)[0].Secrets[1].ManagerSecret = "node/n1" },
			`field secretBinding[0].secrets[1]: secret manager name "node/n1": must be name, user/<user>/name, node/<node>/name or user/<user>/node/<node>/name`, nil},
		{"duplicate in binding", func(bs *[]SecretBinding) { (*bs)[0].Secrets[1].ServiceSecret = "db_password" },
			`field secretBinding[0].secrets[1]: service secret "db_password" is bound twice (also at secrets[0])`, nil},
		{"duplicate across overlapping bindings", func(bs *[]SecretBinding) {
			b := testBinding()
			b.ServiceArch = "*"
			b.ServiceVersionRange = "[1.5.0,2.0.0)"
			b.Secrets = b.Secrets[1:]
			*bs = append(*bs, b)
		}, `field secretBinding[1].secrets: service secret "token" is already bound by secretBinding[0] for an overlapping service`, nil},
		{"same secret for disjoint versions", func(bs *[]SecretBinding) {
			(*bs)[0].ServiceVersionRange = "[1.0.0,2.0.0)"
			b := testBinding()
			b.ServiceVersionRange = "2.0.0"
			*bs = append(*bs, b)
		}, "", nil},
		{"same secret for other arch", func(bs *[]SecretBinding) {
			b := testBinding()
			b.ServiceArch = "amd64"
			*bs = append(*bs, b)
		}, "", nil},
		{"same secret for other service", func(bs *[]SecretBinding) {
			b := testBinding()
			b.ServiceURL = "example.com.other"
			*bs = append(*bs, b)
		}, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bs := []SecretBinding{testBinding()}
			tc.mutate(&bs)
			err := ValidateBindings("secretBinding", bs)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateBindings = %v, want nil", err)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr {
				t.Fatalf("ValidateBindings =\n  %v\nwant\n  %s", err, tc.wantErr)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error does not wrap %v", tc.wantIs)
			}
		})
	}
}

func TestBindingMatches(t *testing.T) {
	tests := []struct {
		name                      string
		arch, vrange              string
		org, url, svcArch, svcVer string
		want                      bool
	}{
		{"exact", "arm64", "1.0.0", "myorg", "example.com.web", "arm64", "1.2.3", true},
		{"any arch star", "*", "", "myorg", "example.com.web", "amd64", "0.1", true},
		{"any arch empty", "", "", "myorg", "example.com.web", "arm", "0.1", true},
		{"other arch", "arm64", "", "myorg", "example.com.web", "amd64", "1", false},
		{"below range", "*", "[1.0.0,2.0.0)", "myorg", "example.com.web", "arm64", "0.9", false},
		{"above range", "*", "[1.0.0,2.0.0)", "myorg", "example.com.web", "arm64", "2.0.0", false},
		{"other org", "*", "", "theirorg", "example.com.web", "arm64", "1", false},
		{"other url", "*", "", "myorg", "example.com.web2", "arm64", "1", false},
		{"bad service version", "*", "", "myorg", "example.com.web", "arm64", "v1", false},
		{"bad range", "*", "[", "myorg", "example.com.web", "arm64", "1", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := testBinding()
			b.ServiceArch, b.ServiceVersionRange = tc.arch, tc.vrange
			if got := b.Matches(tc.org, tc.url, tc.svcArch, tc.svcVer); got != tc.want {
				t.Errorf("Matches = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestBoundSecretJSON(t *testing.T) {
	b := BoundSecret{ServiceSecret: "db_password", ManagerSecret: "user/alice/db"}
	got, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"db_password":"user/alice/db"}`; string(got) != want {
		t.Errorf("Marshal = %s, want %s", got, want)
	}
	var back BoundSecret
	if err := json.Unmarshal(got, &back); err != nil || back != b {
		t.Errorf("Unmarshal = %+v, %v, want %+v", back, err, b)
	}
	for _, bad := range []string{`{}`, `{"a":"b","c":"d"}`, `null`, `["a"]`, `{"a":1}`} {
		var x BoundSecret
		err := json.Unmarshal([]byte(bad), &x)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("Unmarshal(%s) = %v, want ErrMalformed", bad, err)
		}
	}
}
