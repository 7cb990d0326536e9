//! Hostile shapes over real TLS (issue 17): each is answered, within a
//! bound, with the right result or an error that says what is wrong, and
//! the server keeps answering afterwards.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{RecordingStore, apply, hardening_gaps, labels, review_as, review_for};
use serde_json::{Value, json};
use unroot::server::IdentityStore;

const HUB: &str = "system:serviceaccount:jupyterhub:hub";

async fn server() -> common::Server {
    common::start_with(common::Options {
        policy: common::provisioning_policy_on_pvc(),
        namespace_labels: [
            (
                "strict".to_owned(),
                labels(&[
                    ("unroot.dev/enforce", "restricted"),
                    ("unroot.dev/provisioning", "enabled"),
                    ("unroot.dev/trust-bundle", "enabled"),
                ]),
            ),
            (
                "base".to_owned(),
                labels(&[("unroot.dev/enforce", "baseline")]),
            ),
            (
                "plain".to_owned(),
                labels(&[("unroot.dev/enforce", "restricted")]),
            ),
        ]
        .into(),
        identity_store: Some(Arc::new(RecordingStore::default()) as Arc<dyn IdentityStore>),
        ..Default::default()
    })
    .await
}

fn pod(name: &str, containers: &Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": containers}})
}

/// A review whose `request.object` is `object_text` verbatim (for JSON that
/// `serde_json::Value` cannot hold: duplicate keys, huge numbers).
fn raw_review(operation: &str, namespace: &str, object_text: &str) -> Vec<u8> {
    let review = review_for(operation, namespace, &json!({"metadata": {"name": "raw"}}));
    let text = serde_json::to_string(&review).unwrap();
    let object = serde_json::to_string(&review["request"]["object"]).unwrap();
    assert_eq!(text.matches(&object).count(), 1);
    text.replacen(&object, object_text, 1).into_bytes()
}

/// The `response` of a review answered with HTTP 200.
fn response_of(reply: &common::Reply) -> Value {
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let body = reply.json();
    assert_eq!(body["kind"], "AdmissionReview");
    assert_eq!(body["response"]["uid"], "uid-raw");
    body["response"].clone()
}

/// The message of a refusal with a `Status` body.
fn status_of(reply: &common::Reply, code: u16) -> String {
    assert_eq!(
        reply.status,
        code,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let body = reply.json();
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["code"], code);
    body["message"].as_str().unwrap().to_owned()
}

fn message(response: &Value) -> &str {
    response["status"]["message"].as_str().unwrap_or_default()
}

/// The message of a refusal: a `Status` 400 (the body is no review), or a
/// review denied with 400 (the review is, its object is not).
fn refusal_of(reply: &common::Reply) -> String {
    if reply.status == 400 {
        return status_of(reply, 400);
    }
    let response = response_of(reply);
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 400);
    let text = message(&response).to_owned();
    // /validate keeps upstream's short message; the cause is annotated.
    match response["auditAnnotations"]["error"].as_str() {
        Some(error) if text == "failed to decode object" => error.to_owned(),
        _ => text,
    }
}

/// The server still answers a plain review correctly.
async fn still_answers(server: &common::Server) {
    let response = server
        .admit(
            "/mutate",
            &review_for(
                "CREATE",
                "base",
                &pod("after", &json!([{"name": "a", "image": "busybox"}])),
            ),
        )
        .await;
    assert_eq!(response["allowed"], true);
    assert!(response["patch"].is_string());
}

