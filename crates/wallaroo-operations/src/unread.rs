//! Values the chart does not read are not sent. wallaroo computes a value for every spec
//! setting, named as the Wallaroo chart names it; a chart that does not declare one (a foreign
//! chart, an older version) ignores it, and sending it anyway makes a helm revision that
//! changes nothing but the stored values (an adopted install's first apply would make one).
//! A key the chart's `values.yaml` does not declare is left out when a render without it is
//! the same as with it; the plan names the spec settings this chart does not read. The
//! operator's own `helm { values }` are always sent.

use serde_json::Value;
use wallaroo_engine::DesiredSet;
use wallaroo_model::declared;

use crate::airgap::with_secret;
use crate::error::OperationError;
use crate::workspace::Workspace;

impl Workspace {
    /// Drops from the release's values what the chart does not read (see the module's
    /// documentation), with a warning naming them.
    pub(crate) async fn drop_unread_values(
        &self,
        desired: &mut DesiredSet,
    ) -> Result<(), OperationError> {
        let Some((chart, kube_version)) = self.chart.lock().expect("chart cache").clone() else {
            return Ok(());
        };
        let Some(release) = desired
            .resources
            .values()
            .find(|r| r.kind == "helm_release")
        else {
            return Ok(());
        };
        let values = release.attrs.get("values").cloned().unwrap_or(Value::Null);
        let defaults = wallaroo_oci::release::default_values(&chart)?;
        let unread: Vec<Vec<String>> = declared::undeclared(&values, &defaults)
            .into_iter()
            .filter(|p| !declared::is_explicit(p, &self.spec.helm.values))
            .collect();
        if unread.is_empty() {
            return Ok(());
        }
        let mut without = values.clone();
        for p in &unread {
            declared::remove_path(&mut without, p);
        }
        let secret = release.attrs.get("secret_values");
        let render = |v: &Value| self.release_render(kube_version.clone(), with_secret(v, secret));
        let full = render(&values);
        let paths: Vec<String> = unread.iter().map(|p| p.join(".")).collect();
        // The same chart, values and question answered before: no render.
        let key = self.render_cache.key(
            &crate::render_cache::RenderInputs::of(&full, &chart.manifest.digest),
            &[b"unread/1", paths.join("\n").as_bytes()],
        );
        let cached: Option<bool> = key
            .as_ref()
            .and_then(|k| self.render_cache.load("unread", k));
        let unused = match cached {
            Some(u) => u,
            None => {
                let (a, b) = futures_util::future::join(
                    wallaroo_oci::release::render_manifests(&full, &chart),
                    wallaroo_oci::release::render_manifests(&render(&without), &chart),
                )
                .await;
                let unused = a? == b?;
                if let Some(k) = &key {
                    self.render_cache.store("unread", k, &unused);
                }
                unused
            }
        };
        if !unused {
            desired.warnings.push(format!(
                "the chart's values.yaml does not declare {}, but its templates read them: sent",
                paths.join(", ")
            ));
            return Ok(());
        }
        let release = desired
            .resources
            .values_mut()
            .find(|r| r.kind == "helm_release")
            .expect("found above");
        release.attrs.insert("values".into(), without);
        desired.warnings.push(format!(
            "this chart does not read {}: not sent (its values.yaml does not declare them and its render is the same without them)",
            unread
                .iter()
                .map(|p| declared::describe(p))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Ok(())
    }
}
