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
	"strconv"
	"strings"
	"time"
)

// Client talks to the agbot's API as one user.
type Client struct {
	Base string // agbot URL without trailing slash
	Org  string // the org of the resources (-o)
	User string // "org/user" for Basic auth
	Pass string
	HTTP *http.Client
	c    *cli
}

// APIError is a refusal from the agbot: its code and its message.
type APIError struct {
	Status int
	Msg    string
}

func (e *APIError) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.Msg, e.Status) }

// caFile is the CA certificate to trust: anax's variables first, then this project's alias.
func (c *cli) caFile() string {
	for _, k := range []string{"HZN_MGMT_HUB_CERT_PATH", "HZN_ICP_CA_CERT_PATH", "HZN_AGBOT_CA"} {
		if v := c.get(k); v != "" {
			return v
		}
	}
	return ""
}

// httpClient trusts the management hub CA file when one is given, else the system roots.
// anax adds the CA to the system roots; trusting only the hub's CA is stricter, and spares
// every command the ~20 ms of loading the system bundle.
func (c *cli) httpClient(timeout time.Duration) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca := c.caFile(); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fail(ExitFile, "Encountered error reading ICP cert file %v: %v", ca, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fail(ExitInput, "%s holds no PEM certificate", ca)
		}
		cfg.RootCAs = pool
	}
	tr.TLSClientConfig = cfg
	return &http.Client{Transport: tr, Timeout: timeout}, nil
}

// agbotURL is HZN_AGBOT_URL; without it, HZN_EXCHANGE_URL less its "/v1", since this
// agbot serves the Exchange routes on its own address.
func (c *cli) agbotURL() string {
	if u := strings.TrimRight(c.get("HZN_AGBOT_URL"), "/"); u != "" {
		return u
	}
	ex := strings.TrimRight(c.get("HZN_EXCHANGE_URL"), "/")
	if base, ok := strings.CutSuffix(ex, "/v1"); ok {
		return base
	}
	return ""
}

// client builds an agbot client for org (-o, else HZN_ORG_ID) and credentials (-u, else
// HZN_EXCHANGE_USER_AUTH), "[org/]user:password"; the password may be "-" for stdin.
func (c *cli) client(org, userPw *string) (*Client, error) {
	base := c.agbotURL()
	if base == "" {
		return nil, fail(ExitHTTP, "HZN_AGBOT_URL is not defined")
	}
	o := c.orEnv(org, "HZN_ORG_ID")
	auth := c.orEnv(userPw, "HZN_EXCHANGE_USER_AUTH")
	if auth == "" {
		return nil, fail(ExitInput, "exchange user authentication must be specified with either the -u flag or HZN_EXCHANGE_USER_AUTH")
	}
	user, pass, _ := strings.Cut(auth, ":")
	if uo, _, ok := strings.Cut(user, "/"); ok {
		if o == "" {
			o = uo
		}
	} else if o == "" {
		return nil, fail(ExitInput, "organization ID must be specified with either the -o flag or HZN_ORG_ID")
	} else {
		user = o + "/" + user
	}
	pass, err := c.credential("password", pass, "")
	if err != nil {
		return nil, err
	}
	hc, err := c.httpClient(2 * time.Minute)
	if err != nil {
		return nil, err
	}
	return &Client{Base: base, Org: o, User: user, Pass: pass, HTTP: hc, c: c}, nil
}

// Path joins escaped segments under /org/{org}/; a segment holding "/" becomes several.
func (cl *Client) Path(segs ...string) string {
	p := "/org/" + url.PathEscape(cl.Org)
	for _, s := range segs {
		for _, part := range strings.Split(s, "/") {
			p += "/" + url.PathEscape(part)
		}
	}
	return p
}

// Call sends a request and returns the HTTP code and the raw answer. Only a failure to get
// an answer is an error (ExitHTTP).
func (cl *Client) Call(method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, fail(ExitJSON, "failed to marshal the request body: %v", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, cl.Base+path, rd)
	if err != nil {
		return 0, nil, fail(ExitHTTP, "%s %s: %v", method, path, err)
	}
	req.SetBasicAuth(cl.User, cl.Pass)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	cl.c.verbosef("%s %s", method, cl.Base+path)
	resp, err := cl.HTTP.Do(req)
	if err != nil {
		return 0, nil, fail(ExitHTTP, "Can't connect to the Horizon agbot at %s to run %s %s: %v", cl.Base, method, path, unwrapURL(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, nil, fail(ExitHTTP, "failed to read body response from %s %s: %v", method, path, err)
	}
	cl.c.verbosef("HTTP code: %d", resp.StatusCode)
	return resp.StatusCode, raw, nil
}

// retry503 calls again, up to 3 times a second apart, while the agbot answers 503 (its
// secrets manager is not reachable yet), as anax's hzn does.
func (cl *Client) retry503(method, path string, body any) (int, []byte, error) {
	for i := 0; ; i++ {
		code, raw, err := cl.Call(method, path, body)
		if err != nil || code != http.StatusServiceUnavailable || i == 2 {
			return code, raw, err
		}
		cl.c.verbosef("Vault component not found in the management hub. Retrying...")
		time.Sleep(time.Second)
	}
}

// Do sends a request and decodes a 2xx JSON answer into out (if not nil); other codes
// are an *APIError (exit ExitGeneral).
func (cl *Client) Do(method, path string, body, out any) error {
	code, raw, err := cl.Call(method, path, body)
	if err != nil {
		return err
	}
	if code >= 300 {
		return &ExitError{Code: ExitGeneral, Err: &APIError{Status: code, Msg: apiMessage(raw)}}
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return fail(ExitJSON, "failed to unmarshal the answer to %s %s: %v", method, path, err)
		}
	}
	return nil
}

// apiMessage reads an error body: anax's JSON string, an Exchange {"msg"} or this
// project's {"error"} object, or else the text itself.
func apiMessage(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strings.TrimSpace(s)
	}
	var o struct {
		Error string `json:"error"`
		Msg   string `json:"msg"`
	}
	if json.Unmarshal(raw, &o) == nil {
		if o.Error != "" {
			return o.Error
		}
		if o.Msg != "" {
			return o.Msg
		}
	}
	if u, err := strconv.Unquote(string(raw)); err == nil {
		return u
	}
	return string(raw)
}

// badCode is anax's answer to an HTTP code a command does not expect. The body is an
// error message (never a secret value: those come only with 200).
func badCode(method, url string, code int, raw []byte) error {
	return fail(ExitHTTP, "bad HTTP code %d from %s %s, output: %s", code, method, url, apiMessage(raw))
}

func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
