//! DRF's lists (relative `next`/`previous`, `page_size`, newest first, `order_by`, Django
//! lookups, `search`), the settings' type checks and masked secrets, and schedules
//! refused with a 400 naming the crontab field and the reason.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{Auth, Cb};

fn ids(body: &Value) -> Vec<u64> {
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_u64().unwrap())
        .collect()
}

async fn pages_filters_and_order(cb: &Cb) {
    let auth = Auth::Token;
    for n in 1..=12 {
        let client = json!({"hostname": format!("host-{n:02}.example.org"), "enabled": n % 2 == 0, "port": 22 + n});
        cb.post(auth, "/api/v1/clients/", client).await;
    }
    let page = cb.get(auth, "/api/v1/clients/?page_size=5").await;
    assert_eq!(page["count"], 12);
    assert_eq!(ids(&page), [12, 11, 10, 9, 8]);
    assert_eq!(page["next"], "/api/v1/clients/?page=2&page_size=5");
    assert_eq!(page["previous"], Value::Null);
    let page = cb.get(auth, "/api/v1/clients/?page_size=5&page=2").await;
    assert_eq!(page["previous"], "/api/v1/clients/?page=1&page_size=5");
    assert_eq!(page["next"], "/api/v1/clients/?page=3&page_size=5");
    let page = cb.get(auth, "/api/v1/clients/?page_size=5&page=3").await;
    assert_eq!((ids(&page), &page["next"]), (vec![2, 1], &Value::Null));
    let (status, body) = cb
        .as_admin(
            auth,
            Method::GET,
            "/api/v1/clients/?page=4&page_size=5",
            None,
        )
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, json!({"detail": "Invalid page."}))
    );

    let get_ids = |query: &'static str| async move {
        ids(&cb.get(auth, &format!("/api/v1/clients/?{query}")).await)
    };
    assert_eq!(get_ids("order_by=id&page_size=3").await, [1, 2, 3]);
    assert_eq!(get_ids("order=-port,id&page_size=2").await, [12, 11]);
    assert_eq!(get_ids("hostname=host-03.example.org").await, [3]);
    assert_eq!(get_ids("hostname__icontains=HOST-1").await, [12, 11, 10]);
    assert_eq!(get_ids("id__in=2,4,99").await, [4, 2]);
    assert_eq!(get_ids("port__gte=32").await, [12, 11, 10]);
    assert_eq!(get_ids("enabled=false&port__lt=27").await, [3, 1]);
    assert_eq!(get_ids("not__enabled=true&port__lt=27").await, [3, 1]);
    assert_eq!(get_ids("or__id=1&or__id=12").await, [12, 1]);
    assert_eq!(get_ids("hostname__regex=^host-0[12]").await, [2, 1]);
    assert_eq!(get_ids("search=host-07").await, [7]);
    assert_eq!(
        get_ids("bandwidth_limit__isnull=false").await,
        Vec::<u64>::new()
    );
    let (status, body) = cb
        .as_admin(auth, Method::GET, "/api/v1/clients/?nope=1", None)
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            json!({"detail": "Client has no field named 'nope'"})
        )
    );
    let (status, body) = cb
        .as_admin(auth, Method::GET, "/api/v1/clients/?order_by=nope", None)
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            json!({"detail": "Client has no field named 'nope'"})
        )
    );
    let (status, _) = cb
        .as_admin(
            auth,
            Method::GET,
            "/api/v1/clients/?hostname__regex=(",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let users = cb
        .get(auth, "/api/v1/users/?email__iexact=ADMIN@CYBORG.LOCAL")
        .await;
    assert_eq!(users["count"], 1);
}

