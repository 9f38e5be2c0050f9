package protocol

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// Canary values: leak scans grep for "CANARY-".
const (
	canaryDB    = "CANARY-db-password-7f3a"
	canaryToken = "CANARY-service-token-91c2"
)

var (
	testTime  = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	agbotID   = "agbot1"
	nodeID    = "myorg/node1"
	agreement = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
)

func testProposal() *Proposal {
	return &Proposal{
		Meta: Meta{Version: ProtocolVersion, Type: TypeProposal, Agreement: agreement,
			From: agbotID, To: nodeID, Seq: 1, Time: testTime},
		Service: Service{
			Org: "myorg", URL: "example.com.web", Version: "1.2.3", Arch: "arm64",
			Deployment: Deployment{Services: map[string]Container{
				"web": {
					Image:       "localhost/web:1.2.3",
					Command:     []string{"/web", "-listen", ":8080"},
					Environment: []string{"LOG_LEVEL=info", "REGION=eu"},
					User:        "1000:1000",
					Secrets: map[string]SecretDecl{
						"db_password":   {Description: "database password", OnUpdate: "signal:SIGHUP"},
						"service_token": {Description: "API token", Format: FormatValueOnly, OnUpdate: "restart"},
					},
				},
			}},
		},
		Bindings: []SecretBinding{{
			ServiceOrgid: "myorg", ServiceURL: "example.com.web", ServiceArch: "*",
			ServiceVersionRange: "[1.0.0,2.0.0)", EnableNodeLevelSecrets: true,
			Secrets: []BoundSecret{
				{ServiceSecret: "db_password", ManagerSecret: "user/alice/db"},
				{ServiceSecret: "service_token", ManagerSecret: "token"},
			},
		}},
		Secrets: map[string]SecretValue{
			"db_password":   {Key: "password", Value: canaryDB},
			"service_token": {Key: "token", Value: canaryToken},
		},
	}
}

// proposalWithSecrets declares and resolves n secrets (benchmarks: 10).
func proposalWithSecrets(n int) *Proposal {
	p := testProposal()
	c := p.Service.Deployment.Services["web"]
	c.Secrets = map[string]SecretDecl{}
	p.Secrets = map[string]SecretValue{}
	p.Bindings[0].Secrets = nil
	for i := range n {
		name := fmt.Sprintf("secret_%02d", i)
		c.Secrets[name] = SecretDecl{Description: "bench secret"}
		p.Secrets[name] = SecretValue{Key: "k", Value: fmt.Sprintf("CANARY-bench-%02d-%s", i, "0123456789abcdef0123456789abcdef")}
		p.Bindings[0].Secrets = append(p.Bindings[0].Secrets, BoundSecret{ServiceSecret: name, ManagerSecret: name})
	}
	p.Service.Deployment.Services["web"] = c
	return p
}

func testUpdate() *Update {
	return &Update{
		Meta: Meta{Version: ProtocolVersion, Type: TypeUpdate, Agreement: agreement,
			From: agbotID, To: nodeID, Seq: 2, Time: testTime.Add(time.Hour)},
		Secrets: map[string]ChangedSecret{
			"db_password": {SecretValue: SecretValue{Key: "password", Value: canaryDB + "-v2"},
				Reason: ReasonNodeAdded, Source: "user/alice/node/node1/db"},
		},
	}
}

func meta(t MessageType, from, to string, seq uint64) Meta {
	return Meta{Version: ProtocolVersion, Type: t, Agreement: agreement, From: from, To: to, Seq: seq, Time: testTime}
}

// allMessages is one valid message of every type.
func allMessages() map[string]Message {
	return map[string]Message{
		"proposal":       testProposal(),
		"proposal_reply": &ProposalReply{Meta: meta(TypeProposalReply, nodeID, agbotID, 1), Status: StatusAccepted},
		"update":         testUpdate(),
		"update_reply":   &UpdateReply{Meta: meta(TypeUpdateReply, nodeID, agbotID, 2), Status: StatusApplied},
		"cancel":         &Cancel{Meta: meta(TypeCancel, agbotID, nodeID, 3), Reason: "policy changed"},
		"cancel_reply":   &CancelReply{Meta: meta(TypeCancelReply, nodeID, agbotID, 3), Status: StatusApplied},
		"resync":         &Resync{Meta: meta(TypeResync, nodeID, agbotID, 2), Reason: "tmpfs empty after reboot"},
	}
}

// parties is an agbot and a node that pinned each other's keys.
type parties struct {
	agbotKeys, nodeKeys *PrivateKeys
	agbot, node         *Endpoint
}

var cachedKeys []*PrivateKeys

// fixedKeys derives test key set i from fixed seeds, so golden files and the fuzz corpus
// stay valid from run to run. Never use such keys outside tests.
func fixedKeys(t testing.TB, i int) *PrivateKeys {
	t.Helper()
	seed := func(label string) []byte {
		s := sha256.Sum256([]byte(fmt.Sprintf("anax-agent test key %d %s", i, label)))
		return s[:]
	}
	data, err := json.Marshal(keyFile{Format: keyFileFormat, Ed25519Seed: seed("ed25519"),
		X25519: seed("x25519"), MLKEM768X25519: seed("hybrid")})
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseKeys(data)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testKeys returns fixed key sets 0..n-1, parsed once per test binary.
func testKeys(t testing.TB, n int) []*PrivateKeys {
	t.Helper()
	for len(cachedKeys) < n {
		cachedKeys = append(cachedKeys, fixedKeys(t, len(cachedKeys)))
	}
	return cachedKeys[:n]
}

func newParties(t testing.TB, hybrid bool) *parties {
	ks := testKeys(t, 2)
	a, n := ks[0], ks[1]
	if !hybrid {
		a, n = a.WithoutHybrid(), n.WithoutHybrid()
	}
	return &parties{
		agbotKeys: a, nodeKeys: n,
		agbot: &Endpoint{ID: agbotID, Keys: a, Peers: StaticKeyRing{nodeID: n.Public()}},
		node:  &Endpoint{ID: nodeID, Keys: n, Peers: StaticKeyRing{agbotID: a.Public()}},
	}
}
