package protocol

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"
)

// Limits bound what a receiver accepts. The zero value of a field means its default.
type Limits struct {
	MaxEnvelope int // bytes of a sealed envelope; default DefaultMaxEnvelope (1 MiB)
	MaxValue    int // bytes of one secret value; default DefaultMaxValue (64 KiB)
	MaxSecrets  int // secrets in one proposal or update; default DefaultMaxSecrets
}

// Defaults of Limits (design §3).
const (
	DefaultMaxEnvelope = 1 << 20
	DefaultMaxValue    = 64 << 10
	DefaultMaxSecrets  = 128
)

// Fixed bounds of fields that never hold a secret.
const (
	maxContainers   = 32
	maxArgs         = 256
	maxArgLen       = 4096
	maxImageLen     = 512
	maxKeyLen       = 1024
	maxTextLen      = 1024 // descriptions, reasons
	maxURLLen       = 1024
	maxOrgLen       = 255
	maxContainerLen = 63
)

func (l Limits) withDefaults() Limits {
	if l.MaxEnvelope <= 0 {
		l.MaxEnvelope = DefaultMaxEnvelope
	}
	if l.MaxValue <= 0 {
		l.MaxValue = DefaultMaxValue
	}
	if l.MaxSecrets <= 0 {
		l.MaxSecrets = DefaultMaxSecrets
	}
	return l
}

func (m *Meta) validate(want MessageType, minSeq uint64) error {
	if m.Version != ProtocolVersion {
		return fmt.Errorf("field version: %d is not protocol version %d: %w", m.Version, ProtocolVersion, ErrUnsupported)
	}
	if m.Type != want {
		return invalid("type", "must be %s, got %s", want, quote(string(m.Type)))
	}
	if err := ValidateID("agreementId", m.Agreement); err != nil {
		return err
	}
	if err := ValidateID("from", m.From); err != nil {
		return err
	}
	if err := ValidateID("to", m.To); err != nil {
		return err
	}
	if m.From == m.To {
		return invalid("to", "must differ from from")
	}
	if m.Seq < minSeq {
		return invalid("seq", "must be at least %d, got %d", minSeq, m.Seq)
	}
	if m.Time.IsZero() {
		return invalid("time", "must be set")
	}
	return nil
}

// Validate checks a proposal: header fields, the service and its deployment, the bindings,
// and that the resolved values are exactly the declared secrets, each within the limits.
func (p *Proposal) Validate(l Limits) error {
	l = l.withDefaults()
	if err := p.Meta.validate(TypeProposal, 1); err != nil {
		return err
	}
	declared, err := p.Service.validate("service")
	if err != nil {
		return err
	}
	if n := len(p.AgreementKey); n != 0 && n != AgreementKeySize {
		return invalid("agreementKey", "must be %d bytes, got %d", AgreementKeySize, n)
	}
	if err := ValidateBindings("secretBinding", p.Bindings); err != nil {
		return err
	}
	if err := validateProperties("properties", p.Properties); err != nil {
		return err
	}
	s := &p.Service
	for i := range p.Bindings {
		b := &p.Bindings[i]
		f := fmt.Sprintf("secretBinding[%d]", i)
		applies := false
		for _, svc := range s.All() {
			applies = applies || b.Matches(svc.Org, svc.URL, svc.Arch, svc.Version)
		}
		if !applies {
			more := ""
			if len(s.RequiredServices) > 0 {
				more = " or its required services"
			}
			return invalid(f, "does not apply to the proposed service %s/%s %s %s%s", s.Org, s.URL, s.Version, s.Arch, more)
		}
		for j, bs := range b.Secrets {
			if _, ok := declared[bs.ServiceSecret]; !ok {
				return invalid(fmt.Sprintf("%s.secrets[%d]", f, j), "service secret %s is not declared by any container", quote(bs.ServiceSecret))
			}
		}
	}
	if len(p.Secrets) > l.MaxSecrets {
		return &ValidationError{Field: "secrets", Rule: fmt.Sprintf("has %d secrets, more than the limit %d", len(p.Secrets), l.MaxSecrets), Err: ErrTooLarge}
	}
	for _, name := range sortedKeys(p.Secrets) {
		f := keyField("secrets", name)
		if err := ValidateSecretName(name); err != nil {
			return invalidCause(f, err)
		}
		if _, ok := declared[name]; !ok {
			return invalid(f, "is not declared by any container of the service")
		}
		if err := p.Secrets[name].validate(f, l); err != nil {
			return err
		}
	}
	for _, name := range sortedKeys(declared) {
		if _, ok := p.Secrets[name]; !ok {
			return invalid(keyField("secrets", name), "is declared by the service but has no value")
		}
	}
	return nil
}

