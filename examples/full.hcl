# Every block and attribute of the spec language, with the values a production install
# might use. See docs/spec.md for each one.

variable "vendor_password" {
  type        = string
  sensitive   = true
  default     = "example-only-change-me"
  description = "Password of the Wallaroo license user (WALLAROO_LICENSE_PASSWORD)."
}

variable "license" {
  type      = string
  sensitive = true
  default   = "example-only-license"
}

variable "registry_password" {
  type      = string
  sensitive = true
  default   = "example-only-change-me"
}

variable "pipeline_nodes" {
  type    = list(string)
  default = ["gpu-1", "gpu-2"]
}

wallaroo {
  version                 = "2025.1.0-6290"
  license_channel         = "2025-1"
  namespace               = "wallaroo"
  method                  = "helm"
  domain                  = "wallaroo.example.com"
  domain_prefix           = "ml"
  kubernetes_distribution = "aks"
  release_name            = "wallaroo"
  chart                   = "wallaroo"
}

source "wallaroo" {
  registry = "registry.wallaroo.ai"
  path     = "wallaroo"
  username = "abcdefg"
  password = var.vendor_password
  license  = var.license
  ca_file  = "tls/wallaroo.crt"
}

registry "private" {
  host                 = "registry.internal.example.com:5000"
  namespace            = "wallaroo"
  username             = "wallaroo-push"
  password             = var.registry_password
  ca_file              = "tls/wallaroo.crt"
  insecure_skip_verify = false
}

images {
  release   = true
  extra     = ["nvcr.io/nvidia/k8s-device-plugin:v0.17.0"]
  exclude   = ["mlflow-deploy"]
  path      = "{namespace}/{name}"
  platforms = ["linux/amd64"]
}

nodepool "general" {
  nodes  = ["node-1", "node-2"]
  labels = { "example.com/team" = "ml-platform" }
}

nodepool "persistent" {
  nodes = ["node-3"]
}

nodepool "pipelines-x86" {
  nodes = var.pipeline_nodes
  taints = [
    "wallaroo.ai/pipelines=true:NoSchedule",
    "nvidia.com/gpu=present:NoSchedule",
  ]
}

tls {
  cert_file = "tls/wallaroo.crt"
  key_file  = "tls/wallaroo.key"
}

networking {
  ingress_mode                 = "internal"
  external_inference_endpoints = true
}

edge_registry {
  url           = "us-west1-docker.pkg.dev"
  email         = "edge@example.com"
  username      = "_json_key"
  password      = var.registry_password
  observability = true
}

assays {
  version = "v2"
}

scheduling {
  affinity_key    = "wallaroo.ai/node-purpose"
  engine_affinity = "pipelines"
  tolerations = [
    { key = "nvidia.com/gpu", operator = "Exists", effect = "NoSchedule" },
  ]
  node_selectors = {
    keycloak = { "wallaroo.ai/node-purpose" = "general" }
    minio    = { "wallaroo.ai/node-purpose" = "persistent" }
  }
}

private_pypi {
  url          = "https://pypi.internal.example.com"
  username     = "wallaroo"
  password     = var.registry_password
  only_private = true
}

gpu {
  nvidia_device_plugin = true
  version              = "v0.17.0"
}

user "admin@example.com" {
  role      = "admin"
  password  = var.vendor_password
  temporary = true
}

user "analyst@example.com" {
  role     = "user"
  password = var.vendor_password
}

state {
  path = "wallaroo.lock"
}

helm {
  timeout = "20m"
  values = {
    # Raw chart values, merged over everything wallaroo computes.
    jupyter = { enabled = true }
  }
}

# An autoscaler owns the engine's replicas: never drift.
lifecycle "helm_release.wallaroo" {
  ignore_changes = ["values.engine.replicas"]
}

# A user who left the spec stays in Keycloak; wallaroo only forgets it.
removed "user[\"former@example.com\"]" {
  destroy = false
}

# The analyst was made in the Keycloak console as `analyst` (no email): take it over.
import "user[\"analyst@example.com\"]" {
  id = "analyst"
}