#[tokio::test]
async fn ten_thousand_deep_nesting_is_refused_with_400() {
    let server = server().await;
    let depth = 10_000;
    let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let objects = format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
    // A deep body is no review: a Status 400.
    let managed_fields = raw_review(
        "CREATE",
        "strict",
        &format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"raw","managedFields":[{{"manager":"m","fieldsType":"FieldsV1","fieldsV1":{arrays}}}]}},"spec":{{"containers":[]}}}}"#
        ),
    );
    // serde_json skips what it does not read without recursing, and stops
    // at 128 levels where it does.
    for (what, body, want) in [
        (
            "a deep array body",
            arrays.clone().into_bytes(),
            "request body is not an AdmissionReview: expected a JSON object",
        ),
        (
            "a deep object body",
            objects.clone().into_bytes(),
            r#"request body is not an AdmissionReview: kind is "", expected "AdmissionReview""#,
        ),
    ] {
        for path in ["/mutate", "/validate"] {
            let started = Instant::now();
            let reply = server.post(path, "application/json", body.clone()).await;
            let message = refusal_of(&reply);
            assert!(message.starts_with(want), "{what} {path}: {message}");
            assert!(started.elapsed() < Duration::from_secs(5), "{what} {path}");
        }
    }

    // Deep managedFields: unroot never reads them, so it skips them without
    // recursing (as it skips what Go's decoder would not read) and judges
    // the pod; nothing is hidden there that Pod Security looks at.
    for path in ["/mutate", "/validate"] {
        let started = Instant::now();
        let reply = server
            .post(path, "application/json", managed_fields.clone())
            .await;
        let response = response_of(&reply);
        assert!(
            !message(&response).contains("recursion"),
            "deep managedFields {path}: {response}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{path}");
    }

    // Deep nesting under a field no pod has: both webhooks skip unknown
    // fields without recursing, as Go does (a patch leaves them as they
    // are), and still judge every container: the deep field hides nothing.
    let unknown = raw_review(
        "CREATE",
        "strict",
        &format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"raw"}},"spec":{{"containers":[{{"name":"a","image":"busybox"}}]}},"x":{objects}}}"#
        ),
    );
    let reply = server
        .post("/mutate", "application/json", unknown.clone())
        .await;
    let mutated = response_of(&reply);
    assert_eq!(mutated["allowed"], true, "{mutated}");
    assert!(
        mutated["patch"].is_string(),
        "the container is hardened: {mutated}"
    );
    let response = response_of(&server.post("/validate", "application/json", unknown).await);
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 403);
    assert!(
        message(&response).starts_with(r#"pods "raw" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "a""#),
        "{}",
        message(&response)
    );
    still_answers(&server).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_ten_thousand_deep_policy_is_refused_by_the_policy_check() {
    let server = server().await;
    let depth = 10_000;
    for text in [
        format!(
            "apiVersion: unroot.dev/v1\nkind: Policy\nwebhook: {}{}\n",
            "[".repeat(depth),
            "]".repeat(depth)
        ),
        format!(
            "apiVersion: unroot.dev/v1\nkind: Policy\nwebhook: {}1{}\n",
            "{a: ".repeat(depth),
            "}".repeat(depth)
        ),
    ] {
        let configmap = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "unroot-policy", "labels": {"unroot.dev/policy": "true"}},
            "data": {"policy.yaml": text}});
        let started = Instant::now();
        let response = server
            .admit("/validate", &review_for("UPDATE", "unroot", &configmap))
            .await;
        assert_eq!(response["allowed"], false, "{response:#}");
        assert!(
            message(&response).contains("policy.yaml"),
            "{}",
            message(&response)
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    still_answers(&server).await;
    server.shutdown().await;
}

/// A debug build on a shared 2-core machine: generous. Issue 17 measured
/// over 25 s for this pod before the performance work.
const BIG_POD_BOUND: Duration = Duration::from_secs(30);

