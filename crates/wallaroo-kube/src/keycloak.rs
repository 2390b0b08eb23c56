//! `user["EMAIL"]` of kind `keycloak_user`: Wallaroo users in Keycloak's master realm,
//! through the admin REST API, authenticated with the credentials the chart keeps in the
//! `keycloak-admin-secret` Secret. The `admin` role is Keycloak's realm role `admin`
//! (how Wallaroo maps its Admin type is not public; this is our assumption).

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::{Value, json};
use wallaroo_engine::{Address, Attrs, ReadRequest, ResourceError, ResourceKind};

use crate::{ClusterConfig, kube_err, str_attr};

pub struct KeycloakUserKind {
    client: kube::Client,
    config: std::sync::Arc<ClusterConfig>,
    /// The client, or why none could be made (an image without the system's CA certificates):
    /// said when Keycloak is first asked, not a panic when the kinds are set up.
    http: Result<reqwest::Client, String>,
    /// The admin token and until when it is used: every user of a plan shares one login
    /// (Keycloak hashes the admin password on each, a few hundred milliseconds). Kept in
    /// memory only.
    token: tokio::sync::Mutex<Option<(String, std::time::Instant)>>,
}

const ADMIN_SECRET: &str = "keycloak-admin-secret";

/// A user of Keycloak's master realm, as `wallaroo init --from-cluster` reads it.
#[derive(Debug, Clone)]
pub struct KeycloakUser {
    pub username: String,
    pub email: Option<String>,
    pub admin: bool,
}

