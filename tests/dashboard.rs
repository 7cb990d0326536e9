//! `/dashboard` over a real server, read as bytes: headers, escaping, and
//! what it shows with and without a report and a certificate gauge. The
//! browser test (`dashboard_browser.rs`) reads the rendered DOM.

use crate::mix;

#[tokio::test]
async fn the_page_is_self_contained_and_escapes_request_strings() {
    let (server, _sink) = mix::start(unroot::report::task::Handle::default()).await;
    mix::drive(&server).await;
    let reply = server.dashboard_get("/dashboard").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], "text/html; charset=utf-8");
    let csp = reply.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none';"), "{csp}");
    let page = String::from_utf8(reply.body).unwrap();
    // No external assets: nothing is loaded from anywhere.
    for external in ["src=\"http", "href=\"http", "<link", "@import", "url("] {
        assert!(!page.contains(external), "{external} in the page");
    }
    // One script, ours; the attacker's markup is text.
    assert_eq!(page.matches("<script>").count(), 1, "{page}");
    assert!(!page.contains("<img"), "{page}");
    assert!(page.contains(
        "x&quot;&gt;&lt;script&gt;document.body.dataset.pwned=&#39;1&#39;&lt;/script&gt;"
    ));
    assert!(
        page.contains(
            "&lt;img src=x onerror=&quot;document.body.dataset.pwned=&#39;1&#39;&quot;&gt;"
        )
    );
    assert!(page.contains(r#"<meta http-equiv="refresh" content="10">"#));
    assert!(
        page.contains(r#"id="readiness-none">No readiness report: unroot runs without a cluster."#)
    );
    assert!(page.contains(r#"id="cert-expiry" colspan="2">unknown"#));
    assert!(
        page.contains(r#"<td class="n" id="admissions-validate-denied">1</td>"#),
        "{page}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_page_shows_the_report_and_the_certificates() {
    let (server, _sink) = mix::start(unroot::report::task::Handle::fixed(mix::report())).await;
    mix::register_certificates(&server, 10);
    let page = String::from_utf8(server.dashboard_get("/dashboard").await.body).unwrap();
    for want in [
        r#"<td class="n" id="readiness-team-a-pods">3</td>"#,
        r#"<td class="n bad" id="readiness-team-a-baseline" title="baseline:latest">1</td>"#,
        r#"<td class="n bad" id="readiness-team-a-restricted" title="restricted:latest">3</td>"#,
        r#"<td class="n ok" id="readiness-team-b-restricted" title="restricted:latest">0</td>"#,
        "allowPrivilegeEscalation=3, capabilities_restricted=3, runAsNonRoot=3",
        "Not evaluated: kube-system (excluded)",
        r#"id="cert-days-serving">"#,
    ] {
        assert!(page.contains(want), "{want} not in\n{page}");
    }
    // Ten days left is under the 14 days the alert fires at: shown as bad.
    assert!(
        page.contains(r#"<td class="n bad" id="cert-days-serving">"#),
        "{page}"
    );
    assert!(
        page.contains(r#"<td class="n" id="cert-days-ca">"#),
        "{page}"
    );
    let json = server.dashboard_get("/report").await.json();
    assert_eq!(json["namespaces"][0]["namespace"], "team-a");
    assert_eq!(json["namespaces"][0]["restricted"]["violating"], 3);
    assert_eq!(json["skipped"][0]["reason"], "excluded");
    server.shutdown().await;
}