#[tokio::test]
async fn fifty_thousand_containers_get_a_correct_answer_in_bounded_time() {
    let server = server().await;
    let n = 50_000;
    let containers: Vec<Value> = (0..n)
        .map(|i| json!({"name": format!("c{i}"), "image": "busybox"}))
        .collect();
    let big = pod("big", &json!(containers));

    let started = Instant::now();
    let response = server
        .admit("/mutate", &review_for("CREATE", "plain", &big))
        .await;
    let mutate_took = started.elapsed();
    assert_eq!(response["allowed"], true, "{}", message(&response));
    let hardened = apply(&big, &response);
    assert_eq!(hardened["spec"]["containers"].as_array().unwrap().len(), n);
    assert_eq!(hardening_gaps(&hardened), Vec::<String>::new());
    assert!(mutate_took < BIG_POD_BOUND, "/mutate took {mutate_took:?}");

    // The hardened pod passes restricted; the original is denied, naming
    // every container in visit order.
    let started = Instant::now();
    let response = server
        .admit("/validate", &review_for("CREATE", "plain", &hardened))
        .await;
    assert_eq!(response["allowed"], true, "{}", message(&response));
    let response = server
        .admit("/validate", &review_for("CREATE", "plain", &big))
        .await;
    let validate_took = started.elapsed();
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 403);
    let text = message(&response);
    assert!(
        text.starts_with(r#"pods "big" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false (containers "c0", "c1", "c2", "#),
        "{}",
        &text[..200.min(text.len())]
    );
    assert!(text.contains(
        r#""c49998", "c49999" must set securityContext.allowPrivilegeEscalation=false)"#
    ));
    assert!(
        validate_took < BIG_POD_BOUND,
        "/validate took {validate_took:?}"
    );
    eprintln!("50,000 containers: /mutate {mutate_took:?}, /validate (twice) {validate_took:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn eight_mib_strings_are_413_and_just_under_the_limit_is_answered() {
    let server = server().await;
    let mut big = pod("s", &json!([{"name": "a", "image": "busybox"}]));
    big["metadata"]["annotations"] = json!({"huge": "x".repeat(8 * 1024 * 1024)});
    for path in ["/mutate", "/validate"] {
        let reply = server
            .review(path, &review_for("CREATE", "strict", &big))
            .await;
        assert_eq!(
            status_of(&reply, 413),
            "request body is larger than the 8 MiB limit",
            "{path}"
        );
    }

    // 7 MiB of one string fits: answered, and the patch does not carry it.
    let seven = "y".repeat(7 * 1024 * 1024);
    big["metadata"]["annotations"] = json!({"huge": seven});
    let started = Instant::now();
    let response = server
        .admit("/mutate", &review_for("CREATE", "strict", &big))
        .await;
    assert_eq!(response["allowed"], true, "{}", message(&response));
    assert!(response["patch"].as_str().unwrap().len() < 64 * 1024);
    let hardened = apply(&big, &response);
    assert_eq!(
        hardened["metadata"]["annotations"]["huge"],
        big["metadata"]["annotations"]["huge"]
    );
    let response = server
        .admit("/validate", &review_for("CREATE", "strict", &hardened))
        .await;
    assert_eq!(response["allowed"], true, "{}", message(&response));
    assert!(started.elapsed() < Duration::from_secs(20));
    server.shutdown().await;
}

/// Go's encoding/json (the API server) keeps the last of duplicate keys; the
/// API server re-encodes the object it sends, so a review from it never has
/// any. A forged one must not make /mutate and /validate judge different
/// values: both keep the last, like the API server.
#[tokio::test]
async fn duplicate_keys_resolve_to_the_last_in_both_webhooks() {
    let server = server().await;
    let privileged_last = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"raw"},"spec":{"containers":[
        {"name":"a","image":"busybox","securityContext":{},"securityContext":{"privileged":true}}]}}"#;
    let privileged_first = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"raw"},"spec":{"containers":[
        {"name":"a","image":"busybox","securityContext":{"privileged":true},"securityContext":{}}]}}"#;
    let reply = server
        .post(
            "/validate",
            "application/json",
            raw_review("CREATE", "base", privileged_last),
        )
        .await;
    let response = response_of(&reply);
    assert_eq!(response["allowed"], false);
    assert_eq!(
        message(&response),
        r#"pods "raw" is forbidden: violates PodSecurity "baseline:latest": privileged (container "a" must not set securityContext.privileged=true)"#
    );
    let reply = server
        .post(
            "/validate",
            "application/json",
            raw_review("CREATE", "base", privileged_first),
        )
        .await;
    assert_eq!(response_of(&reply)["allowed"], true);

    // /mutate sees the same (last) securityContext: it hardens the one
    // /validate judged, and leaves the privileged one for /validate to deny.
    for (object, privileged) in [(privileged_last, true), (privileged_first, false)] {
        let reply = server
            .post(
                "/mutate",
                "application/json",
                raw_review("CREATE", "base", object),
            )
            .await;
        let response = response_of(&reply);
        assert_eq!(response["allowed"], true);
        let last: Value = serde_json::from_str(object).unwrap();
        assert_eq!(
            last["spec"]["containers"][0]["securityContext"]["privileged"] == json!(true),
            privileged
        );
        let patched = apply(&last, &response);
        assert_eq!(
            patched["spec"]["containers"][0]["securityContext"]["privileged"] == json!(true),
            privileged,
            "{patched:#}"
        );
    }

    // Duplicate fields of the request itself are refused, naming the field.
    let review = serde_json::to_string(&review_for("CREATE", "base", &pod("raw", &json!([]))))
        .unwrap()
        .replacen(
            r#""operation":"CREATE""#,
            r#""operation":"UPDATE","operation":"CREATE""#,
            1,
        );
    for path in ["/mutate", "/validate"] {
        let reply = server
            .post(path, "application/json", review.clone().into_bytes())
            .await;
        let response = response_of(&reply);
        assert_eq!(response["allowed"], false);
        assert_eq!(response["status"]["code"], 400);
        assert!(
            message(&response)
                .starts_with("malformed AdmissionReview request: duplicate field `operation`"),
            "{path}: {}",
            message(&response)
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn numbers_past_i64_in_run_as_user_are_refused_not_wrapped() {
    let server = server().await;
    for number in [
        "9223372036854775808",
        "18446744073709551616",
        "-9223372036854775809",
        "1e400",
        "0.0",
        "-0",
    ] {
        let object = format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"raw"}},"spec":{{"securityContext":{{"runAsUser":{number}}},"containers":[{{"name":"a","image":"busybox","securityContext":{{"runAsUser":{number}}}}}]}}}}"#
        );
        for path in ["/mutate", "/validate"] {
            let reply = server
                .post(
                    path,
                    "application/json",
                    raw_review("CREATE", "strict", &object),
                )
                .await;
            let response = response_of(&reply);
            assert_eq!(response["allowed"], false, "{number} {path}");
            assert_eq!(response["status"]["code"], 400, "{number} {path}");
            // /validate says what upstream says, with the cause in the
            // `error` audit annotation (pss-spec §4.4 step 6).
            let why = if path == "/validate" {
                assert_eq!(message(&response), "failed to decode object");
                response["auditAnnotations"]["error"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            } else {
                message(&response).to_owned()
            };
            assert!(
                why.starts_with("failed to decode "),
                "{number} {path}: {why}"
            );
            assert!(
                why.contains("expected i64") || why.contains("number out of range"),
                "{number} {path}: {why}"
            );
            if path == "/mutate" {
                assert!(
                    why.contains(": spec.") && why.contains("securityContext.runAsUser: "),
                    "{number}: the field is named: {why}"
                );
            }
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn non_utf8_and_lone_surrogates_are_refused_with_400() {
    let server = server().await;
    let mut invalid = raw_review(
        "CREATE",
        "strict",
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"raw","annotations":{"a":"XX"}},"spec":{"containers":[]}}"#,
    );
    let at = invalid.windows(2).position(|w| w == b"XX").unwrap();
    invalid[at] = 0xff;
    invalid[at + 1] = 0xfe;
    let surrogate = raw_review(
        "CREATE",
        "strict",
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"raw","annotations":{"a":"\ud800"}},"spec":{"containers":[]}}"#,
    );
    for (what, body, want) in [
        (
            "invalid UTF-8",
            invalid,
            "request body is not valid JSON: invalid unicode code point",
        ),
        ("a lone surrogate", surrogate, "failed to decode "),
    ] {
        for path in ["/mutate", "/validate"] {
            let reply = server.post(path, "application/json", body.clone()).await;
            let text = refusal_of(&reply);
            assert!(text.starts_with(want), "{what} {path}: {text}");
            if what == "a lone surrogate" {
                assert!(text.contains("hex escape"), "{what} {path}: {text}");
            }
        }
    }
    still_answers(&server).await;
    server.shutdown().await;
}