async fn settings(cb: &Cb) {
    let auth = Auth::Jwt;
    let list = cb.get(auth, "/api/v1/settings/").await;
    assert_eq!(list["count"], 22);
    let first = &list["results"][0];
    assert_eq!(
        (&first["id"], &first["key"]),
        (&json!(22), &json!("cyborgbackup_ic_cron"))
    );
    assert_eq!(
        (&first["value"], &first["type"], &first["setting_type"]),
        (&json!("00 20 * * *"), &json!("setting"), &json!("string"))
    );
    let mut fields: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "created",
            "group",
            "id",
            "key",
            "modified",
            "order",
            "setting_type",
            "type",
            "url",
            "value"
        ]
    );
    let booleans = cb
        .get(auth, "/api/v1/settings/?setting_type=boolean&page_size=100")
        .await;
    assert_eq!(booleans["count"], 9);

    let change = |id: u32, body: Value, method: Method| async move {
        cb.as_admin(auth, method, &format!("/api/v1/settings/{id}/"), Some(body))
            .await
    };
    let (status, body) = change(3, json!({"value": "False"}), Method::PATCH).await;
    assert_eq!((status, &body["value"]), (StatusCode::OK, &json!("False")));
    assert_eq!(cb.get(auth, "/api/v1/settings/3/").await["value"], "False");
    let (status, body) = change(3, json!({"value": "yes"}), Method::PATCH).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["value"][0].as_str().unwrap().contains("True"),
        "{body}"
    );
    let (status, body) = change(6, json!({"value": "ninety"}), Method::PUT).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = change(6, json!({"value": "30"}), Method::PUT).await;
    assert_eq!((status, &body["value"]), (StatusCode::OK, &json!("30")));
    let (status, body) = change(6, json!({}), Method::PUT).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            json!({"value": ["This field is required."]})
        )
    );
    let (status, body) = change(7, json!({"value": "hunter2"}), Method::PATCH).await;
    assert_eq!(
        (status, &body["value"]),
        (StatusCode::OK, &json!("$encrypted$"))
    );
    assert_eq!(
        cb.get(auth, "/api/v1/settings/7/").await["value"],
        "$encrypted$"
    );
    let (status, body) = change(10, json!({"value": 12}), Method::PATCH).await;
    assert_eq!(
        (status, &body["value"]),
        (StatusCode::OK, &json!("$encrypted$"))
    );
}

