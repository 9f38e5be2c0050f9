package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/edge-secrets/anax-agent/protocol"
)

// agbotClient speaks the agbot's node endpoints (package agbot documents them): GET /agbot,
// PUT .../registration, the GET .../msgs long-poll and POST .../msgs (a reply, also the next
// long-poll when it carries the poll's query).
type agbotClient struct {
	base string // without trailing slash
	http *http.Client
}

// agbotInfo is GET /agbot and the registration answer.
type agbotInfo = protocol.AgbotInfo

// polledMessage is one message of a long-poll answer.
type polledMessage = protocol.PolledMessage

// registrationBody is PUT .../registration.
type registrationBody = protocol.Registration

// newAgbotClient builds a client for base that trusts caFile (PEM) when given, else the
// system roots.
func newAgbotClient(base, caFile string) (*agbotClient, error) {
	if base == "" {
		return nil, fmt.Errorf("%w: agbot_url: not set (--agbot-url)", ErrConfig)
	}
	if u, err := url.Parse(base); err != nil || u.Scheme != "https" {
		// Also guards a registration.json written before http was refused.
		return nil, fmt.Errorf("%w: agbot_url: must use https (the node token would travel in clear)", ErrConfig)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// Keep a connection for each reply being sent and message handled at once, and the long-poll:
	// with fewer, an org secret's burst of updates opened a TLS connection per reply.
	tr.MaxIdleConnsPerHost = 2*maxParallel + 1
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("%w: agbot_ca: %v", ErrConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: agbot_ca: %s holds no PEM certificate", ErrConfig, caFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &agbotClient{base: strings.TrimRight(base, "/"), http: &http.Client{Transport: tr}}, nil
}

func (c *agbotClient) close() { c.http.CloseIdleConnections() }

// statusError is a non-2xx answer.
type statusError struct {
	Code int
	Msg  string
}

func (e *statusError) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.Msg, e.Code) }

// userAuthHeader carries the node owner's or an org admin's credentials on a registration
// that replaces the node's keys: agbot/api.UserAuthHeader.
const userAuthHeader = "X-Anax-User-Authorization"

func (c *agbotClient) do(ctx context.Context, method, path string, auth *Registration, body []byte, ctype string, out any) error {
	return c.doWith(ctx, nil, method, path, auth, body, ctype, out)
}

// doWith is do with extra request headers.
func (c *agbotClient) doWith(ctx context.Context, hdr http.Header, method, path string, auth *Registration, body []byte, ctype string, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", ctype)
	}
	if auth != nil {
		req.SetBasicAuth(auth.Org+"/"+auth.Node, auth.Token)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%w at %s: %w", ErrAgbot, c.base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%w at %s: read answer: %w", ErrAgbot, c.base, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(raw))
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if len(msg) > 512 {
			msg = msg[:512] + "..."
		}
		return fmt.Errorf("%w: %s %s: %w", ErrAgbot, method, path, &statusError{Code: resp.StatusCode, Msg: msg})
	}
	if out != nil && resp.StatusCode != http.StatusNoContent { // 204: no body, out stays as it is
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%w: %s %s: answer is not the expected JSON: %v", ErrAgbot, method, path, err)
		}
	}
	return nil
}

func nodePath(r *Registration, tail string) string {
	return "/org/" + url.PathEscape(r.Org) + "/nodes/" + url.PathEscape(r.Node) + tail
}

// info reads GET /agbot and checks that the fingerprint it states is the one of its keys.
func (c *agbotClient) info(ctx context.Context) (*agbotInfo, error) {
	var in agbotInfo
	if err := c.do(ctx, "GET", "/agbot", nil, nil, "", &in); err != nil {
		return nil, err
	}
	if err := checkAgbotInfo(&in); err != nil {
		return nil, err
	}
	return &in, nil
}