// DeclaredSecrets merges the secrets every container of every service of the agreement
// declares, by name. Validate has made sure declarations of one name agree on the format.
func (p *Proposal) DeclaredSecrets() map[string]SecretDecl {
	out := map[string]SecretDecl{}
	all := p.Service.AllContainers()
	for _, c := range sortedKeys(all) {
		for name, d := range all[c].Secrets {
			if _, ok := out[name]; !ok {
				out[name] = d
			}
		}
	}
	return out
}

// Validate checks a service as the agent will when it arrives in a proposal, so the agbot
// refuses at publish time what every node would decline.
func (s *Service) Validate() error {
	_, err := s.validate("service")
	return err
}

// validate checks a service and its required services, and returns the secrets their
// containers declare by name.
func (s *Service) validate(field string) (map[string]SecretDecl, error) {
	if len(s.RequiredServices) > maxRequired {
		return nil, invalid(field+".requiredServices", "has %d services, more than %d", len(s.RequiredServices), maxRequired)
	}
	declared := map[string]SecretDecl{}
	owner := map[string]string{} // container name -> field of its service
	for i := range s.RequiredServices {
		rf := fmt.Sprintf("%s.requiredServices[%d]", field, i)
		r := &s.RequiredServices[i]
		if len(r.RequiredServices) > 0 {
			return nil, invalid(rf+".requiredServices", "must be empty: the agbot lists every required service at the top")
		}
		d, err := r.validateOne(rf)
		if err != nil {
			return nil, err
		}
		if err := mergeDeclared(rf, r, declared, d, owner); err != nil {
			return nil, err
		}
	}
	d, err := s.validateOne(field)
	if err != nil {
		return nil, err
	}
	if err := mergeDeclared(field, s, declared, d, owner); err != nil {
		return nil, err
	}
	return declared, nil
}

// mergeDeclared adds one service's containers and secrets to the agreement's: container names
// unique across services (they are the names on the agreement's network), one format per
// secret name.
func mergeDeclared(f string, s *Service, declared, d map[string]SecretDecl, owner map[string]string) error {
	for _, name := range sortedKeys(s.Deployment.Services) {
		if o, dup := owner[name]; dup {
			return invalid(keyField(f+".deployment.services", name), "container name is also used by %s: names must be unique in an agreement", o)
		}
		owner[name] = f
	}
	for _, sn := range sortedKeys(d) {
		if prev, ok := declared[sn]; ok && prev.FileFormat() != d[sn].FileFormat() {
			return invalid(keyField(f+".secrets", sn), "is %s but another service of the agreement declares it as %s", d[sn].FileFormat(), prev.FileFormat())
		}
		if _, ok := declared[sn]; !ok {
			declared[sn] = d[sn]
		}
	}
	return nil
}

// validateOne checks one service (not its required services).
func (s *Service) validateOne(field string) (map[string]SecretDecl, error) {
	if err := validateOrg(field+".org", s.Org); err != nil {
		return nil, err
	}
	if err := validateText(field+".url", s.URL, maxURLLen, false); err != nil {
		return nil, err
	}
	if s.URL == "" {
		return nil, invalid(field+".url", "must not be empty")
	}
	if _, err := ParseVersion(s.Version); err != nil {
		return nil, invalidCause(field+".version", err)
	}
	if err := validateArch(field+".arch", s.Arch, false); err != nil {
		return nil, err
	}
	if err := s.validateInputs(field + ".userInput"); err != nil {
		return nil, err
	}
	cs := s.Deployment.Services
	df := field + ".deployment.services"
	if len(cs) == 0 {
		return nil, invalid(df, "must have at least one container")
	}
	if len(cs) > maxContainers {
		return nil, invalid(df, "has %d containers, more than %d", len(cs), maxContainers)
	}
	declared := map[string]SecretDecl{}
	declaredBy := map[string]string{}
	for _, name := range sortedKeys(cs) {
		cf := keyField(df, name)
		if err := validateContainerName(cf, name); err != nil {
			return nil, err
		}
		c := cs[name]
		if err := c.validate(cf); err != nil {
			return nil, err
		}
		for _, sn := range sortedKeys(c.Secrets) {
			d := c.Secrets[sn]
			if prev, ok := declared[sn]; ok && prev.FileFormat() != d.FileFormat() {
				return nil, invalid(keyField(cf+".secrets", sn)+".format",
					"is %s but container %s declares the same secret as %s", d.FileFormat(), quote(declaredBy[sn]), prev.FileFormat())
			}
			if _, ok := declared[sn]; !ok {
				declared[sn], declaredBy[sn] = d, name
			}
		}
	}
	return declared, nil
}

