//! DRF's error bodies and statuses, sign-in by every scheme and its refusals, tokens
//! obtained, refreshed once and refused after, a non-superuser's 403s, and Backup-chan's
//! own 404 under `/api` beside CyBorgBackup's.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use stowage::service::keys::Role;

use super::{basic, Auth, Cb, ADMIN, ADMIN_PASSWORD};

fn claims(token: &str) -> Value {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn refused_sign_ins(cb: &Cb) {
    let (status, headers, body) = cb.raw(Method::GET, None, "/api/v1/users/", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({"detail": "Authentication credentials were not provided."})
    );
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"api\"");
    let wrong = basic(ADMIN, "wrong password");
    let (status, headers, body) = cb.raw(Method::GET, Some(&wrong), "/api/v1/me/", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, json!({"detail": "Invalid username/password."}));
    assert_eq!(headers["www-authenticate"], "Basic realm=\"api\"");
    let (status, headers, body) = cb
        .raw(
            Method::GET,
            Some("Token 0123456789abcdef.nope"),
            "/api/v1/me/",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, json!({"detail": "Invalid token."}));
    assert_eq!(headers["www-authenticate"], "Token");
    let (status, body) = cb
        .call(Method::GET, Some("Bearer not.a.token"), "/api/v1/me/", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "token_not_valid");
    assert_eq!(body["detail"], "Given token not valid for any token type");
    let (status, body) = cb
        .call(Method::GET, Some("Basic !!!"), "/api/v1/me/", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body["detail"],
        "Invalid basic header. Credentials not correctly base64 encoded."
    );
    // Repeated failures for one email make further tries wait, as DRF's throttling says
    // (after five, the wait doubles with each failure: however slow this machine, a try
    // soon comes within it).
    let guess = basic("guesser@example.org", "not it");
    for _ in 0..5 {
        let (status, _) = cb
            .call(Method::GET, Some(&guess), "/api/v1/me/", None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let mut throttled = None;
    for _ in 0..10 {
        let (status, headers, body) = cb.raw(Method::GET, Some(&guess), "/api/v1/me/", None).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            throttled = Some((headers, body));
            break;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (headers, body) = throttled.expect("tries after five failures are throttled");
    let seconds: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(seconds >= 1, "{headers:?}");
    assert_eq!(
        body,
        json!({"detail": format!("Request was throttled. Expected available in {seconds} seconds.")})
    );
}

async fn tokens(cb: &Cb) {
    let obtain = |body: Value| cb.call(Method::POST, None, "/api/token/obtain/", Some(body));
    let (status, body) = obtain(json!({"email": ADMIN, "password": "nope"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({"detail": "No active account found with the given credentials"})
    );
    let (status, body) = obtain(json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"email": ["This field is required."], "password": ["This field is required."]})
    );
    let (status, body) = cb.call(Method::GET, None, "/api/token/obtain/", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body, json!({"detail": "Method \"GET\" not allowed."}));
    let (status, pair) = obtain(json!({"email": ADMIN, "password": ADMIN_PASSWORD})).await;
    assert_eq!(status, StatusCode::OK);
    let access = claims(pair["access"].as_str().unwrap());
    for claim in [
        "token_type",
        "exp",
        "iat",
        "jti",
        "user_id",
        "email",
        "first_name",
        "last_name",
    ] {
        assert!(access.get(claim).is_some(), "{claim} in {access}");
    }
    assert_eq!(access["token_type"], "access");
    assert_eq!(access["email"], ADMIN);
    assert_eq!(
        access["exp"].as_i64().unwrap() - access["iat"].as_i64().unwrap(),
        3600
    );
    let refresh = claims(pair["refresh"].as_str().unwrap());
    assert_eq!(
        refresh["exp"].as_i64().unwrap() - refresh["iat"].as_i64().unwrap(),
        14 * 86400
    );
    // A refresh token works once; an access token is no refresh token.
    let old = pair["refresh"].clone();
    let (status, fresh) = cb
        .call(
            Method::POST,
            None,
            "/api/token/refresh/",
            Some(json!({"refresh": old})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{fresh}");
    let bearer = format!("Bearer {}", fresh["access"].as_str().unwrap());
    let (status, _) = cb
        .call(Method::GET, Some(&bearer), "/api/v1/me/", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = cb
        .call(
            Method::POST,
            None,
            "/api/token/refresh/",
            Some(json!({"refresh": old})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "token_not_valid");
    let (status, _) = cb
        .call(
            Method::POST,
            None,
            "/api/token/refresh/",
            Some(json!({"refresh": pair["access"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = cb
        .call(
            Method::POST,
            None,
            "/api/token/refresh/",
            Some(json!({"refresh": fresh["refresh"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

async fn drf_errors(cb: &Cb) {
    let auth = Auth::Basic;
    for (path, detail) in [
        ("/api/v1/nothing/", "Not found."),
        ("/api/v1/policies/x/", "Not found."),
        ("/api/v1/jobs/1/unknown/", "Not found."),
        ("/api/v1/jobs/1/", "No Job matches the given query."),
        ("/api/v1/policies/9/", "No Policy matches the given query."),
        ("/api/v1/clients/abc/", "Not found."),
        (
            "/api/v1/schedules/999/",
            "No Schedule matches the given query.",
        ),
        ("/api/v1/users/999/", "No User matches the given query."),
        (
            "/api/v1/settings/23/",
            "No Setting matches the given query.",
        ),
    ] {
        let (status, body) = cb.as_admin(auth, Method::GET, path, None).await;
        assert_eq!(
            (status, body),
            (StatusCode::NOT_FOUND, json!({"detail": detail})),
            "{path}"
        );
    }
    let (status, headers, body) = cb.raw(Method::POST, None, "/api/v1/ping/", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body, json!({"detail": "Method \"POST\" not allowed."}));
    assert!(headers["allow"].to_str().unwrap().contains("GET"));
    let (status, body) = cb
        .as_admin(auth, Method::DELETE, "/api/v1/settings/1/", None)
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"detail": "Method \"DELETE\" not allowed."})
        )
    );
    let (status, body) = cb
        .as_admin(auth, Method::POST, "/api/v1/clients/", Some(json!({})))
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            json!({"hostname": ["This field is required."]})
        )
    );
    let (status, body) = cb
        .as_admin(
            auth,
            Method::POST,
            "/api/v1/clients/",
            Some(json!({"hostname": "h", "port": "x", "enabled": "maybe"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"port": ["A valid integer is required."], "enabled": ["Must be a valid boolean."]})
    );
    let (status, body) = cb
        .as_admin(
            auth,
            Method::POST,
            "/api/v1/users/",
            Some(json!({"email": "x@cyborg.local"})),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            json!({"password": ["Password required for new User."]})
        )
    );
    let (status, body) = cb
        .as_admin(
            auth,
            Method::POST,
            "/api/v1/users/",
            Some(json!({"email": ADMIN, "password": "long enough"})),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            json!({"email": ["User with this Email address already exists."]})
        )
    );
    let response = cb
        .client
        .post(format!("{}/api/v1/clients/", cb.base))
        .header("authorization", cb.header(auth))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("JSON parse error"),
        "{body}"
    );
    let (status, body) = cb
        .as_admin(auth, Method::POST, "/api/v1/clients/", Some(json!([1])))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["non_field_errors"][0],
        "Invalid data. Expected a dictionary, but got list."
    );
    // Without the trailing slash: the same answer.
    let (status, body) = cb.call(Method::GET, None, "/api/v1/ping", None).await;
    assert_eq!((status, &body["ping"]), (StatusCode::OK, &json!("pong")));
    assert_eq!(cb.get(auth, "/api/v1/settings").await["count"], 22);
}

async fn non_superuser(cb: &Cb) {
    let user = json!({"email": "user@cyborg.local", "password": "useruser", "first_name": "Some"});
    let made = cb.post(Auth::Jwt, "/api/v1/users/", user).await;
    assert_eq!(
        (&made["is_superuser"], &made["first_name"]),
        (&json!(false), &json!("Some"))
    );
    assert!(made.get("password").is_none());
    let auth = basic("user@cyborg.local", "useruser");
    for path in [
        "/api/v1/clients/",
        "/api/v1/users/",
        "/api/v1/me/",
        "/api/v1/config/",
        "/api/v1/settings/",
    ] {
        let (status, body) = cb.call(Method::GET, Some(&auth), path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let forbidden = json!({"detail": "You do not have permission to perform this action."});
    for (method, path, body) in [
        (Method::GET, "/api/v1/settings/1/", None),
        (
            Method::PATCH,
            "/api/v1/settings/1/",
            Some(json!({"value": "False"})),
        ),
        (
            Method::POST,
            "/api/v1/users/",
            Some(json!({"email": "z@cyborg.local", "password": "zzzzzzzz"})),
        ),
        (
            Method::POST,
            "/api/v1/clients/",
            Some(json!({"hostname": "h"})),
        ),
        (Method::DELETE, "/api/v1/users/1/", None),
    ] {
        let (status, answer) = cb.call(method, Some(&auth), path, body).await;
        assert_eq!(
            (status, &answer),
            (StatusCode::FORBIDDEN, &forbidden),
            "{path}"
        );
    }
    // A superuser changes the user; a user changing itself gets a fresh token.
    let path = format!("/api/v1/users/{}/", made["id"]);
    let (status, changed) = cb
        .as_admin(
            Auth::Token,
            Method::PATCH,
            &path,
            Some(json!({"last_name": "One", "notify_backup_failed": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(
        (&changed["last_name"], &changed["notify_backup_failed"]),
        (&json!("One"), &json!(true))
    );
    let (_, headers, _) = cb
        .raw(
            Method::PATCH,
            Some(&cb.header(Auth::Basic)),
            "/api/v1/users/1/",
            Some(json!({"first_name": "Admin"})),
        )
        .await;
    assert!(headers.contains_key("x-token"));
    // The email changes: the same user (id), signing in by the new address, with the
    // keys they own; another user's address is refused.
    let state = cb.server.as_ref().unwrap().state();
    let (record, key) = state.keys.create("user's", Role::Reader).unwrap();
    state
        .keys
        .assign(&record.id, Some("user@cyborg.local"))
        .unwrap();
    let (status, answer) = cb
        .as_admin(
            Auth::Basic,
            Method::PATCH,
            &path,
            Some(json!({"email": ADMIN})),
        )
        .await;
    assert_eq!(
        (status, answer),
        (
            StatusCode::BAD_REQUEST,
            json!({"email": ["User with this Email address already exists."]})
        )
    );
    let (status, renamed) = cb
        .as_admin(
            Auth::Basic,
            Method::PATCH,
            &path,
            Some(json!({"email": "renamed@cyborg.local"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(
        (&renamed["id"], &renamed["email"]),
        (&made["id"], &json!("renamed@cyborg.local"))
    );
    let (status, _) = cb.call(Method::GET, Some(&auth), "/api/v1/me/", None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the old address signs in no more"
    );
    let renamed_auth = basic("renamed@cyborg.local", "useruser");
    let (status, me) = cb
        .call(Method::GET, Some(&renamed_auth), "/api/v1/me/", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["results"][0]["id"], made["id"]);
    let token = format!("Token {key}");
    let (status, me) = cb
        .call(Method::GET, Some(&token), "/api/v1/me/", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["results"][0]["email"], "renamed@cyborg.local");

    let (status, _) = cb.as_admin(Auth::Basic, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = cb
        .call(Method::GET, Some(&renamed_auth), "/api/v1/me/", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn backupchan_keeps_its_404(cb: &Cb) {
    for path in ["/api/nonsense", "/api/target/x/y/z", "/api/jobs/nothing"] {
        let (status, body) = cb.call(Method::GET, None, path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body["success"], false, "{path}: {body}");
    }
    let (status, body) = cb.call(Method::GET, None, "/api/v1/nothing", None).await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, json!({"detail": "Not found."}))
    );
}

#[tokio::test]
async fn cyborgbackup_errors_auth_and_permissions() {
    let cb = Cb::start().await;
    refused_sign_ins(&cb).await;
    tokens(&cb).await;
    drf_errors(&cb).await;
    non_superuser(&cb).await;
    backupchan_keeps_its_404(&cb).await;
}
