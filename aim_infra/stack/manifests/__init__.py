"""Pure builders of the stack's Kubernetes objects: plain inputs in, plain dict manifests out, no Pulumi."""