func (c *Container) validate(f string) error {
	if c.Image == "" {
		return invalid(f+".image", "must not be empty")
	}
	if len(c.Image) > maxImageLen {
		return invalid(f+".image", "must be at most %d bytes", maxImageLen)
	}
	for i := 0; i < len(c.Image); i++ {
		if b := c.Image[i]; b <= ' ' || b >= 0x7f {
			return invalid(f+".image", "byte %d is a space, control or non-ASCII character", i)
		}
	}
	if len(c.Command) > maxArgs {
		return invalid(f+".command", "has %d arguments, more than %d", len(c.Command), maxArgs)
	}
	for i, a := range c.Command {
		if err := validateText(fmt.Sprintf("%s.command[%d]", f, i), a, maxArgLen, true); err != nil {
			return err
		}
	}
	if len(c.Environment) > maxArgs {
		return invalid(f+".environment", "has %d entries, more than %d", len(c.Environment), maxArgs)
	}
	seen := map[string]int{}
	for i, e := range c.Environment {
		ef := fmt.Sprintf("%s.environment[%d]", f, i)
		name, _, ok := strings.Cut(e, "=")
		if !ok {
			return invalid(ef, "must be NAME=value")
		}
		if !envName(name) {
			return invalid(ef, "variable name must match [A-Za-z_][A-Za-z0-9_]*")
		}
		if j, dup := seen[name]; dup {
			return invalid(ef, "variable %s is set twice (also at environment[%d])", name, j)
		}
		seen[name] = i
		if err := validateText(ef, e, maxArgLen, true); err != nil {
			return err
		}
	}
	if err := validateUser(f+".user", c.User); err != nil {
		return err
	}
	if err := c.validateResources(f); err != nil {
		return err
	}
	if err := c.validateDeployment(f); err != nil {
		return err
	}
	for _, sn := range sortedKeys(c.Secrets) {
		sf := keyField(f+".secrets", sn)
		if err := ValidateSecretName(sn); err != nil {
			return invalidCause(sf, err)
		}
		d := c.Secrets[sn]
		if err := validateText(sf+".description", d.Description, maxTextLen, true); err != nil {
			return err
		}
		switch d.Format {
		case "", FormatJSON, FormatValueOnly:
		default:
			return invalid(sf+".format", "must be json or value_only, got %s", quote(d.Format))
		}
		if _, err := ParseOnUpdate(d.OnUpdate); err != nil {
			return invalidCause(sf+".onUpdate", err)
		}
	}
	return nil
}

func (s SecretValue) validate(f string, l Limits) error {
	if len(s.Key) > maxKeyLen {
		return invalid(f+".key", "must be at most %d bytes", maxKeyLen)
	}
	if !utf8.ValidString(s.Key) {
		return invalid(f+".key", "must be valid UTF-8")
	}
	if len(s.Value) > l.MaxValue {
		return &ValidationError{Field: f + ".value", Rule: fmt.Sprintf("is %d bytes, more than the limit %d", len(s.Value), l.MaxValue), Err: ErrTooLarge}
	}
	// JSON can only carry UTF-8: encoding/json would silently replace other bytes.
	if !utf8.ValidString(s.Value) {
		return invalid(f+".value", "must be valid UTF-8 (encode binary secrets, e.g. base64)")
	}
	return nil
}

// Validate checks an update on its own. The receiver also checks the names against the
// agreement's declared secrets with CheckUpdateNames.
func (u *Update) Validate(l Limits) error {
	l = l.withDefaults()
	if err := u.Meta.validate(TypeUpdate, 2); err != nil {
		return err
	}
	if len(u.Secrets) == 0 {
		return invalid("secrets", "must change at least one secret")
	}
	if len(u.Secrets) > l.MaxSecrets {
		return &ValidationError{Field: "secrets", Rule: fmt.Sprintf("has %d secrets, more than the limit %d", len(u.Secrets), l.MaxSecrets), Err: ErrTooLarge}
	}
	for _, name := range sortedKeys(u.Secrets) {
		f := keyField("secrets", name)
		if err := ValidateSecretName(name); err != nil {
			return invalidCause(f, err)
		}
		c := u.Secrets[name]
		switch c.Reason {
		case ReasonValueUpdated, ReasonNodeAdded, ReasonNodeRemoved, ReasonResync:
		default:
			return invalid(f+".reason", "must be value_updated, node_added, node_removed or resync, got %s", quote(string(c.Reason)))
		}
		if c.Source != "" {
			if _, err := ParseManagerName(c.Source); err != nil {
				return invalidCause(f+".source", err)
			}
		}
		if err := c.SecretValue.validate(f, l); err != nil {
			return err
		}
	}
	return nil
}

