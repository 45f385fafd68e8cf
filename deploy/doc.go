// Package deploy holds what runs pgfeed in production: a systemd unit
// (pgfeed.service) and a container image (Dockerfile). It has no Go code;
// its tests check those files against the pgfeed they would run.
package deploy