async fn crontabs(cb: &Cb) {
    let auth = Auth::Basic;
    let post = |body: Value| cb.as_admin(auth, Method::POST, "/api/v1/schedules/", Some(body));
    let (status, body) = post(json!({"name": "Bad", "crontab": "61 5 * * * *"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let reason = body["crontab"][0].as_str().unwrap();
    assert!(reason.starts_with("minute:"), "{body}");
    let (status, body) = post(json!({"name": "Five", "crontab": "0 5 * * *"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["crontab"][0].as_str().unwrap().contains("six fields"),
        "{body}"
    );
    let (status, body) = post(json!({"crontab": "0 5 * * * *"})).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            json!({"name": ["This field is required."]})
        )
    );
    let made = cb
        .post(
            auth,
            "/api/v1/schedules/",
            json!({"name": "Every Monday at five", "crontab": "0 5 * * MON *"}),
        )
        .await;
    let path = format!("/api/v1/schedules/{}/", made["id"]);
    let (status, body) = cb
        .as_admin(
            auth,
            Method::PATCH,
            &path,
            Some(json!({"crontab": "0 25 * * * *"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["crontab"][0].as_str().unwrap().starts_with("hour:"),
        "{body}"
    );
    assert_eq!(cb.get(auth, &path).await["crontab"], "0 5 * * MON *");
    let (status, body) = cb
        .as_admin(
            auth,
            Method::PUT,
            &path,
            Some(json!({"name": "Tuesdays", "crontab": "0 5 * * TUE *"})),
        )
        .await;
    assert_eq!(
        (status, &body["name"]),
        (StatusCode::OK, &json!("Tuesdays"))
    );
}

/// The SSH key pair of the SSH settings: made once, kept masked, its public half read
/// back; a second one only by force.
async fn ssh_keys(cb: &Cb) {
    let auth = Auth::Basic;
    let generate = "/api/v1/settings/generate_ssh/";
    let public = "/api/v1/settings/get_ssh_publickey/";
    // `settings` left "12" there: stored, but no key to read a public half from.
    let (status, _) = cb.as_admin(auth, Method::GET, generate, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cb.get(auth, public).await, json!([]));
    let (status, _) = cb
        .as_admin(
            auth,
            Method::PATCH,
            "/api/v1/settings/10/",
            Some(json!({"value": ""})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = cb.as_admin(auth, Method::GET, generate, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(cb.get(auth, public).await, json!([]));
    let (status, body) = cb
        .as_admin(
            auth,
            Method::POST,
            generate,
            Some(json!({"type": "rsa", "size": 4096})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["type"][0].as_str().unwrap().contains("ed25519"),
        "{body}"
    );
    let (status, body) = cb
        .as_admin(
            auth,
            Method::POST,
            generate,
            Some(json!({"type": "ed25519", "size": 256})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let first = body["pubkey"].as_str().unwrap().to_string();
    assert!(
        first.starts_with("ssh-ed25519 AAAA") && first.ends_with(" cyborg@cyborg.local"),
        "{first}"
    );
    let (status, body) = cb.as_admin(auth, Method::GET, generate, None).await;
    assert_eq!((status, body), (StatusCode::OK, json!([])));
    assert_eq!(cb.get(auth, public).await, json!(first));
    assert_eq!(
        cb.get(auth, "/api/v1/settings/10/").await["value"],
        "$encrypted$"
    );
    let (status, body) = cb
        .as_admin(auth, Method::POST, generate, Some(json!({"type": "ecdsa"})))
        .await;
    assert_eq!((status, body), (StatusCode::CONFLICT, json!({})));
    assert_eq!(cb.get(auth, public).await, json!(first));
    let (status, body) = cb
        .as_admin(
            auth,
            Method::POST,
            generate,
            Some(json!({"type": "ecdsa", "size": 256, "force": true})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let second = body["pubkey"].as_str().unwrap();
    assert!(second.starts_with("ecdsa-sha2-nistp256 "), "{second}");
    assert_eq!(cb.get(auth, public).await, json!(second));
}

/// The server's `/metrics`, with Basic `user:password` when given.
async fn scrape(cb: &Cb, basic: Option<(&str, &str)>) -> String {
    let mut request = cb.client.get(format!("{}/metrics", cb.base));
    if let Some((user, password)) = basic {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

/// CyBorgBackup's gauges join the core's series only as its `metrics_*` settings say;
/// the core's series are there for every request.
async fn metrics(cb: &Cb) {
    let auth = Auth::Basic;
    let set = |id: u32, value: &'static str| async move {
        let (status, body) = cb
            .as_admin(
                auth,
                Method::PATCH,
                &format!("/api/v1/settings/{id}/"),
                Some(json!({ "value": value })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    };
    let plain = scrape(cb, None).await;
    assert!(plain.contains("stowage_http_requests_total"), "{plain}");
    assert!(!plain.contains("cyborgbackup_"), "{plain}");
    set(17, "True").await;
    // metrics_auth is on by default: only cyborg:backup sees the gauges.
    assert!(!scrape(cb, None).await.contains("cyborgbackup_"));
    assert!(!scrape(cb, Some(("cyborg", "wrong")))
        .await
        .contains("cyborgbackup_"));
    let seen = scrape(cb, Some(("cyborg", "backup"))).await;
    assert!(seen.contains("stowage_http_requests_total"), "{seen}");
    assert!(seen.contains("cyborgbackup_info{instance=\""), "{seen}");
    assert!(seen.contains("version=\"1.4\"} 1.0"), "{seen}");
    assert!(
        seen.contains("cyborgbackup_jobs_status{") && seen.contains("status=\"starting\"} 0.0"),
        "{seen}"
    );
    assert!(seen.contains("# TYPE cyborgbackup_repositories_size gauge"));
    set(19, "prom").await;
    set(20, "scrape me").await;
    assert!(!scrape(cb, Some(("cyborg", "backup")))
        .await
        .contains("cyborgbackup_"));
    assert!(scrape(cb, Some(("prom", "scrape me")))
        .await
        .contains("cyborgbackup_info"));
    set(18, "False").await;
    assert!(scrape(cb, None).await.contains("cyborgbackup_info"));
    set(17, "False").await;
    assert!(!scrape(cb, Some(("prom", "scrape me")))
        .await
        .contains("cyborgbackup_"));
}

#[tokio::test]
async fn cyborgbackup_lists_settings_and_crontabs() {
    let cb = Cb::start().await;
    pages_filters_and_order(&cb).await;
    settings(&cb).await;
    crontabs(&cb).await;
    metrics(&cb).await;
    ssh_keys(&cb).await;
}