// CheckUpdateNames refuses an update that names a secret the agreement's service does not
// declare (a node receives only the secrets bound to its own agreements).
func CheckUpdateNames(u *Update, declared map[string]SecretDecl) error {
	for _, name := range sortedKeys(u.Secrets) {
		if _, ok := declared[name]; !ok {
			return invalid(keyField("secrets", name), "is not declared by the agreement's service")
		}
	}
	return nil
}

func validateStatus(s ReplyStatus, allowed ...ReplyStatus) error {
	for _, a := range allowed {
		if s == a {
			return nil
		}
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = string(a)
	}
	return invalid("status", "must be one of %s, got %s", strings.Join(names, ", "), quote(string(s)))
}

// Validate checks a proposal reply.
func (r *ProposalReply) Validate(Limits) error {
	if err := r.Meta.validate(TypeProposalReply, 1); err != nil {
		return err
	}
	if err := validateStatus(r.Status, StatusAccepted, StatusDeclined); err != nil {
		return err
	}
	return validateText("reason", r.Reason, maxTextLen, true)
}

// Validate checks an update reply.
func (r *UpdateReply) Validate(Limits) error {
	if err := r.Meta.validate(TypeUpdateReply, 2); err != nil {
		return err
	}
	if err := validateStatus(r.Status, StatusApplied, StatusDuplicate, StatusRefused, StatusFailed); err != nil {
		return err
	}
	return validateText("reason", r.Reason, maxTextLen, true)
}

// Validate checks a cancel.
func (c *Cancel) Validate(Limits) error {
	if err := c.Meta.validate(TypeCancel, 1); err != nil {
		return err
	}
	return validateText("reason", c.Reason, maxTextLen, true)
}

// Validate checks a cancel reply.
func (r *CancelReply) Validate(Limits) error {
	if err := r.Meta.validate(TypeCancelReply, 1); err != nil {
		return err
	}
	return validateStatus(r.Status, StatusApplied, StatusDuplicate)
}

// Validate checks a resync.
func (r *Resync) Validate(Limits) error {
	if err := r.Meta.validate(TypeResync, 1); err != nil {
		return err
	}
	return validateText("reason", r.Reason, maxTextLen, true)
}

// validateText: bounded UTF-8 without NUL (and without other control characters unless
// spaces are allowed, in which case tab and newline pass).
func validateText(f, s string, max int, spaces bool) error {
	if len(s) > max {
		return invalid(f, "must be at most %d bytes", max)
	}
	if !utf8.ValidString(s) {
		return invalid(f, "must be valid UTF-8")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == 0 {
			return invalid(f, "byte %d is NUL", i)
		}
		if c < ' ' || c == 0x7f {
			if spaces && (c == '\t' || c == '\n') {
				continue
			}
			return invalid(f, "byte %d is a control character", i)
		}
		if c == ' ' && !spaces {
			return invalid(f, "byte %d is a space", i)
		}
	}
	return nil
}

func validateOrg(f, org string) error {
	if org == "" {
		return invalid(f, "must not be empty")
	}
	if len(org) > maxOrgLen {
		return invalid(f, "must be at most %d bytes", maxOrgLen)
	}
	if e := checkSegment(org); e != "" {
		return invalid(f, "%s", e)
	}
	return nil
}

func validateContainerName(f, name string) error {
	if name == "" || len(name) > maxContainerLen {
		return invalid(f, "container name must be 1..%d bytes", maxContainerLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return invalid(f, "container name must match [A-Za-z0-9][A-Za-z0-9_.-]*, byte %d does not", i)
		}
	}
	return nil
}

func envName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// validateUser accepts "", "uid", "uid:gid", "name", "name:group" with [A-Za-z0-9_.-]
// parts of at most 32 bytes.
func validateUser(f, u string) error {
	if u == "" {
		return nil
	}
	user, group, hasGroup := strings.Cut(u, ":")
	parts := []string{user}
	if hasGroup {
		parts = append(parts, group)
	}
	for _, p := range parts {
		if p == "" || len(p) > 32 {
			return invalid(f, "must be user or user:group with parts of 1..32 bytes")
		}
		for i := 0; i < len(p); i++ {
			c := p[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
				return invalid(f, "must be user or user:group of [A-Za-z0-9_.-]")
			}
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// keyField names a map entry in an error path, shortening a hostile key.
func keyField(prefix, key string) string { return prefix + "[" + quote(key) + "]" }
