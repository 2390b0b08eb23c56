# Quickstart: helm install of Wallaroo from the vendor registry, mirrored into a private
# registry, on three nodepools, with TLS and internal ingress. The local sandbox
# (`wallaroo-testenv up`) sets the WALLAROO_VAR_* values below for its own registries.

variable "vendor_registry" {
  type        = string
  default     = "registry.wallaroo.ai"
  description = "The vendor registry, or its mirror on the sandbox."
}

variable "vendor_username" {
  type    = string
  default = "wallaroo-customer"
}

variable "vendor_password" {
  type        = string
  sensitive   = true
  default     = "example-only-change-me"
  description = "Set WALLAROO_VAR_vendor_password; the default is for the example alone."
}

variable "vendor_ca_file" {
  type        = string
  default     = null
  description = "CA of the vendor registry's certificate, when it is private (the sandbox's is)."
}

variable "keycloak_url" {
  type        = string
  default     = null
  description = "Keycloak's URL; by default the one the chart serves, https://keycloak.DOMAIN/auth."
}

variable "private_registry" {
  type    = string
  default = "registry.internal.example.com"
}

variable "private_ca_file" {
  type        = string
  default     = null
  description = "CA of the private registry's certificate, when it is private (the sandbox's is)."
}

variable "registry_username" {
  type    = string
  default = "wallaroo"
}

variable "registry_password" {
  type      = string
  sensitive = true
  default   = "example-only-change-me"
}

variable "admin_password" {
  type      = string
  sensitive = true
  default   = "example-only-change-me"
}

wallaroo {
  version                 = "2025.1.0-6290"
  license_channel         = "2025-1"
  namespace               = "wallaroo"
  method                  = "helm"
  domain                  = "wallaroo.example.com"
  kubernetes_distribution = "kurl"
  keycloak_url            = var.keycloak_url
}

source "wallaroo" {
  registry = var.vendor_registry
  username = var.vendor_username
  password = var.vendor_password
  license  = var.vendor_password
  ca_file  = var.vendor_ca_file
}

registry "private" {
  host      = var.private_registry
  namespace = "wallaroo"
  username  = var.registry_username
  password  = var.registry_password
  ca_file   = var.private_ca_file
}

nodepool "general" {
  nodes = ["node-1", "node-2"]
}

nodepool "persistent" {
  nodes = ["node-3"]
}

nodepool "pipelines-x86" {
  nodes = ["node-4"]
}

tls {
  cert_file = "tls/wallaroo.crt"
  key_file  = "tls/wallaroo.key"
}

networking {
  ingress_mode = "internal"
}

user "admin@example.com" {
  role      = "admin"
  password  = var.admin_password
  temporary = true
}
