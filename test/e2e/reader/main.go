// Command reader is the program inside the demo and end-to-end test images: it reads secret
// files the way a service does. Run without arguments it is the service and waits; the tests
// and the demo run it again with docker exec and a subcommand. It prints JSON on stdout only
// (the exec stream), never to the container's log.
//
//	reader                           wait forever (the container's main process)
//	reader cat FILE...               {"FILE": "content", ...}
//	reader stat PATH...              {"PATH": {"uid": U, "gid": G, "mode": "0400", "dir": false}, ...}
//	reader watch FILE TIMEOUT        print "ready", then poll FILE every 200µs until its content
//	                                 changes: {"content", "seenAt" (unix ns), "reads", "bad"}
//	reader hammer DURATION FILE...   read the files continuously for DURATION:
//	                                 {"reads", "errors", "empty", "contents": {FILE: [distinct contents]}}
//	reader write FILE                try to write FILE (must fail: read-only): {"error": "..."}
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		return
	}
	var out any
	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "cat":
		out, err = cat(args)
	case "stat":
		out, err = stat(args)
	case "watch":
		out, err = watch(args)
	case "hammer":
		out, err = hammer(args)
	case "write":
		out = write(args)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "reader:", err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	enc.Encode(out)
}

func cat(files []string) (map[string]string, error) {
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		out[f] = string(b)
	}
	return out, nil
}

type fileStat struct {
	UID  uint32 `json:"uid"`
	GID  uint32 `json:"gid"`
	Mode string `json:"mode"`
	Dir  bool   `json:"dir"`
}

func stat(paths []string) (map[string]fileStat, error) {
	out := map[string]fileStat{}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		st := fi.Sys().(*syscall.Stat_t)
		out[p] = fileStat{UID: st.Uid, GID: st.Gid, Mode: fmt.Sprintf("%04o", fi.Mode().Perm()), Dir: fi.IsDir()}
	}
	return out, nil
}

func watch(args []string) (any, error) {
	if len(args) != 2 {
		return nil, fmt.Errorf("usage: watch FILE TIMEOUT")
	}
	timeout, err := time.ParseDuration(args[1])
	if err != nil {
		return nil, err
	}
	first, err := os.ReadFile(args[0])
	if err != nil {
		return nil, err
	}
	fmt.Println("ready")
	deadline := time.Now().Add(timeout)
	reads, bad := 0, 0
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(args[0])
		reads++
		if err != nil || len(b) == 0 {
			bad++
		} else if string(b) != string(first) {
			return map[string]any{"content": string(b), "seenAt": time.Now().UnixNano(), "reads": reads, "bad": bad}, nil
		}
		time.Sleep(200 * time.Microsecond)
	}
	return nil, fmt.Errorf("%s did not change within %s (%d reads, %d bad)", args[0], timeout, reads, bad)
}

func hammer(args []string) (any, error) {
	if len(args) < 2 {
		return nil, fmt.Errorf("usage: hammer DURATION FILE [FILE]")
	}
	d, err := time.ParseDuration(args[0])
	if err != nil {
		return nil, err
	}
	files := args[1:]
	seen := map[string]map[string]bool{}
	for _, f := range files {
		seen[f] = map[string]bool{}
	}
	reads, errs, empty := 0, 0, 0
	var firstErr string
	for end := time.Now().Add(d); time.Now().Before(end); {
		for _, f := range files {
			b, err := os.ReadFile(f)
			reads++
			switch {
			case err != nil:
				errs++
				if firstErr == "" {
					firstErr = err.Error()
				}
			case len(b) == 0:
				empty++
			default:
				seen[f][string(b)] = true
			}
		}
	}
	contents := map[string][]string{}
	for f, m := range seen {
		contents[f] = []string{}
		for c := range m {
			contents[f] = append(contents[f], c)
		}
	}
	return map[string]any{"reads": reads, "errors": errs, "empty": empty, "firstError": firstErr, "contents": contents}, nil
}

func write(args []string) any {
	out := map[string]string{}
	for _, f := range args {
		err := os.WriteFile(f, []byte("x"), 0o600)
		if err == nil {
			out[f] = "written"
		} else {
			out[f] = err.Error()
		}
	}
	return out
}
