//! The CyBorgBackup dialect over real HTTP (`/api/v1/...`), in-process like `server.rs`:
//! CyBorgBackup's own API tests (`cyborgbackup/api/tests.py`, 1–33 here, the policy,
//! catalog and stats ones, 16–18 and 34–40, in `policies`) on a server that starts empty and
//! gets the equivalents of their fixtures, each run with HTTP Basic, `Token <API key>` and
//! a JWT; then DRF's error bodies, tokens, lists (pages, filters, ordering), a
//! non-superuser's 403s, crontab and setting checks, and Backup-chan's own 404 beside it.

mod agents;
mod errors;
mod lists;
mod policies;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

use stowage::server::{self, ServerConfig};
use stowage::service::keys::Role;
use stowage::service::users::NewUser;

use crate::support::serve_on_loopback;

const ADMIN: &str = "admin@cyborg.local";
const ADMIN_PASSWORD: &str = "adminadmin";

/// How a request signs in.
#[derive(Debug, Clone, Copy)]
enum Auth {
    Basic,
    Token,
    Jwt,
}

const AUTHS: [Auth; 3] = [Auth::Basic, Auth::Token, Auth::Jwt];

struct Cb {
    base: String,
    client: Client,
    key: String,
    jwt: String,
    server: Option<server::RunningServer>,
    _dir: tempfile::TempDir,
    _guard: tokio::sync::RwLockReadGuard<'static, ()>,
}

impl Drop for Cb {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.state().begin_shutdown();
        }
    }
}

fn basic(email: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{email}:{password}")))
}

impl Cb {
    /// A server on an empty data directory, with the superuser of CyBorgBackup's
    /// fixtures made in the core user store and an API key assigned to it.
    async fn start() -> Cb {
        Cb::start_with(|_| {}).await
    }

    /// As [`Cb::start`], with the configuration changed first.
    async fn start_with(configure: impl FnOnce(&mut ServerConfig)) -> Cb {
        let guard = crate::server::MEMORY.read().await;
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig {
            data_dir: dir.path().join("data"),
            ..ServerConfig::default()
        };
        configure(&mut config);
        let state = server::prepare(&config).await.expect("prepare");
        let admin = NewUser {
            email: ADMIN.into(),
            superuser: true,
            ..NewUser::default()
        };
        state.users.create(admin, ADMIN_PASSWORD).unwrap();
        let (record, key) = state.keys.create("cyborg", Role::Admin).unwrap();
        state.keys.assign(&record.id, Some(ADMIN)).unwrap();
        let (base, server) = serve_on_loopback(state).await;
        let mut cb = Cb {
            base,
            client: Client::builder().no_proxy().build().unwrap(),
            key,
            jwt: String::new(),
            server: Some(server),
            _dir: dir,
            _guard: guard,
        };
        let (status, tokens) = cb
            .call(
                Method::POST,
                None,
                "/api/token/obtain/",
                Some(json!({"email": ADMIN, "password": ADMIN_PASSWORD})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{tokens}");
        cb.jwt = tokens["access"].as_str().unwrap().to_string();
        cb
    }

    fn header(&self, auth: Auth) -> String {
        match auth {
            Auth::Basic => basic(ADMIN, ADMIN_PASSWORD),
            Auth::Token => format!("Token {}", self.key),
            Auth::Jwt => format!("Bearer {}", self.jwt),
        }
    }

    /// A request with an `Authorization` header as given; the status, the headers and
    /// the body (JSON, or `Null` when empty).
    async fn raw(
        &self,
        method: Method,
        authorization: Option<&str>,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        let text = response.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{path}: {status} is not JSON ({e}): {text}"))
        };
        (status, headers, value)
    }

    async fn call(
        &self,
        method: Method,
        authorization: Option<&str>,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, _, value) = self.raw(method, authorization, path, body).await;
        (status, value)
    }

    async fn as_admin(
        &self,
        auth: Auth,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call(method, Some(&self.header(auth)), path, body)
            .await
    }