func checkAgbotInfo(in *agbotInfo) error {
	if in.ID == "" || in.PublicKeys == nil {
		return fmt.Errorf("%w: the agbot's answer lacks agbotId or publicKeys", ErrAgbot)
	}
	if err := in.PublicKeys.Validate(); err != nil {
		return fmt.Errorf("%w: the agbot's publicKeys: %w", ErrAgbot, err)
	}
	if fp := in.PublicKeys.Fingerprint(); fp != in.Fingerprint {
		return fmt.Errorf("%w: the agbot states fingerprint %s but its keys have %s", ErrAgbotKey, in.Fingerprint, fp)
	}
	return nil
}

// register sends PUT .../registration with the node's credentials, and user ("org/user:pw",
// may be empty) as the authority to replace keys the node registered before.
func (c *agbotClient) register(ctx context.Context, r *Registration, body registrationBody, user string) (*agbotInfo, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	var hdr http.Header
	if user != "" {
		hdr = http.Header{userAuthHeader: {"Basic " + base64.StdEncoding.EncodeToString([]byte(user))}}
	}
	var in agbotInfo
	if err := c.doWith(ctx, hdr, "PUT", nodePath(r, "/registration"), r, b, "application/json", &in); err != nil {
		return nil, err
	}
	if err := checkAgbotInfo(&in); err != nil {
		return nil, err
	}
	return &in, nil
}

// release gives up the node's registered keys at the agbot (DELETE .../registration), signed
// with them, so that the node token alone may register new ones.
// It reports whether the agbot held them.
func (c *agbotClient) release(ctx context.Context, r *Registration, keys *protocol.PrivateKeys) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	now := time.Now().UTC()
	b, err := json.Marshal(protocol.KeyRelease{Time: now, Signature: protocol.SignKeyRelease(keys, r.ID(), now)})
	if err != nil {
		return false, err
	}
	var out struct {
		Released bool `json:"released"`
	}
	err = c.do(ctx, "DELETE", nodePath(r, "/registration"), r, b, "application/json", &out)
	return out.Released, err
}

// poll long-polls for messages past after, waiting at most wait on the agbot.
func (c *agbotClient) poll(ctx context.Context, r *Registration, after uint64, wait time.Duration) ([]polledMessage, error) {
	// The agbot holds the request up to wait; give the answer a margin on top.
	ctx, cancel := context.WithTimeout(ctx, wait+20*time.Second)
	defer cancel()
	path := fmt.Sprintf("%s?wait=%d&after=%d", nodePath(r, "/msgs"), int(wait/time.Second), after)
	var out struct {
		Messages []polledMessage `json:"messages"`
	}
	if err := c.do(ctx, "GET", path, r, nil, "", &out); err != nil {
		return nil, err
	}
	return out.Messages, nil
}

// post sends one sealed envelope (a reply, a cancel or a resync).
func (c *agbotClient) post(ctx context.Context, r *Registration, envelope []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return c.do(ctx, "POST", nodePath(r, "/msgs"), r, envelope, "application/json", nil)
}

// httpStatus returns the HTTP status of an agbot refusal, or 0.
func httpStatus(err error) int {
	var se *statusError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

// replyAndPoll posts a reply that is also the next long-poll (POST .../msgs?wait=S&after=ID):
// the agbot records the reply, then answers as a poll. polled is false when the agbot recorded
// the reply without polling (204, an agbot from before this form): the caller polls then.
// An error with an HTTP status means the reply was refused and nothing was polled.
func (c *agbotClient) replyAndPoll(ctx context.Context, r *Registration, envelope []byte, after uint64, wait time.Duration) (msgs []polledMessage, polled bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, wait+20*time.Second)
	defer cancel()
	path := fmt.Sprintf("%s?wait=%d&after=%d", nodePath(r, "/msgs"), int(wait/time.Second), after)
	var out struct {
		Messages *[]polledMessage `json:"messages"`
	}
	if err := c.do(ctx, "POST", path, r, envelope, "application/json", &out); err != nil {
		return nil, false, err
	}
	if out.Messages == nil {
		return nil, false, nil
	}
	return *out.Messages, true, nil
}
