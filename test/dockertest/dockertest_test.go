package dockertest

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

const echoProgram = `package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	b, err := os.ReadFile("/etc/greeting")
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Printf("%s uid=%d args=%s\n", strings.TrimSpace(string(b)), os.Getuid(), strings.Join(os.Args[1:], ","))
}
`

func TestBuildImageRuns(t *testing.T) {
	cli := Client(t)
	ref := BuildImage(t, cli, Image{
		Name:    "anax-test-dockertest",
		Program: echoProgram,
		User:    "1234:1234",
		Files:   map[string][]byte{"etc/greeting": []byte("hello from scratch\n")},
		Cmd:     []string{"a", "b"},
	})
	if again := BuildImage(t, cli, Image{Name: "anax-test-dockertest", Program: echoProgram, User: "1234:1234",
		Files: map[string][]byte{"etc/greeting": []byte("hello from scratch\n")}, Cmd: []string{"a", "b"}}); again != ref {
		t.Errorf("same content built as %q and %q, want one reference", ref, again)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	created, err := cli.ContainerCreate(ctx, &container.Config{Image: ref}, nil, nil, nil, "")
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	defer cli.ContainerRemove(context.Background(), created.ID, container.RemoveOptions{Force: true})
	if err := cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start: %v", err)
	}
	waitC, errC := cli.ContainerWait(ctx, created.ID, container.WaitConditionNotRunning)
	select {
	case res := <-waitC:
		if res.StatusCode != 0 {
			t.Errorf("exit code %d, want 0", res.StatusCode)
		}
	case err := <-errC:
		t.Fatalf("wait: %v", err)
	}
	logs, err := cli.ContainerLogs(ctx, created.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatalf("logs: %v", err)
	}
	defer logs.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, logs); err != nil {
		t.Fatalf("logs: %v", err)
	}
	want := "hello from scratch uid=1234 args=a,b"
	if got := strings.TrimSpace(stdout.String()); got != want {
		t.Errorf("container printed %q (stderr %q), want %q", got, stderr.String(), want)
	}
}
