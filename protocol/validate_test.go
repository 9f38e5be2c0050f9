package protocol

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func withContainer(p *Proposal, f func(c *Container)) {
	c := p.Service.Deployment.Services["web"]
	f(&c)
	p.Service.Deployment.Services["web"] = c
}

func TestProposalValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(p *Proposal)
		limits  Limits
		wantErr string // exact; "" means valid
		wantIs  error  // besides ErrInvalid
	}{
		{"valid", func(p *Proposal) {}, Limits{}, "", nil},
		{"valid without bindings", func(p *Proposal) { p.Bindings = nil }, Limits{}, "", nil},
		{"valid max value", func(p *Proposal) {
			p.Secrets["db_password"] = SecretValue{Key: "k", Value: strings.Repeat("x", DefaultMaxValue)}
		}, Limits{}, "", nil},
		{"valid empty key and value", func(p *Proposal) { p.Secrets["db_password"] = SecretValue{} }, Limits{}, "", nil},

		// Meta.
		{"version", func(p *Proposal) { p.Version = 2 }, Limits{}, "field version: 2 is not protocol version 1: unsupported", ErrUnsupported},
		{"type", func(p *Proposal) { p.Type = TypeUpdate }, Limits{}, `field type: must be proposal, got "update"`, nil},
		{"agreement empty", func(p *Proposal) { p.Agreement = "" }, Limits{}, "field agreementId: must not be empty", nil},
		{"agreement long", func(p *Proposal) { p.Agreement = strings.Repeat("a", 257) }, Limits{}, "field agreementId: must be at most 256 bytes", nil},
		{"agreement char", func(p *Proposal) { p.Agreement = "a b" }, Limits{}, "field agreementId: byte 1 is not one of [A-Za-z0-9_.@+:/-]", nil},
		{"agreement slash", func(p *Proposal) { p.Agreement = "/x" }, Limits{}, "field agreementId: must not start with '/' or '.'", nil},
		{"from empty", func(p *Proposal) { p.From = "" }, Limits{}, "field from: must not be empty", nil},
		{"to char", func(p *Proposal) { p.To = "node\n" }, Limits{}, "field to: byte 4 is not one of [A-Za-z0-9_.@+:/-]", nil},
		{"to is from", func(p *Proposal) { p.To = p.From }, Limits{}, "field to: must differ from from", nil},
		{"seq zero", func(p *Proposal) { p.Seq = 0 }, Limits{}, "field seq: must be at least 1, got 0", nil},
		{"time zero", func(p *Proposal) { p.Time = time.Time{} }, Limits{}, "field time: must be set", nil},

		// Service.
		{"org empty", func(p *Proposal) { p.Service.Org = "" }, Limits{}, "field service.org: must not be empty", nil},
		{"org slash", func(p *Proposal) { p.Service.Org = "a/b" }, Limits{}, "field service.org: byte 1 is not one of [A-Za-z0-9_.@+-]", nil},
		{"url empty", func(p *Proposal) { p.Service.URL = "" }, Limits{}, "field service.url: must not be empty", nil},
		{"url space", func(p *Proposal) { p.Service.URL = "a b" }, Limits{}, "field service.url: byte 1 is a space", nil},
		{"version bad", func(p *Proposal) { p.Service.Version = "1.02" }, Limits{}, `field service.version: version "1.02": part 2 must be a decimal number without leading zeros`, nil},
		{"version four parts", func(p *Proposal) { p.Service.Version = "1.2.3.4" }, Limits{}, `field service.version: version "1.2.3.4": must be x, x.y or x.y.z`, nil},
		{"arch empty", func(p *Proposal) { p.Service.Arch = "" }, Limits{}, "field service.arch: must name an architecture (amd64, arm64, arm, ...)", nil},
		{"arch wildcard", func(p *Proposal) { p.Service.Arch = "*" }, Limits{}, "field service.arch: must name an architecture (amd64, arm64, arm, ...)", nil},
		{"arch upper", func(p *Proposal) { p.Service.Arch = "ARM64" }, Limits{}, `field service.arch: must be "*", empty or an architecture of [a-z0-9_-], byte 0 is not`, nil},

		// Deployment and containers.
		{"no containers", func(p *Proposal) { p.Service.Deployment.Services = nil }, Limits{}, "field service.deployment.services: must have at least one container", nil},
		{"container name", func(p *Proposal) {
			p.Service.Deployment.Services["-x"] = p.Service.Deployment.Services["web"]
		}, Limits{}, `field service.deployment.services["-x"]: container name must match [A-Za-z0-9][A-Za-z0-9_.-]*, byte 0 does not`, nil},
		{"image empty", func(p *Proposal) { withContainer(p, func(c *Container) { c.Image = "" }) }, Limits{}, `field service.deployment.services["web"].image: must not be empty`, nil},
		{"image space", func(p *Proposal) { withContainer(p, func(c *Container) { c.Image = "a b" }) }, Limits{}, `field service.deployment.services["web"].image: byte 1 is a space, control or non-ASCII character`, nil},
		{"command NUL", func(p *Proposal) { withContainer(p, func(c *Container) { c.Command = []string{"a", "b\x00"} }) }, Limits{}, `field service.deployment.services["web"].command[1]: byte 1 is NUL`, nil},
		{"env no equals", func(p *Proposal) { withContainer(p, func(c *Container) { c.Environment = []string{"FOO"} }) }, Limits{}, `field service.deployment.services["web"].environment[0]: must be NAME=value`, nil},
		{"env bad name", func(p *Proposal) { withContainer(p, func(c *Container) { c.Environment = []string{"1FOO=x"} }) }, Limits{}, `field service.deployment.services["web"].environment[0]: variable name must match [A-Za-z_][A-Za-z0-9_]*`, nil},
		{"env twice", func(p *Proposal) { withContainer(p, func(c *Container) { c.Environment = []string{"A=1", "A=2"} }) }, Limits{}, `field service.deployment.services["web"].environment[1]: variable A is set twice (also at environment[0])`, nil},
		{"user bad", func(p *Proposal) { withContainer(p, func(c *Container) { c.User = "root:" }) }, Limits{}, `field service.deployment.services["web"].user: must be user or user:group with parts of 1..32 bytes`, nil},
		{"user char", func(p *Proposal) { withContainer(p, func(c *Container) { c.User = "a b" }) }, Limits{}, `field service.deployment.services["web"].user: must be user or user:group of [A-Za-z0-9_.-]`, nil},
		{"cap_add valid", func(p *Proposal) {
			withContainer(p, func(c *Container) { c.CapAdd = []string{"NET_BIND_SERVICE", "cap_chown"}; c.MaxMemoryMB = 64 })
		}, Limits{}, "", nil},
		{"cap_add ALL", func(p *Proposal) { withContainer(p, func(c *Container) { c.CapAdd = []string{"CHOWN", "all"} }) }, Limits{},
			`field service.deployment.services["web"].cap_add[1]: capability "all": ALL is refused: list the capabilities the service needs`, nil},
		{"cap_add unknown", func(p *Proposal) { withContainer(p, func(c *Container) { c.CapAdd = []string{"CAP_GODMODE"} }) }, Limits{},
			`field service.deployment.services["web"].cap_add[0]: capability "CAP_GODMODE": not a Linux capability (e.g. NET_BIND_SERVICE, CHOWN)`, nil},
		{"cap_add twice", func(p *Proposal) { withContainer(p, func(c *Container) { c.CapAdd = []string{"CHOWN", "CAP_CHOWN"} }) }, Limits{},
			`field service.deployment.services["web"].cap_add[1]: CAP_CHOWN is listed twice (also at cap_add[0])`, nil},
		{"max_memory_mb too small", func(p *Proposal) { withContainer(p, func(c *Container) { c.MaxMemoryMB = 5 }) }, Limits{},
			`field service.deployment.services["web"].max_memory_mb: must be 0 (no limit) or 6..1048576, got 5`, nil},
		{"max_memory_mb negative", func(p *Proposal) { withContainer(p, func(c *Container) { c.MaxMemoryMB = -1 }) }, Limits{},
			`field service.deployment.services["web"].max_memory_mb: must be 0 (no limit) or 6..1048576, got -1`, nil},
		{"declared name bad", func(p *Proposal) {
			withContainer(p, func(c *Container) { c.Secrets["../x"] = SecretDecl{} })
		}, Limits{}, `field service.deployment.services["web"].secrets["../x"]: secret name "../x": must not start with '.'`, ErrInvalidSecretName},
		{"declared name reserved", func(p *Proposal) {
			withContainer(p, func(c *Container) { c.Secrets["etc"] = SecretDecl{} })
		}, Limits{}, `field service.deployment.services["web"].secrets["etc"]: secret name "etc": is a top-level directory a container needs (reserved)`, ErrInvalidSecretName},
		{"format", func(p *Proposal) {
			withContainer(p, func(c *Container) { c.Secrets["db_password"] = SecretDecl{Format: "yaml"} })
		}, Limits{}, `field service.deployment.services["web"].secrets["db_password"].format: must be json or value_only, got "yaml"`, nil},
		{"onUpdate", func(p *Proposal) {
			withContainer(p, func(c *Container) { c.Secrets["db_password"] = SecretDecl{OnUpdate: "signal:SIGKILL"} })
		}, Limits{}, `field service.deployment.services["web"].secrets["db_password"].onUpdate: must be none, restart or signal:<SIGHUP|SIGUSR1|SIGUSR2|SIGINT|SIGTERM|SIGQUIT|SIGWINCH>, got "signal:SIGKILL"`, nil},
		{"conflicting formats", func(p *Proposal) {
			c := Container{Image: "side", Secrets: map[string]SecretDecl{"db_password": {Format: FormatValueOnly}}}
			p.Service.Deployment.Services["sidecar"] = c
		}, Limits{}, `field service.deployment.services["web"].secrets["db_password"].format: is json but container "sidecar" declares the same secret as value_only`, nil},
		{"shared secret same format", func(p *Proposal) {
			c := Container{Image: "side", Secrets: map[string]SecretDecl{"db_password": {Format: FormatJSON}}}
			p.Service.Deployment.Services["sidecar"] = c
		}, Limits{}, "", nil},

		// Bindings.
		{"binding wrong service", func(p *Proposal) { p.Bindings[0].ServiceURL = "other" }, Limits{}, "field secretBinding[0]: does not apply to the proposed service myorg/example.com.web 1.2.3 arm64", nil},
		{"binding version outside", func(p *Proposal) { p.Bindings[0].ServiceVersionRange = "2.0.0" }, Limits{}, "field secretBinding[0]: does not apply to the proposed service myorg/example.com.web 1.2.3 arm64", nil},
		{"binding undeclared secret", func(p *Proposal) {
			p.Bindings[0].Secrets = append(p.Bindings[0].Secrets, BoundSecret{ServiceSecret: "other", ManagerSecret: "x"})
		}, Limits{}, `field secretBinding[0].secrets[2]: service secret "other" is not declared by any container`, nil},
		{"binding bad manager name", func(p *Proposal) { p.Bindings[0].Secrets[0].ManagerSecret = "user/alice" }, Limits{},
			`field secretBinding[0].secrets[0]: secret manager name "user/alice": must be name, user/<user>/name, node/<node>/name or user/<user>/node/<node>/name`, nil},

		// Values.
		{"value missing", func(p *Proposal) { delete(p.Secrets, "service_token") }, Limits{}, `field secrets["service_token"]: is declared by the service but has no value`, nil},
		{"value undeclared", func(p *Proposal) { p.Secrets["extra"] = SecretValue{Key: "k", Value: canaryDB} }, Limits{}, `field secrets["extra"]: is not declared by any container of the service`, nil},
		{"value name bad", func(p *Proposal) { p.Secrets["a/b"] = SecretValue{} }, Limits{}, `field secrets["a/b"]: secret name "a/b": byte 1 is not one of [A-Za-z0-9_.-]`, ErrInvalidSecretName},
		{"value too large", func(p *Proposal) {
			p.Secrets["db_password"] = SecretValue{Key: "k", Value: canaryDB + strings.Repeat("x", DefaultMaxValue)}
		}, Limits{}, `field secrets["db_password"].value: is 65559 bytes, more than the limit 65536`, ErrTooLarge},
		{"value limit configurable", func(p *Proposal) {}, Limits{MaxValue: 10}, `field secrets["db_password"].value: is 23 bytes, more than the limit 10`, ErrTooLarge},
		{"value not UTF-8", func(p *Proposal) { p.Secrets["db_password"] = SecretValue{Key: "k", Value: canaryDB + "\xff"} }, Limits{},
			`field secrets["db_password"].value: must be valid UTF-8 (encode binary secrets, e.g. base64)`, nil},
		{"key too long", func(p *Proposal) { p.Secrets["db_password"] = SecretValue{Key: strings.Repeat("k", 1025)} }, Limits{}, `field secrets["db_password"].key: must be at most 1024 bytes`, nil},
		{"too many secrets", func(p *Proposal) {}, Limits{MaxSecrets: 1}, "field secrets: has 2 secrets, more than the limit 1", ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := testProposal()
			tc.mutate(p)
			err := p.Validate(tc.limits)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want %q", tc.wantErr)
			}
			if err.Error() != tc.wantErr {
				t.Errorf("Validate =\n  %s\nwant\n  %s", err, tc.wantErr)
			}
			if tc.wantIs != ErrUnsupported && !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error does not wrap %v", tc.wantIs)
			}
			assertNoCanary(t, err.Error())
		})
	}
}

func TestUpdateValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(u *Update)
		wantErr string
	}{
		{"valid", func(u *Update) {}, ""},
		{"valid no source", func(u *Update) { c := u.Secrets["db_password"]; c.Source = ""; u.Secrets["db_password"] = c }, ""},
		{"seq 1 is the proposal", func(u *Update) { u.Seq = 1 }, "field seq: must be at least 2, got 1"},
		{"empty", func(u *Update) { u.Secrets = nil }, "field secrets: must change at least one secret"},
		{"name", func(u *Update) { u.Secrets[".x"] = u.Secrets["db_password"] }, `field secrets[".x"]: secret name ".x": must not start with '.'`},
		{"reason", func(u *Update) { c := u.Secrets["db_password"]; c.Reason = "because"; u.Secrets["db_password"] = c },
			`field secrets["db_password"].reason: must be value_updated, node_added, node_removed or resync, got "because"`},
		{"source", func(u *Update) { c := u.Secrets["db_password"]; c.Source = "node//x"; u.Secrets["db_password"] = c },
			`field secrets["db_password"].source: secret manager name "node//x": node segment must not be empty`},
		{"value too large", func(u *Update) {
			c := u.Secrets["db_password"]
			c.Value = strings.Repeat("x", DefaultMaxValue+1)
			u.Secrets["db_password"] = c
		}, `field secrets["db_password"].value: is 65537 bytes, more than the limit 65536`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := testUpdate()
			tc.mutate(u)
			err := u.Validate(Limits{})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr {
				t.Fatalf("Validate = %v, want %q", err, tc.wantErr)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid")
			}
			assertNoCanary(t, err.Error())
		})
	}
}