/// Upstream compares capability names exactly (pss-spec §5.13): `all` and
/// ` ALL` are not `ALL`, `Sys_Admin` is not an allowed capability.
#[tokio::test]
async fn capability_names_in_odd_case_compare_exactly_as_upstream() {
    let server = server().await;
    let hardened_but = |caps: Value| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "caps"}, "spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "a", "image": "busybox", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": caps}}]}})
    };
    for drop in ["all", " ALL", "ALL ", "All", "CAP_ALL"] {
        let response = server
            .admit(
                "/validate",
                &review_for("CREATE", "strict", &hardened_but(json!({"drop": [drop]}))),
            )
            .await;
        assert_eq!(response["allowed"], false, "drop {drop:?}");
        assert_eq!(
            message(&response),
            r#"pods "caps" is forbidden: violates PodSecurity "restricted:latest": unrestricted capabilities (container "a" must set securityContext.capabilities.drop=["ALL"])"#,
            "drop {drop:?}"
        );
    }
    for add in [
        "sys_admin",
        "Sys_Admin",
        "CAP_SYS_ADMIN",
        " SYS_ADMIN",
        "chown",
    ] {
        let response = server
            .admit(
                "/validate",
                &review_for("CREATE", "base", &hardened_but(json!({"add": [add]}))),
            )
            .await;
        assert_eq!(response["allowed"], false, "add {add:?}");
        assert_eq!(
            message(&response),
            format!(
                r#"pods "caps" is forbidden: violates PodSecurity "baseline:latest": non-default capabilities (container "a" must not include "{add}" in securityContext.capabilities.add)"#
            ),
        );
    }
    // The exact spellings pass.
    let response = server
        .admit(
            "/validate",
            &review_for("CREATE", "base", &hardened_but(json!({"add": ["CHOWN"]}))),
        )
        .await;
    assert_eq!(response["allowed"], true);

    // /mutate adds the exact `ALL` next to a look-alike, so the hardened
    // pod passes restricted.
    for drop in ["all", " ALL"] {
        let original = hardened_but(json!({"drop": [drop]}));
        let response = server
            .admit("/mutate", &review_for("CREATE", "strict", &original))
            .await;
        let hardened = apply(&original, &response);
        let drops = &hardened["spec"]["containers"][0]["securityContext"]["capabilities"]["drop"];
        assert!(drops.as_array().unwrap().contains(&json!("ALL")), "{drops}");
        let response = server
            .admit("/validate", &review_for("CREATE", "strict", &hardened))
            .await;
        assert_eq!(response["allowed"], true, "{}", message(&response));
    }
    server.shutdown().await;
}