    async fn get(&self, auth: Auth, path: &str) -> Value {
        let (status, body) = self.as_admin(auth, Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        body
    }

    async fn count(&self, auth: Auth, path: &str) -> u64 {
        self.get(auth, path).await["count"].as_u64().unwrap()
    }

    async fn post(&self, auth: Auth, path: &str, body: Value) -> Value {
        let (status, answer) = self.as_admin(auth, Method::POST, path, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{path}: {answer}");
        answer
    }

    /// The objects of CyBorgBackup's test fixtures, made through the API.
    async fn fixtures(&self) {
        let auth = Auth::Basic;
        let schedule =
            json!({"name": "Demo Schedule", "crontab": "0 5 * * MON *", "enabled": false});
        assert_eq!(
            self.post(auth, "/api/v1/schedules/", schedule).await["id"],
            1
        );
        let repository = json!({"name": "Demo Repository", "path": "/tmp/repository",
            "repository_key": "0123456789abcdef", "enabled": false, "ready": false});
        assert_eq!(
            self.post(auth, "/api/v1/repositories/", repository).await["id"],
            1
        );
        let client = json!({"hostname": "localhost", "enabled": false});
        assert_eq!(self.post(auth, "/api/v1/clients/", client).await["id"], 1);
    }
}

/// Tests 1–15 and 19, 24, 29 of CyBorgBackup's suite: the reads, before anything else
/// is created.
async fn reads(cb: &Cb, auth: Auth) {
    // 1–5
    let (status, _) = cb.call(Method::GET, None, "/notFound", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, api) = cb.call(Method::GET, None, "/api/", None).await;
    assert_eq!(
        (status, &api["current_version"]),
        (StatusCode::OK, &json!("/api/v1/"))
    );
    let (status, swagger) = cb.call(Method::GET, None, "/doc/swagger.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(swagger["paths"]["/api/v1/schedules/{id}/"]["patch"].is_object());
    let (status, _) = cb.call(Method::GET, None, "/api/login/", None).await;
    assert_eq!(status, StatusCode::OK);
    let response = cb
        .client
        .post(format!("{}/api/logout/", cb.base))
        .send()
        .await
        .unwrap();
    // reqwest follows the redirect to the sign-in page; the first answer was a 302.
    assert_eq!(response.url().path(), "/api/login/");
    let no_redirect = Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = no_redirect
        .post(format!("{}/api/logout/", cb.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    // 6–9
    let (status, v1) = cb.call(Method::GET, None, "/api/v1/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        v1["ping"].as_str().unwrap().contains("/api/v1/ping"),
        "{v1}"
    );
    let (status, ping) = cb.call(Method::GET, None, "/api/v1/ping/", None).await;
    assert_eq!(
        (status, &ping["version"], &ping["ping"]),
        (StatusCode::OK, &json!("1.4"), &json!("pong"))
    );
    let (status, body) = cb.call(Method::GET, None, "/api/v1/config/", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let config = cb.get(auth, "/api/v1/config/").await;
    assert_eq!(config["time_zone"], "UTC");
    assert_eq!(config["debug"], false);
    assert_eq!(config["sql_debug"], false);
    assert_eq!(config["version"], "1.4");
    // 10–15
    let me = cb.get(auth, "/api/v1/me/").await;
    assert_eq!(me["count"], 1);
    assert_eq!(me["results"][0]["type"], "user");
    assert_eq!(me["results"][0]["is_superuser"], true);
    assert_eq!(me["results"][0]["email"], ADMIN);
    assert_eq!(cb.count(auth, "/api/v1/users/").await, 1);
    assert_eq!(cb.count(auth, "/api/v1/settings/").await, 22);
    assert_eq!(cb.count(auth, "/api/v1/clients/").await, 1);
    assert_eq!(cb.count(auth, "/api/v1/schedules/").await, 1);
    assert_eq!(cb.count(auth, "/api/v1/repositories/").await, 1);
    // 19
    let schedule = cb.get(auth, "/api/v1/schedules/1/").await;
    assert_eq!(schedule["id"], 1);
    assert_eq!(schedule["crontab"], "0 5 * * MON *");
    assert_eq!(schedule["enabled"], false);
    let mut fields: Vec<&str> = schedule
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["created", "crontab", "enabled", "id", "modified", "name", "url", "uuid"]
    );
    assert!(schedule["url"]
        .as_str()
        .unwrap()
        .starts_with("http://127.0.0.1:"));
    // 24
    let repository = cb.get(auth, "/api/v1/repositories/1/").await;
    assert_eq!(repository["name"], "Demo Repository");
    assert_eq!(repository["enabled"], false);
    assert_eq!(repository["path"], "/tmp/repository");
    assert_eq!(repository["repository_key"], "0123456789abcdef");
    // 29
    let client = cb.get(auth, "/api/v1/clients/1/").await;
    assert_eq!(client["hostname"], "localhost");
    assert_eq!(client["enabled"], false);
    assert_eq!(client["ip"], "");
    assert_eq!(client["ready"], false);
    assert_eq!(client["type"], "client");
}

/// Tests 20–23, 25–28 and 30–33: create, list, change and delete.
async fn writes(cb: &Cb, auth: Auth) {
    // 20–23
    let made = cb
        .post(
            auth,
            "/api/v1/schedules/",
            json!({"name": "Test Create Schedule", "crontab": "1 1 1 1 * *"}),
        )
        .await;
    assert_eq!(made["crontab"], "1 1 1 1 * *");
    assert_eq!(made["name"], "Test Create Schedule");
    assert_eq!(made["enabled"], true);
    assert_ne!(cb.count(auth, "/api/v1/schedules/").await, 0);
    let made = cb
        .post(
            auth,
            "/api/v1/schedules/",
            json!({"name": "Test Update Schedule", "crontab": "2 2 2 2 * *"}),
        )
        .await;
    let path = format!("/api/v1/schedules/{}/", made["id"]);
    let (status, changed) = cb
        .as_admin(auth, Method::PATCH, &path, Some(json!({"enabled": false})))
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(
        (&changed["id"], &changed["crontab"], &changed["name"]),
        (&made["id"], &made["crontab"], &made["name"])
    );
    assert!(changed["url"].as_str().unwrap().ends_with(&path));
    assert_eq!(changed["enabled"], false);
    delete_keeps_count(
        cb,
        auth,
        "/api/v1/schedules/",
        json!({"name": "Gone", "crontab": "3 3 3 3 * *"}),
    )
    .await;
    // 25–28
    let repository = json!({"name": "Test Repository", "path": "/dev/null", "repository_key": "0123456789abcdef"});
    let made = cb
        .post(auth, "/api/v1/repositories/", repository.clone())
        .await;
    assert_eq!(
        (&made["name"], &made["path"], &made["enabled"]),
        (&json!("Test Repository"), &json!("/dev/null"), &json!(true))
    );
    assert_ne!(cb.count(auth, "/api/v1/repositories/").await, 0);
    let path = format!("/api/v1/repositories/{}/", made["id"]);
    let (status, changed) = cb
        .as_admin(
            auth,
            Method::PATCH,
            &path,
            Some(json!({"enabled": false, "path": "/dev/null"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(
        (
            &changed["id"],
            &changed["path"],
            &changed["name"],
            &changed["enabled"]
        ),
        (
            &made["id"],
            &json!("/dev/null"),
            &made["name"],
            &json!(false)
        )
    );
    assert!(changed["url"].as_str().unwrap().ends_with(&path));
    delete_keeps_count(cb, auth, "/api/v1/repositories/", repository).await;
    // 30–33
    let made = cb
        .post(
            auth,
            "/api/v1/clients/",
            json!({"hostname": "localhost.localdomain"}),
        )
        .await;
    assert_eq!(
        (&made["hostname"], &made["enabled"]),
        (&json!("localhost.localdomain"), &json!(true))
    );
    assert_eq!(made["summary_fields"]["created_by"]["email"], ADMIN);
    assert_ne!(cb.count(auth, "/api/v1/clients/").await, 0);
    let path = format!("/api/v1/clients/{}/", made["id"]);
    let (status, changed) = cb
        .as_admin(auth, Method::PATCH, &path, Some(json!({"enabled": false})))
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(
        (&changed["id"], &changed["hostname"], &changed["enabled"]),
        (&made["id"], &made["hostname"], &json!(false))
    );
    assert!(changed["url"].as_str().unwrap().ends_with(&path));
    delete_keeps_count(
        cb,
        auth,
        "/api/v1/clients/",
        json!({"hostname": "localhost.localdomain"}),
    )
    .await;
}

/// Counts, creates, deletes (204), counts again: the same.
async fn delete_keeps_count(cb: &Cb, auth: Auth, list: &str, body: Value) {
    let before = cb.count(auth, list).await;
    let made = cb.post(auth, list, body).await;
    let path = format!("{list}{}/", made["id"]);
    let (status, _) = cb.as_admin(auth, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(cb.count(auth, list).await, before);
    let (status, gone) = cb.as_admin(auth, Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        gone["detail"]
            .as_str()
            .unwrap()
            .ends_with("matches the given query."),
        "{gone}"
    );
}

#[tokio::test]
async fn cyborgbackup_api_tests_pass_with_basic_token_and_jwt() {
    let cb = Cb::start().await;
    cb.fixtures().await;
    for auth in AUTHS {
        reads(&cb, auth).await;
    }
    for auth in AUTHS {
        writes(&cb, auth).await;
    }
}
