# KOTS: install from an offline bundle (wallaroo.airgap) through the KOTS admin console's
# registry. wallaroo drives the `kubectl kots` steps and keeps the config values in sync.

variable "kots_password" {
  type        = string
  sensitive   = true
  default     = "example-only-change-me"
  description = "The KOTS admin console's password."
}

variable "registry_password" {
  type      = string
  sensitive = true
  default   = "example-only-change-me"
}

wallaroo {
  version                 = "2025.1.0-6290"
  license_channel         = "2025-1"
  method                  = "kots"
  domain                  = "wallaroo.example.com"
  domain_prefix           = "ml"
  kubernetes_distribution = "eks"
}

source "wallaroo" {
  bundle  = "bundles"
  license = file("license.yaml")
}

kots {
  admin_console_password = var.kots_password
}

registry "private" {
  host      = "registry.internal.example.com"
  namespace = "wallaroo"
  username  = "wallaroo"
  password  = var.registry_password
}

nodepool "general" {
  selector = { "eks.amazonaws.com/nodegroup" = "general" }
}

nodepool "persistent" {
  selector = { "eks.amazonaws.com/nodegroup" = "persistent" }
}

nodepool "pipelines-x86" {
  selector = { "eks.amazonaws.com/nodegroup" = "pipelines" }
}

tls {
  secret_name = "cust-cert-secret"
}

networking {
  ingress_mode = "none"
}

assays {
  version = "v1"
}
