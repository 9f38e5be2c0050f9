package container

import "errors"

// Sentinels, checked with errors.Is. Every error the worker returns wraps one of them or an
// error from the Docker engine, with the agreement, container or image it concerns.
var (
	// ErrInvalid: the request broke a rule (name, env key, onUpdate action, missing store file);
	// nothing was created.
	ErrInvalid = errors.New("invalid request")
	// ErrImageNotFound: the image is not present locally and could not be pulled.
	ErrImageNotFound = errors.New("image not found")
	// ErrUserNotFound: a user or group name does not resolve through the image's /etc/passwd or
	// /etc/group, or an id is out of range or not mapped by userns-remap.
	ErrUserNotFound = errors.New("user not found")
	// ErrPolicy: the node's rules refuse the container: its uid is a host account's, or its
	// image is not pinned by digest where the node requires digests.
	ErrPolicy = errors.New("refused by node policy")
	// ErrNotFound: no container of this agent matches.
	ErrNotFound = errors.New("container not found")
)
