package exchange

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edge-secrets/anax-agent/protocol"
)

// decodeDoc reads a document as the agbot's API does: field paths checked, then a strict decode.
func decodeDoc(t *testing.T, data []byte, v any) error {
	t.Helper()
	if err := CheckFields(data, v); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func readAnax(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "anax", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAnaxFilesPublish: anax's own test/gov files are accepted unchanged.
func TestAnaxFilesPublish(t *testing.T) {
	services := []string{
		"service_defs__e2edev__netspeed_2.3.0_secrets.json",
		"service_defs__e2edev__service-cpu_1.0_secrets.json",
		"service_defs__IBM__service-cpu_1.2.2_secrets.json",
		"input_files__compcheck__service_location.json",
		"input_files__compcheck__service_location_secrets.json",
		"input_files__compcheck__service_locgps.json",
		"input_files__compcheck__service_gpstest.json",
	}
	for _, name := range services {
		t.Run(name, func(t *testing.T) {
			var s Service
			if err := decodeDoc(t, readAnax(t, name), &s); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if s.Org == "" {
				s.Org = "e2edev@somecomp.com"
			}
			if err := ValidateService(s); err != nil {
				t.Fatalf("validate: %v", err)
			}
			if _, err := s.ProtocolFor(nil); err != nil {
				t.Fatalf("protocol: %v", err)
			}
		})
	}
	policies := []string{
		"deployment_policies__userdev__netspeed_secrets.json",
		"deployment_policies__userdev__location_secrets.json",
		"deployment_policies__userdev__bp_k8s_update.json",
		"input_files__compcheck__business_pol_gpstest.json",
	}
	for _, name := range policies {
		t.Run(name, func(t *testing.T) {
			var p Policy
			if err := decodeDoc(t, readAnax(t, name), &p); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if err := ValidatePolicy(p); err != nil {
				t.Fatalf("validate: %v", err)
			}
		})
	}
	patterns := []string{
		"patterns__e2edev__sloc_secrets.json",
		"patterns__e2edev__sall_secrets.json",
	}
	for _, name := range patterns {
		t.Run(name, func(t *testing.T) {
			var p Pattern
			if err := decodeDoc(t, readAnax(t, name), &p); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if err := ValidatePattern(p); err != nil {
				t.Fatalf("validate: %v", err)
			}
		})
	}
}

// TestAnaxDeploymentOverridesRefused: anax's compcheck pattern overrides a container's
// environment; the agbot does not apply overrides, so it refuses them rather than ignore them.
func TestAnaxDeploymentOverridesRefused(t *testing.T) {
	var p Pattern
	if err := decodeDoc(t, readAnax(t, "input_files__compcheck__pattern_sloc.json"), &p); err != nil {
		t.Fatalf("decode: %v", err)
	}
	err := ValidatePattern(p)
	if err == nil || !strings.Contains(err.Error(), "services[0].serviceVersions[0].deployment_overrides") {
		t.Fatalf("err = %v, want deployment_overrides named", err)
	}
}

// TestDeploymentAsString: the exchange's stringified deployment is read like the object form,
// and checked inside.
func TestDeploymentAsString(t *testing.T) {
	ok := `{"org":"o","url":"svc","version":"1.0.0","arch":"amd64","deployment":"{\"services\":{\"a\":{\"image\":\"i:1\",\"binds\":[\"/tmp:/t:ro\"],\"ports\":[{\"HostPort\":\"5200:6414/tcp\",\"HostIP\":\"0.0.0.0\"}]}}}"}`
	var s Service
	if err := decodeDoc(t, []byte(ok), &s); err != nil {
		t.Fatal(err)
	}
	ps, err := s.Protocol()
	if err != nil {
		t.Fatal(err)
	}
	if c := ps.Deployment.Services["a"]; len(c.Binds) != 1 || len(c.Ports) != 1 {
		t.Fatalf("container = %+v", c)
	}
	bad := strings.Replace(ok, `\"binds\"`, `\"bindz\"`, 1)
	err = decodeDoc(t, []byte(bad), &Service{})
	if err == nil || !strings.Contains(err.Error(), `deployment.services["a"].bindz`) {
		t.Fatalf("err = %v, want the path of bindz", err)
	}
}

// TestUnknownFieldsNamed: a field anax does not have is refused with its JSON path.
func TestUnknownFieldsNamed(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want string
		v               any
	}{
		{"service top level", `{"url":"u","colour":1}`, "field colour:", &Service{}},
		{"required service", `{"requiredServices":[{"url":"u","vers":"1"}]}`, "requiredServices[0].vers", &Service{}},
		{"container field", `{"deployment":{"services":{"web":{"image":"i","mounts":[]}}}}`, `deployment.services["web"].mounts`, &Service{}},
		{"secret decl", `{"deployment":{"services":{"web":{"secrets":{"s":{"fmt":"x"}}}}}}`, `deployment.services["web"].secrets["s"].fmt`, &Service{}},
		{"port", `{"deployment":{"services":{"web":{"ports":[{"HostPort":"1","Proto":"tcp"}]}}}}`, `ports[0].Proto`, &Service{}},
		{"pid namespace", `{"deployment":{"services":{"web":{"pid":"host"}}}}`, "not supported", &Service{}},
		{"node health", `{"service":{"nodeHealth":{"missing_heartbeat":1}}}`, "service.nodeHealth.missing_heartbeat", &Policy{}},
		{"policy input", `{"userInput":[{"serviceUrl":"u","inputs":[{"name":"a","val":1}]}]}`, "userInput[0].inputs[0].val", &Policy{}},
		{"pattern service", `{"services":[{"serviceUrl":"u","nodeHealthy":{}}]}`, "services[0].nodeHealthy", &Pattern{}},
		{"allowNodeLevelSecrets", `{"secretBinding":[{"serviceUrl":"u","allowNodeLevelSecrets":true}]}`, "spelled enableNodeLevelSecrets", &Policy{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckFields([]byte(tc.doc), tc.v)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if !errors.Is(err, protocol.ErrInvalid) {
				t.Fatalf("err = %v, want protocol.ErrInvalid", err)
			}
		})
	}
}

// TestClusterOnlyService: accepted at publish, never proposed, with the reason.
func TestClusterOnlyService(t *testing.T) {
	doc := `{"org":"o","url":"k8s-svc","version":"1.0.0","arch":"amd64","deployment":"","clusterDeployment":{"operatorYamlArchive":"x"},"clusterDeploymentSignature":""}`
	var s Service
	if err := decodeDoc(t, []byte(doc), &s); err != nil {
		t.Fatal(err)
	}
	if err := ValidateService(s); err != nil {
		t.Fatalf("validate: %v", err)
	}
	if _, err := s.Protocol(); !errors.Is(err, ErrClusterOnly) {
		t.Fatalf("Protocol err = %v, want ErrClusterOnly", err)
	}
	s.ClusterDeployment = nil
	if err := ValidateService(s); err == nil {
		t.Fatal("a service with neither deployment was accepted")
	}
}

// TestServiceFieldRules: values anax refuses are refused, naming the field.
func TestServiceFieldRules(t *testing.T) {
	base := func() Service {
		return Service{Org: "o", URL: "svc", Version: "1.0.0", Arch: "amd64",
			Deployment: Deployment{Services: map[string]Container{"a": {Image: "i:1", Raw: map[string]json.RawMessage{"image": json.RawMessage(`"i:1"`)}}}}}
	}
	for _, tc := range []struct {
		name, want string
		edit       func(*Service)
	}{
		{"sharable", "sharable", func(s *Service) { s.Sharable = "sometimes" }},
		{"required version range", "requiredServices[0].versionRange", func(s *Service) {
			s.RequiredServices = []RequiredService{{URL: "dep", Org: "o", VersionRange: "[x"}}
		}},
		{"input type", "userInput[0].type", func(s *Service) { s.UserInput = []UserInputDecl{{Name: "a", Type: "map"}} }},
		{"input default", "userInput[0].defaultValue", func(s *Service) { s.UserInput = []UserInputDecl{{Name: "a", Type: "int", DefaultValue: "ten"}} }},
		{"platform variable", "userInput[0].name", func(s *Service) { s.UserInput = []UserInputDecl{{Name: "HZN_DEVICE_ID", Type: "string"}} }},
		{"bind syntax", `deployment.services["a"].binds[0]`, func(s *Service) {
			s.Deployment.Services["a"].Raw["binds"] = json.RawMessage(`["relative/path:/x"]`)
		}},
		{"network", `deployment.services["a"].network`, func(s *Service) {
			s.Deployment.Services["a"].Raw["network"] = json.RawMessage(`"other"`)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := base()
			tc.edit(&s)
			err := ValidateService(s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to name %q", err, tc.want)
			}
		})
	}
	if err := ValidateService(base()); err != nil {
		t.Fatalf("base service refused: %v", err)
	}
}

// BenchmarkDecodeAnaxService is what publishing costs the agbot per service definition:
// the path check and the strict decode of anax's netspeed definition.
func BenchmarkDecodeAnaxService(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("testdata", "anax", "service_defs__e2edev__netspeed_2.3.0_secrets.json"))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		var s Service
		if err := CheckFields(data, &s); err != nil {
			b.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			b.Fatal(err)
		}
	}
}
