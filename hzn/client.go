package hzn

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Client talks to the agbot's API as one user.
type Client struct {
	Base string // agbot URL without trailing slash
	Org  string
	User string // "org/user" for Basic auth
	Pass string
	HTTP *http.Client
}

// APIError is a refusal from the agbot.
type APIError struct {
	Status int
	Msg    string
	Body   []byte
}

func (e *APIError) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.Msg, e.Status) }

// NewClient builds a client from the environment.
func NewClient(getenv func(string) string) (*Client, error) {
	base := strings.TrimRight(getenv("HZN_AGBOT_URL"), "/")
	if base == "" {
		return nil, fmt.Errorf("%w: set HZN_AGBOT_URL (e.g. https://127.0.0.1:3090)", ErrUsage)
	}
	org := getenv("HZN_ORG_ID")
	auth := getenv("HZN_EXCHANGE_USER_AUTH")
	user, pass, ok := strings.Cut(auth, ":")
	if !ok || user == "" {
		return nil, fmt.Errorf("%w: set HZN_EXCHANGE_USER_AUTH to user:password", ErrUsage)
	}
	if o, u, ok := strings.Cut(user, "/"); ok {
		if org == "" {
			org = o
		}
		user = o + "/" + u
	} else {
		if org == "" {
			return nil, fmt.Errorf("%w: set HZN_ORG_ID", ErrUsage)
		}
		user = org + "/" + user
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if ca := getenv("HZN_AGBOT_CA"); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("HZN_AGBOT_CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("HZN_AGBOT_CA: %s holds no PEM certificate", ca)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &Client{Base: base, Org: org, User: user, Pass: pass, HTTP: &http.Client{Transport: tr, Timeout: 2 * time.Minute}}, nil
}

// Path joins escaped segments under /org/{org}/.
func (c *Client) Path(segs ...string) string {
	p := "/org/" + url.PathEscape(c.Org)
	for _, s := range segs {
		for _, part := range strings.Split(s, "/") {
			p += "/" + url.PathEscape(part)
		}
	}
	return p
}

// Do sends a request and decodes a JSON answer into out (if not nil).
func (c *Client) Do(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.Base+path, rd)
	if err != nil {
		return err
	}
	req.SetBasicAuth(c.User, c.Pass)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("agbot at %s: %w", c.Base, unwrapURL(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(raw))
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return &APIError{Status: resp.StatusCode, Msg: msg, Body: raw}
	}
	if out != nil && len(raw) > 0 {
		return json.Unmarshal(raw, out)
	}
	return nil
}

func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