func TestCheckUpdateNames(t *testing.T) {
	declared := testProposal().DeclaredSecrets()
	if err := CheckUpdateNames(testUpdate(), declared); err != nil {
		t.Fatalf("CheckUpdateNames = %v, want nil", err)
	}
	u := testUpdate()
	u.Secrets["not_mine"] = u.Secrets["db_password"]
	err := CheckUpdateNames(u, declared)
	want := `field secrets["not_mine"]: is not declared by the agreement's service`
	if err == nil || err.Error() != want || !errors.Is(err, ErrInvalid) {
		t.Fatalf("CheckUpdateNames = %v, want %q", err, want)
	}
}

func TestRepliesValidate(t *testing.T) {
	tests := []struct {
		name    string
		m       Message
		wantErr string
	}{
		{"proposal reply declined", &ProposalReply{Meta: meta(TypeProposalReply, nodeID, agbotID, 1), Status: StatusDeclined, Reason: "arch mismatch"}, ""},
		{"proposal reply status", &ProposalReply{Meta: meta(TypeProposalReply, nodeID, agbotID, 1), Status: StatusApplied}, `field status: must be one of accepted, declined, got "applied"`},
		{"update reply status", &UpdateReply{Meta: meta(TypeUpdateReply, nodeID, agbotID, 2), Status: "ok"}, `field status: must be one of applied, duplicate, refused, failed, got "ok"`},
		{"update reply seq", &UpdateReply{Meta: meta(TypeUpdateReply, nodeID, agbotID, 1), Status: StatusApplied}, "field seq: must be at least 2, got 1"},
		{"update reply reason control", &UpdateReply{Meta: meta(TypeUpdateReply, nodeID, agbotID, 2), Status: StatusFailed, Reason: "a\x1bb"}, "field reason: byte 1 is a control character"},
		{"cancel reason long", &Cancel{Meta: meta(TypeCancel, agbotID, nodeID, 3), Reason: strings.Repeat("r", 1025)}, "field reason: must be at most 1024 bytes"},
		{"cancel reply status", &CancelReply{Meta: meta(TypeCancelReply, nodeID, agbotID, 3), Status: StatusRefused}, `field status: must be one of applied, duplicate, got "refused"`},
		{"resync seq zero", &Resync{Meta: meta(TypeResync, nodeID, agbotID, 0)}, "field seq: must be at least 1, got 0"},
		{"resync wrong type", &Resync{Meta: meta(TypeCancel, nodeID, agbotID, 1)}, `field type: must be resync, got "cancel"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.m.Validate(Limits{})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr {
				t.Fatalf("Validate = %v, want %q", err, tc.wantErr)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid")
			}
		})
	}
}

func TestParseOnUpdate(t *testing.T) {
	tests := []struct {
		in      string
		want    OnUpdate
		wantErr bool
	}{
		{"", OnUpdate{Kind: OnUpdateNone}, false},
		{"none", OnUpdate{Kind: OnUpdateNone}, false},
		{"restart", OnUpdate{Kind: OnUpdateRestart}, false},
		{"signal:SIGHUP", OnUpdate{Kind: OnUpdateSignal, Signal: "SIGHUP"}, false},
		{"signal:SIGUSR2", OnUpdate{Kind: OnUpdateSignal, Signal: "SIGUSR2"}, false},
		{"signal:HUP", OnUpdate{}, true},
		{"signal:SIGKILL", OnUpdate{}, true},
		{"signal:SIGSTOP", OnUpdate{}, true},
		{"Restart", OnUpdate{}, true},
		{"signal:", OnUpdate{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseOnUpdate(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseOnUpdate(%q) error = %v, wantErr %v", tc.in, err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid")
			}
			if got != tc.want {
				t.Errorf("ParseOnUpdate(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func assertNoCanary(t *testing.T, s string) {
	t.Helper()
	if strings.Contains(s, "CANARY-") {
		t.Errorf("output leaks a secret value: %s", s)
	}
}

func TestFileContent(t *testing.T) {
	v := SecretValue{Key: "password", Value: "CANARY-a<b>&\"c\n"}
	if got, want := string(v.FileContent(SecretDecl{})), `{"key":"password","value":"CANARY-a\u003cb\u003e\u0026\"c\n"}`; got != want {
		t.Errorf("json FileContent = %s, want %s", got, want)
	}
	if got, want := string(v.FileContent(SecretDecl{Format: FormatJSON})), `{"key":"password","value":"CANARY-a\u003cb\u003e\u0026\"c\n"}`; got != want {
		t.Errorf("json FileContent = %s, want %s", got, want)
	}
	if got := string(v.FileContent(SecretDecl{Format: FormatValueOnly})); got != v.Value {
		t.Errorf("value_only FileContent = %q, want the raw value", got)
	}
}

func TestReplyMeta(t *testing.T) {
	p := testProposal()
	r := &ProposalReply{Meta: p.ReplyMeta(TypeProposalReply), Status: StatusAccepted}
	if r.From != nodeID || r.To != agbotID || r.Seq != 1 || r.Agreement != agreement || r.Version != ProtocolVersion {
		t.Errorf("ReplyMeta = %+v", r.Meta)
	}
	if err := r.Validate(Limits{}); err != nil {
		t.Errorf("reply does not validate: %v", err)
	}
}
