# Versions of the test control plane. KUBE_VERSION must match the
# k8s.io/kubernetes requirement in hack/tools/go.mod and the k8s-openapi
# feature in Cargo.toml.
KUBE_VERSION=v1.36.3
KWOK_VERSION=v0.7.0
HELM_VERSION=v3.22.0
