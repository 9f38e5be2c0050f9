package hzn

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxCredential bounds a token or password read from stdin or a file.
const maxCredential = 4 << 10

// credential returns a token or password that the command line gives as value, where "-"
// reads it from the first line of stdin, or as file (a file holding it). Both keep it out
// of argv, which other local users see (ps, /proc/PID/cmdline) and shells keep in history.
func credential(c *Context, what, value, file string) (string, error) {
	var raw string
	switch {
	case file != "" && value != "":
		return "", fmt.Errorf("%w: give the %s on the command line or in a file, not both", ErrUsage, what)
	case file != "":
		f, err := os.Open(file)
		if err != nil {
			return "", fmt.Errorf("%s file: %w", what, err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxCredential+1))
		if err != nil {
			return "", fmt.Errorf("%s file: %w", what, err)
		}
		raw = string(b)
	case value == "-":
		line, err := bufio.NewReader(io.LimitReader(c.Stdin, maxCredential+1)).ReadString('\n')
		if err != nil && err != io.EOF {
			return "", fmt.Errorf("reading the %s from stdin: %w", what, err)
		}
		raw = line
	default:
		return value, nil
	}
	if len(raw) > maxCredential {
		return "", fmt.Errorf("%w: the %s is more than %d bytes", ErrUsage, what, maxCredential)
	}
	v := strings.TrimRight(raw, "\r\n")
	if v == "" || strings.ContainsAny(v, "\r\n") {
		return "", fmt.Errorf("%w: the %s must be one non-empty line", ErrUsage, what)
	}
	return v, nil
}
