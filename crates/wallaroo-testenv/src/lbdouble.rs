//! A TEST DOUBLE for a cloud load-balancer controller: no cloud exists here, so this loop
//! does what one would, through the real API server: it gives every `LoadBalancer` Service
//! without an address one (`status.loadBalancer.ingress[0].ip`) from 172.18.255.0/24.

use std::time::Duration;

use serde_json::json;

use crate::Error;
use crate::env::Env;

/// Runs until killed: every 500 ms, assigns addresses to LoadBalancer services lacking one.
pub fn run(env: &Env) -> Result<(), Error> {
    let api = env.api()?;
    let mut next: u8 = 10;
    loop {
        let services = api.get("/api/v1/services")?;
        for svc in services["items"].as_array().into_iter().flatten() {
            let is_lb = svc["spec"]["type"] == "LoadBalancer";
            let has_ip = svc["status"]["loadBalancer"]["ingress"]
                .as_array()
                .is_some_and(|a| !a.is_empty());
            if !is_lb || has_ip {
                continue;
            }
            let ns = svc["metadata"]["namespace"].as_str().unwrap_or_default();
            let name = svc["metadata"]["name"].as_str().unwrap_or_default();
            let ip = format!("172.18.255.{next}");
            next = next.wrapping_add(1).max(10);
            api.merge_patch(
                &format!("/api/v1/namespaces/{ns}/services/{name}/status"),
                &json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}}),
            )?;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
