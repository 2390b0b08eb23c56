//! The Wallaroo model: what each spec setting becomes. A [`Spec`](wallaroo_spec::Spec) goes
//! in; the desired resources (with addresses, dependencies and sensitive attributes), the
//! chart's values, KOTS's config values and the list of images to mirror come out.
//!
//! This is the one place to read "what does this spec setting become". It performs no
//! network I/O and builds no resource kind: the kinds (`wallaroo-kube`, `wallaroo-oci`) act
//! on what it describes, and `wallaroo-operations` wires the two together.

pub mod declared;
pub mod desired;
pub mod images;
pub mod inverse;
pub mod learn;
pub mod sensitive;
pub mod tls;
pub mod values;

pub use desired::{
    DesiredError, PULL_SECRET, TLS_SECRET, from_spec, from_spec_with, pull_secret_config,
    users_without_password,
};
pub use images::{
    CHART_ORIGIN, ImagePin, MirrorImage, chart_source, image_sources, image_target, plan_images,
    plan_schema, set_plan_images, split_reference,
};
pub use values::{
    DeclaredImage, VALUE_SOURCES, chart_values, image_rewrites, image_values, kots_config_values,
    render_values,
};
