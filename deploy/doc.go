// Package deploy holds the deploy kit: the container images' Dockerfile and
// the Kubernetes manifests of the two-tier scale-out layout
// (config/scaleout/README.md). It has no code of its own; its tests decode
// every manifest strictly with the Kubernetes API types, check the
// references between them, validate the collector configs they carry with
// the real binaries, and run the Dockerfile's build commands.
package deploy
