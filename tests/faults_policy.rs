//! The policy source deleted, corrupted, and flapping between two valid
//! policies and garbage every 100 ms, under load: admission continues on
//! the last good policy, with zero failed reviews. The file watch is used;
//! it hands every change to `policy::watch::Reloader::apply`, the same
//! decision the ConfigMap watch makes.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use unroot::policy::watch::{self, Reloader};
use unroot::policy::{DEFAULT_YAML, Document, Snapshot};

#[tokio::test]
async fn a_flapping_policy_source_never_fails_a_review() {
    let server = Arc::new(common::start().await);
    let state = server.state.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    // Two valid policies that give pods different uids, and garbage.
    let a = DEFAULT_YAML.to_owned();
    let b = DEFAULT_YAML.replace("runAsUser: 65532", "runAsUser: 1111");
    let hash_of = |text: &str| Snapshot::new(Document::from_yaml(text).unwrap()).hash;
    let good: BTreeSet<String> = [hash_of(&a), hash_of(&b)].into();
    std::fs::write(&path, &a).unwrap();
    let registry = prometheus::Registry::new();
    let reloader = Reloader::new(
        Arc::clone(&state.policy),
        watch::Metrics::new(&registry),
        Arc::clone(&state.readiness),
    );
    watch::watch_file(path.clone(), Duration::from_millis(20), reloader, a.clone());

    let stop = Arc::new(AtomicBool::new(false));
    let flapper = {
        let stop = Arc::clone(&stop);
        let (a, b) = (a.clone(), b.clone());
        tokio::spawn(async move {
            let variants: [Option<&str>; 6] = [
                Some("podSecurity: [not, a, map]\n"),
                Some(&b),
                None, // deleted
                Some("\u{0}\u{1}garbage: {"),
                Some(&a),
                Some(""),
            ];
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                match variants[i % variants.len()] {
                    Some(text) => std::fs::write(&path, text).unwrap(),
                    None => {
                        let _ = std::fs::remove_file(&path);
                    }
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            i
        })
    };
    let mut clients = Vec::new();
    for c in 0..4 {
        let server = Arc::clone(&server);
        let stop = Arc::clone(&stop);
        clients.push(tokio::spawn(async move {
            let mut hashes = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("p{c}-{n}")},
                    "spec": {"containers": [{"name": "app", "image": "x"}]}});
                // admit() checks HTTP 200, the envelope and the uid.
                let response = server
                    .admit("/mutate", &common::review_for("CREATE", "team-a", &pod))
                    .await;
                assert_eq!(response["allowed"], true, "{response:#}");
                hashes.push(response["auditAnnotations"]["policy-hash"].as_str().unwrap().to_owned());
                n += 1;
            }
            hashes
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let flips = flapper.await.unwrap();
    let mut seen = BTreeSet::new();
    let mut reviews = 0;
    for client in clients {
        let hashes = client.await.unwrap();
        reviews += hashes.len();
        seen.extend(hashes);
    }
    assert!(flips >= 25, "{flips} flips");
    assert!(reviews >= 50, "{reviews} reviews");
    assert!(
        seen.is_subset(&good),
        "only good policies decided: {seen:?}"
    );
    assert_eq!(seen.len(), 2, "both good policies took turns: {seen:?}");
    let errors = registry
        .gather()
        .iter()
        .find(|f| f.name() == "unroot_policy_reload_errors_total")
        .map(|f| f.get_metric()[0].get_counter().get_value())
        .unwrap();
    assert!(errors >= 10.0, "refusals counted: {errors}");
    assert!(state.readiness.unready().is_none(), "still ready");
}
