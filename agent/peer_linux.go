package agent

import (
	"context"
	"net"
	"net/http"
	"os"

	"golang.org/x/sys/unix"
)

type peerKey struct{}

// peerContext records the uid of the process on the other end of a local API connection
// (SO_PEERCRED), so requirePeer can refuse anyone but root and the agent's own user, even if
// the socket's mode were loosened.
func peerContext(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	_ = raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err != nil || cred == nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, int(cred.Uid))
}

func requirePeer(next http.Handler) http.Handler {
	self := os.Geteuid()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uid, ok := r.Context().Value(peerKey{}).(int)
		if !ok || (uid != 0 && uid != self) {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "the local API answers root and the agent's own user only"})
			return
		}
		next.ServeHTTP(w, r)
	})
}