/// `~` and `/` must be escaped as `~0` and `~1` in JSON Pointer paths; a
/// wrong escape makes the API server refuse the patch (or patch another
/// key).
#[tokio::test]
async fn tilde_and_slash_in_names_and_keys_patch_correctly() {
    let server = server().await;
    let object = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "t~/x",
        "labels": {"a/b": "1", "c~d": "2", "~1": "3"},
        "annotations": {"x/y~z": "1", "~0~1": "2", "/": "3",
            "unroot.dev/user": "alice", "unroot.dev/uid": "1001", "unroot.dev/gid": "1001"}},
        "spec": {
            "initContainers": [{"name": "i~0/1", "image": "busybox"}],
            "containers": [{"name": "a/b", "image": "busybox"}, {"name": "~1~0", "image": "busybox",
                "volumeMounts": [{"name": "v/~", "mountPath": "/data"}]}],
            "volumes": [{"name": "v/~", "emptyDir": {}}]}});
    let response = server
        .admit("/mutate", &review_as("CREATE", "strict", &object, HUB))
        .await;
    assert_eq!(response["allowed"], true, "{}", message(&response));
    let patch = common::patch_of(&response);
    assert!(!patch.0.is_empty());
    let patched = apply(&object, &response);
    // Nothing the user wrote moved or vanished.
    assert_eq!(patched["metadata"]["labels"], object["metadata"]["labels"]);
    for (k, v) in object["metadata"]["annotations"].as_object().unwrap() {
        assert_eq!(&patched["metadata"]["annotations"][k], v, "{k}");
    }
    let names = |pod: &Value, list: &str| -> Vec<Value> {
        pod["spec"][list]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].clone())
            .collect()
    };
    assert_eq!(names(&patched, "containers"), names(&object, "containers"));
    assert!(names(&patched, "volumes").contains(&json!("v/~")));
    // Every container but the provisioning one (root by design, exempt by
    // provenance) is hardened.
    let gaps: Vec<String> = hardening_gaps(&patched)
        .into_iter()
        .filter(|g| !g.starts_with("initContainers/\"unroot-provision\""))
        .collect();
    assert_eq!(gaps, Vec::<String>::new());
    // Every path the patch names is a valid pointer into the patched pod.
    for op in &patch.0 {
        let pointer = serde_json::to_value(op).unwrap()["path"]
            .as_str()
            .unwrap()
            .to_owned();
        let parent = pointer.rsplit_once('/').map_or("", |(p, _)| p);
        assert!(patched.pointer(parent).is_some(), "{pointer}");
    }
    // And /validate, after the mutation, admits it under restricted.
    let response = server
        .admit("/validate", &review_as("CREATE", "strict", &patched, HUB))
        .await;
    assert_eq!(response["allowed"], true, "{}", message(&response));
    server.shutdown().await;
}
