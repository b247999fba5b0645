// Package deploy checks amtprov's deployment artefacts without a Docker
// engine or a Kubernetes cluster: the Dockerfiles (services/<name>/Dockerfile,
// tools/amtsim/Dockerfile, cmd/amtprov/Dockerfile), docker-compose.yml at the
// repository root and the manifests in deploy/k8s.
//
// Schema validation uses the JSON Schemas vendored in deploy/schemas (the
// Compose Specification's, and a strict Kubernetes schema generated from the
// Kubernetes API schema client-go ships; see deploy/schemas/README.md), so CI
// needs no network. On top of the schemas, the checks here hold the files to
// what the binaries really do: every image builds a main package that exists
// and is named like the binary, every environment variable a container sets
// is one its binary reads, probes hit /healthz and /readyz on a port the
// container listens on, and so on. The module's tests run them on the
// repository (and on broken copies, to show they fail); deploy/cmd/validate-deploy
// runs them from scripts/validate-deploy.sh.
package deploy