impl KeycloakUserKind {
    pub fn new(client: kube::Client, config: std::sync::Arc<ClusterConfig>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| {
                format!(
                    "cannot make an HTTPS client for Keycloak: {} (install the CA certificates in the image that runs wallaroo)",
                    wallaroo_engine::error_chain(&e)
                )
            });
        KeycloakUserKind {
            client,
            config,
            http,
            token: tokio::sync::Mutex::new(None),
        }
    }

    fn http(&self) -> Result<&reqwest::Client, ResourceError> {
        self.http
            .as_ref()
            .map_err(|e| ResourceError::new(e.clone()))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.keycloak_url.trim_end_matches('/'))
    }

    /// An admin token: the one already held while it has more than half its life left, else
    /// a new login. Concurrent callers wait for one login.
    async fn token(&self) -> Result<String, ResourceError> {
        let mut held = self.token.lock().await;
        if let Some((token, until)) = held.as_ref()
            && std::time::Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let (token, lifetime) = self.login().await?;
        *held = Some((token.clone(), std::time::Instant::now() + lifetime / 2));
        Ok(token)
    }

    /// Logs in with the credentials in `keycloak-admin-secret`: a token and how long it lives.
    async fn login(&self) -> Result<(String, std::time::Duration), ResourceError> {
        let ns = &self.config.namespace;
        let (user, password) = self.admin_credentials().await?;
        let r = self
            .http()?
            .post(self.url("/realms/master/protocol/openid-connect/token"))
            .form(&[
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", &user),
                ("password", &password),
            ])
            .send()
            .await
            .map_err(|e| {
                ResourceError::new(format!("Keycloak at {}: {e}", self.config.keycloak_url))
            })?;
        if !r.status().is_success() {
            return Err(ResourceError::new(format!(
                "Keycloak refused the admin credentials of {ns}/{ADMIN_SECRET} ({})",
                r.status()
            )));
        }
        let body: Value = r
            .json()
            .await
            .map_err(|e| ResourceError::new(e.to_string()))?;
        let token = body["access_token"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| ResourceError::new("Keycloak sent no access token"))?;
        // Keycloak's master realm gives admin tokens 60 seconds unless configured otherwise.
        let lifetime = std::time::Duration::from_secs(body["expires_in"].as_u64().unwrap_or(60));
        Ok((token, lifetime))
    }

    async fn call(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<reqwest::Response, ResourceError> {
        let mut req = self
            .http()?
            .request(method.clone(), self.url(path))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req
            .send()
            .await
            .map_err(|e| ResourceError::new(format!("Keycloak {method} {path}: {e}")))?;
        if !r.status().is_success() {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            return Err(ResourceError::new(format!(
                "Keycloak {method} {path}: {status} {text}"
            )));
        }
        Ok(r)
    }

    /// The realm's users, with whether each holds the admin role: all but Keycloak's own
    /// admin (the one in `keycloak-admin-secret`) and clients' service accounts.
    pub async fn list_users(&self) -> Result<Vec<KeycloakUser>, ResourceError> {
        let token = self.token().await?;
        let admin = self.admin_user().await?;
        let mut out = Vec::new();
        let mut first = 0;
        loop {
            let page: Vec<Value> = self
                .call(
                    &token,
                    reqwest::Method::GET,
                    &format!("/admin/realms/master/users?first={first}&max=100"),
                    None,
                )
                .await?
                .json()
                .await
                .map_err(|e| ResourceError::new(e.to_string()))?;
            let n = page.len();
            for u in page {
                let username = u["username"].as_str().unwrap_or_default().to_string();
                if username == admin
                    || username.starts_with("service-account-")
                    || u.get("serviceAccountClientId").is_some()
                {
                    continue;
                }
                let id = u["id"].as_str().unwrap_or_default();
                out.push(KeycloakUser {
                    admin: self.is_admin(&token, id).await?,
                    email: u["email"].as_str().map(String::from),
                    username,
                });
            }
            if n < 100 {
                break;
            }
            first += n;
        }
        out.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(out)
    }

    async fn admin_user(&self) -> Result<String, ResourceError> {
        Ok(self.admin_credentials().await?.0)
    }

    /// The user and password in `keycloak-admin-secret`.
    async fn admin_credentials(&self) -> Result<(String, String), ResourceError> {
        let ns = &self.config.namespace;
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let secret = api
            .get(ADMIN_SECRET)
            .await
            .map_err(kube_err(format!("reading {ns}/{ADMIN_SECRET}")))?;
        let data = secret.data.unwrap_or_default();
        let field = |k: &str| {
            data.get(k)
                .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                .ok_or_else(|| ResourceError::new(format!("{ns}/{ADMIN_SECRET} has no {k}")))
        };
        Ok((
            field("KEYCLOAK_ADMIN_USER")?,
            field("KEYCLOAK_ADMIN_PASSWORD")?,
        ))
    }

    async fn find(&self, token: &str, email: &str) -> Result<Option<Value>, ResourceError> {
        let r = self
            .call(
                token,
                reqwest::Method::GET,
                &format!(
                    "/admin/realms/master/users?exact=true&email={}",
                    urlencode(email)
                ),
                None,
            )
            .await?;
        let users: Vec<Value> = r
            .json()
            .await
            .map_err(|e| ResourceError::new(e.to_string()))?;
        Ok(users.into_iter().next())
    }

    /// The user by the resource's email, else (an `import` block) by the username it names.
    async fn find_user(&self, token: &str, attrs: &Attrs) -> Result<Option<Value>, ResourceError> {
        let email = str_attr(attrs, "email")?;
        if let Some(user) = self.find(token, email).await? {
            return Ok(Some(user));
        }
        let Some(username) = attrs.get("import_id").and_then(Value::as_str) else {
            return Ok(None);
        };
        let r = self
            .call(
                token,
                reqwest::Method::GET,
                &format!(
                    "/admin/realms/master/users?exact=true&username={}",
                    urlencode(username)
                ),
                None,
            )
            .await?;
        let users: Vec<Value> = r
            .json()
            .await
            .map_err(|e| ResourceError::new(e.to_string()))?;
        Ok(users.into_iter().next())
    }

    /// Gives an imported user the spec's email.
    async fn set_email(&self, token: &str, user: &Value, email: &str) -> Result<(), ResourceError> {
        if user["email"].as_str() == Some(email) {
            return Ok(());
        }
        let id = user["id"].as_str().unwrap_or_default();
        self.call(
            token,
            reqwest::Method::PUT,
            &format!("/admin/realms/master/users/{id}"),
            Some(json!({"email": email, "emailVerified": true})),
        )
        .await
        .map(|_| ())
    }

    async fn is_admin(&self, token: &str, id: &str) -> Result<bool, ResourceError> {
        let r = self
            .call(
                token,
                reqwest::Method::GET,
                &format!("/admin/realms/master/users/{id}/role-mappings/realm"),
                None,
            )
            .await?;
        let roles: Vec<Value> = r
            .json()
            .await
            .map_err(|e| ResourceError::new(e.to_string()))?;
        Ok(roles.iter().any(|r| r["name"] == "admin"))
    }

    async fn set_role(&self, token: &str, id: &str, admin: bool) -> Result<(), ResourceError> {
        if self.is_admin(token, id).await? == admin {
            return Ok(());
        }
        let role: Value = self
            .call(
                token,
                reqwest::Method::GET,
                "/admin/realms/master/roles/admin",
                None,
            )
            .await?
            .json()
            .await
            .map_err(|e| ResourceError::new(e.to_string()))?;
        let method = if admin {
            reqwest::Method::POST
        } else {
            reqwest::Method::DELETE
        };
        self.call(
            token,
            method,
            &format!("/admin/realms/master/users/{id}/role-mappings/realm"),
            Some(json!([role])),
        )
        .await?;
        Ok(())
    }

    async fn set_password(
        &self,
        token: &str,
        id: &str,
        desired: &Attrs,
    ) -> Result<(), ResourceError> {
        // Without a password in the spec the user's own is left as it is.
        let Some(password) = desired.get("password").and_then(Value::as_str) else {
            return Ok(());
        };
        let temporary = desired
            .get("temporary")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        self.call(
            token,
            reqwest::Method::PUT,
            &format!("/admin/realms/master/users/{id}/reset-password"),
            Some(json!({"type": "password", "value": password, "temporary": temporary})),
        )
        .await?;
        Ok(())
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[async_trait]
impl ResourceKind for KeycloakUserKind {
    fn name(&self) -> &'static str {
        "keycloak_user"
    }

    fn force_new(&self) -> &'static [&'static str] {
        &["email"]
    }

    fn sensitive(&self) -> &'static [&'static str] {
        &["password"]
    }

    async fn read(&self, req: ReadRequest<'_>) -> Result<Option<Attrs>, ResourceError> {
        let Some(attrs) = req.prior.or(req.desired) else {
            return Ok(None);
        };
        let email = str_attr(attrs, "email")?;
        // Before the release exists there is no Keycloak to ask, and no user.
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.config.namespace);
        if api
            .get_opt(ADMIN_SECRET)
            .await
            .map_err(kube_err("reading the Keycloak admin secret"))?
            .is_none()
        {
            return Ok(None);
        }
        let token = self.token().await?;
        let Some(user) = self.find_user(&token, attrs).await? else {
            return Ok(None);
        };
        let id = user["id"].as_str().unwrap_or_default();
        let role = if self.is_admin(&token, id).await? {
            "admin"
        } else {
            "user"
        };
        // `temporary` applies when a password is set; the password itself cannot be read,
        // so its change is found through the salted hash in the lockfile.
        let temporary = attrs.get("temporary").cloned().unwrap_or(json!(true));
        let mut live = Attrs::from([
            ("email".to_string(), json!(email)),
            ("role".to_string(), json!(role)),
            ("temporary".to_string(), temporary),
        ]);
        if let Some(id) = attrs.get("import_id") {
            live.insert("import_id".into(), id.clone());
        }
        Ok(Some(live))
    }

    async fn create(&self, _: &Address, desired: &Attrs) -> Result<Attrs, ResourceError> {
        let email = str_attr(desired, "email")?;
        let token = self.token().await?;
        if self.find_user(&token, desired).await?.is_none() {
            self.call(
                &token,
                reqwest::Method::POST,
                "/admin/realms/master/users",
                Some(json!({"username": email, "email": email, "enabled": true, "emailVerified": true})),
            )
            .await?;
        }
        let user = self
            .find_user(&token, desired)
            .await?
            .ok_or_else(|| ResourceError::new(format!("Keycloak did not keep user {email}")))?;
        self.set_email(&token, &user, email).await?;
        let id = user["id"].as_str().unwrap_or_default().to_string();
        self.set_password(&token, &id, desired).await?;
        self.set_role(&token, &id, desired.get("role") == Some(&json!("admin")))
            .await?;
        Ok(desired.clone())
    }

    async fn update(
        &self,
        _: &Address,
        _: &Attrs,
        desired: &Attrs,
    ) -> Result<Attrs, ResourceError> {
        let email = str_attr(desired, "email")?;
        let token = self.token().await?;
        let user = self
            .find_user(&token, desired)
            .await?
            .ok_or_else(|| ResourceError::new(format!("user {email} is gone from Keycloak")))?;
        self.set_email(&token, &user, email).await?;
        let id = user["id"].as_str().unwrap_or_default().to_string();
        self.set_password(&token, &id, desired).await?;
        self.set_role(&token, &id, desired.get("role") == Some(&json!("admin")))
            .await?;
        Ok(desired.clone())
    }

    async fn delete(&self, _: &Address, prior: &Attrs) -> Result<(), ResourceError> {
        let email = str_attr(prior, "email")?;
        let token = self.token().await?;
        if let Some(user) = self.find(&token, email).await? {
            let id = user["id"].as_str().unwrap_or_default();
            self.call(
                &token,
                reqwest::Method::DELETE,
                &format!("/admin/realms/master/users/{id}"),
                None,
            )
            .await?;
        }
        Ok(())
    }
}
