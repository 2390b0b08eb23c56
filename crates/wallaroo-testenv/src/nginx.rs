//! nginx (Debian's package) as a TLS reverse proxy in front of a registry of the test
//! environment, with a limit on request bodies: what a private registry looks like behind an
//! ingress or load balancer that keeps its default body limit (ingress-nginx: 1m).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::Error;
use crate::env::{Env, Registry};
use crate::process::{free_port, spawn, stop, wait_until};
use crate::provision::program;

/// A running nginx in front of a registry; stopped when dropped.
pub struct BodyLimitedProxy {
    pub host: String,
    pub port: u16,
    pid: u32,
    dir: PathBuf,
}

impl BodyLimitedProxy {
    /// Starts nginx on a free port of 127.0.0.1, serving the registry's name and certificate,
    /// passing every request to `upstream` and refusing bodies over `limit` (nginx's
    /// `client_max_body_size` syntax: `16k`, `1m`) with 413.
    pub fn start(env: &Env, upstream: &Registry, limit: &str) -> Result<BodyLimitedProxy, Error> {
        let nginx = program("nginx")?;
        let port = free_port();
        let name = format!("nginx-{port}");
        let dir = env.run_dir.join(&name);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let pki = env.run_dir.join("pki");
        let d = dir.display();
        let config = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 256; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl;
    server_name {host};
    ssl_certificate {cert};
    ssl_certificate_key {key};
    client_max_body_size {limit};
    location / {{
      proxy_pass https://127.0.0.1:{upstream_port};
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-Proto https;
      proxy_http_version 1.1;
      proxy_request_buffering off;
      proxy_buffering off;
      proxy_ssl_verify off;
    }}
  }}
}}
"#,
            host = upstream.host,
            cert = pki.join("registry.crt").display(),
            key = pki.join("registry.key").display(),
            upstream_port = upstream.proc.port,
        );
        let file = dir.join("nginx.conf");
        std::fs::write(&file, config).map_err(|e| Error::io(&file, e))?;
        let mut cmd = Command::new(nginx);
        cmd.arg("-c").arg(&file).arg("-p").arg(&dir);
        let pid = spawn(&name, cmd, &env.run_dir)?;
        let client = crate::https_client(&env.ca_file)?;
        let url = format!("https://{}:{port}/v2/", upstream.host);
        wait_until(&name, pid, Duration::from_secs(20), &env.run_dir, || {
            client.get(&url).send().is_ok()
        })?;
        Ok(BodyLimitedProxy {
            host: upstream.host.clone(),
            port,
            pid,
            dir,
        })
    }

    /// `host:port` to use as the registry's address.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl Drop for BodyLimitedProxy {
    fn drop(&mut self) {
        stop(self.pid, Duration::from_secs(5));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
