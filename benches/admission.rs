//! The admission path without the network: AdmissionReview bytes in, bytes
//! out, on reviews shaped like kube-apiserver's (see `support/review.rs`).
//!
//! - `admission/mutate/N`: decode the review, mutate the pod (trust bundle
//!   selected, securityContext hardening), encode the answer with its patch;
//! - `admission/validate/N`: decode the review, evaluate Pod Security with
//!   the policy's defaults (enforce baseline, audit and warn restricted) on
//!   the mutated pod, encode the answer;
//! - `mutate_only/N`: the `/mutate` decision for an already decoded review
//!   (the object's decode, the mutation and the patch's encoding);
//! - `pss_restricted/N`: `pss::evaluate` at `restricted:latest` on the
//!   decoded, hardened pod;
//! - `scaling/N`: `admission/mutate` at 10 … 10,000 containers, reported per
//!   container (criterion's throughput in elements);
//! - `large/{mutate,validate}/50000`: the 3 MB review of 50,000 minimal
//!   containers, bytes in → bytes out (the load test sends it to the server).

#[path = "support/review.rs"]
mod review;

// The allocator of the unroot binary (src/main.rs), so these figures are
// the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use unroot::admission::validate::{self, NamespaceLabels};
use unroot::admission::{self, Decoded};
use unroot::mutate::{self, Input};
use unroot::policy::{Document, Snapshot};
use unroot::pss::{self, Level, LevelVersion, Version};

/// The containers of the realistic pods: ≈ 5, 11 and 36 KB reviews.
const SIZES: [usize; 3] = [1, 3, 10];
/// The scaling run.
const SCALING: [usize; 4] = [10, 100, 1_000, 10_000];

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "kubernetes.io/metadata.name".to_owned(),
            "team-a".to_owned(),
        ),
        ("unroot.dev/trust-bundle".to_owned(), "enabled".to_owned()),
    ])
}

/// `/mutate`: bytes in, bytes out.
fn mutate_review(body: &[u8], policy: &Snapshot, labels: &BTreeMap<String, String>) -> Vec<u8> {
    let Ok(Decoded::Review(review)) = admission::decode(body) else {
        panic!("bench review does not decode");
    };
    let mut mutation = admission::mutate(&review.request, policy, labels);
    mutation
        .decision
        .response
        .audit_annotations
        .insert("policy-hash".to_owned(), policy.hash.clone());
    admission::encode(review.api_version, &mutation.decision.response)
}

/// `/validate`: bytes in, bytes out.
fn validate_review(body: &[u8], policy: &Snapshot, labels: &BTreeMap<String, String>) -> Vec<u8> {
    let Ok(Decoded::Review(review)) = admission::decode(body) else {
        panic!("bench review does not decode");
    };
    let req = &review.request;
    let mut decision = validate::before_lookup(req, policy).unwrap_or_else(|| {
        let input = Input {
            policy,
            namespace_labels: labels,
            requester: &req.user_info.username,
        };
        validate::evaluate(
            req,
            policy,
            &NamespaceLabels::Unknown,
            None,
            |pod: &unroot::view::Pod<'_>| {
                mutate::vouch(pod, &input, mutate::Requester::MustBeTrusted)
            },
        )
    });
    decision
        .response
        .audit_annotations
        .insert("policy-hash".to_owned(), policy.hash.clone());
    admission::encode(review.api_version, &decision.response)
}

/// The review of the pod after `/mutate`'s patch: what `/validate` sees.
fn mutated_body(
    containers: usize,
    policy: &Snapshot,
    labels: &BTreeMap<String, String>,
) -> Vec<u8> {
    let pod = review::pod(containers);
    let input = Input {
        policy,
        namespace_labels: labels,
        requester: "",
    };
    let outcome = mutate::pod_value(&pod, &input).expect("bench pod mutates");
    serde_json::to_vec(&review::review(&outcome.object)).expect("serializable")
}

fn decoded_pod(body: &[u8]) -> Pod {
    let value: Value = serde_json::from_slice(body).expect("json");
    serde_json::from_value(value["request"]["object"].clone()).expect("a pod")
}

fn bench(c: &mut Criterion) {
    let policy = Snapshot::new(Document::embedded());
    let labels = labels();
    let restricted = LevelVersion {
        level: Level::Restricted,
        version: Version::Latest,
    };

    // Inputs are built inside each benchmark's closure, which criterion
    // runs only for the benchmarks a filter selects (`cargo bench -- NAME`).
    let mut group = c.benchmark_group("admission");
    for n in SIZES {
        group.bench_function(BenchmarkId::new("mutate", n), |b| {
            let body = review::body(n);
            let answer: Value =
                serde_json::from_slice(&mutate_review(&body, &policy, &labels)).unwrap();
            assert!(
                answer["response"]["patch"].is_string(),
                "the bench pod is patched"
            );
            b.iter(|| mutate_review(black_box(&body), &policy, &labels));
        });
        group.bench_function(BenchmarkId::new("validate", n), |b| {
            let body = mutated_body(n, &policy, &labels);
            let answer: Value =
                serde_json::from_slice(&validate_review(&body, &policy, &labels)).unwrap();
            assert_eq!(answer["response"]["allowed"], true, "{answer}");
            assert!(answer["response"]["warnings"].is_null(), "{answer}");
            b.iter(|| validate_review(black_box(&body), &policy, &labels));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("mutate_only");
    for n in SIZES {
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            let body = review::body(n);
            let Ok(Decoded::Review(review)) = admission::decode(&body) else {
                panic!("bench review does not decode");
            };
            b.iter(|| admission::mutate(black_box(&review.request), &policy, &labels));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("pss_restricted");
    for n in SIZES {
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            let pod = decoded_pod(&mutated_body(n, &policy, &labels));
            let spec = pod.spec.clone().unwrap_or_default();
            assert!(pss::evaluate(&pod.metadata, &spec, restricted).is_empty());
            b.iter(|| pss::evaluate(black_box(&pod.metadata), black_box(&spec), restricted));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("scaling");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    for n in SCALING {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new("mutate", n), |b| {
            let body = review::body(n);
            b.iter(|| mutate_review(black_box(&body), &policy, &labels));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("large");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    let n = 50_000;
    group.bench_function(BenchmarkId::new("mutate", n), |b| {
        let body = serde_json::to_vec(&review::review(&review::small_container_pod(n))).unwrap();
        b.iter(|| mutate_review(black_box(&body), &policy, &labels));
    });
    group.bench_function(BenchmarkId::new("validate", n), |b| {
        let body = serde_json::to_vec(&review::review(&review::small_container_pod(n))).unwrap();
        b.iter(|| validate_review(black_box(&body), &policy, &labels));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
