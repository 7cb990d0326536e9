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
//! - `{decode,decide,encode}/{mutate,validate}/3`: the three stages of
//!   `admission/*/3` one by one, through [`decode`], [`decide_mutate`],
//!   [`decide_validate`] and [`encode`] (the functions to re-point when the
//!   core's stages change);
//! - `pss_restricted/N`: `pss::evaluate` at `restricted:latest` on the
//!   decoded, hardened pod;
//! - `scaling/N`: `admission/mutate` at 10 … 10,000 containers, reported per
//!   container (criterion's throughput in elements);
//! - `large/{mutate,validate}/50000`: the 3 MB review of 50,000 minimal
//!   containers, bytes in → bytes out (the load test sends it to the server);
//! - `offload/hop`: what deciding a review on a thread of its own adds (a
//!   thread started, the runtime's handle driven there, the answer sent
//!   back), and `offload/small/N`: `/mutate` of N minimal containers, the
//!   review that costs most per byte: together, where
//!   `server::limits::OFFLOAD_BYTES` pays.

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
use unroot::admission::{self, Decoded, Review};
use unroot::mutate::{self, Input};
use unroot::policy::{Document, Snapshot};
use unroot::pss::{self, Level, LevelVersion, Version};
use unroot::server::offload;

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

/// Stage 1: the review in `body`, decoded.
fn decode(body: &[u8]) -> Review<'_> {
    let Ok(Decoded::Review(review)) = admission::decode(body) else {
        panic!("bench review does not decode");
    };
    review
}

/// Stage 2 of `/mutate`: the answer to a decoded review, with the policy
/// hash the server adds.
fn decide_mutate(
    review: &Review<'_>,
    policy: &Snapshot,
    labels: &BTreeMap<String, String>,
) -> admission::Response {
    let mut mutation = admission::mutate(&review.request, policy, labels);
    mutation
        .decision
        .response
        .audit_annotations
        .insert("policy-hash".to_owned(), policy.hash.clone());
    mutation.decision.response
}

/// Stage 2 of `/validate`: the answer to a decoded review, with the policy
/// hash the server adds.
fn decide_validate(
    review: &Review<'_>,
    policy: &Snapshot,
    labels: &BTreeMap<String, String>,
) -> admission::Response {
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
    decision.response
}

/// Stage 3: the answer's bytes.
fn encode(review: &Review<'_>, response: &admission::Response) -> Vec<u8> {
    admission::encode(review.api_version, response)
}

/// `/mutate`: bytes in, bytes out.
fn mutate_review(body: &[u8], policy: &Snapshot, labels: &BTreeMap<String, String>) -> Vec<u8> {
    let review = decode(body);
    encode(&review, &decide_mutate(&review, policy, labels))
}

/// `/validate`: bytes in, bytes out.
fn validate_review(body: &[u8], policy: &Snapshot, labels: &BTreeMap<String, String>) -> Vec<u8> {
    let review = decode(body);
    encode(&review, &decide_validate(&review, policy, labels))
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
    let outcome = mutate::Checked::object(&pod)
        .and_then(|checked| mutate::pod(checked, &input))
        .and_then(|planned| planned.apply_to(&pod))
        .expect("bench pod mutates");
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

/// A webhook's decision stage.
type Decide = fn(&Review<'_>, &Snapshot, &BTreeMap<String, String>) -> admission::Response;

/// The stages of `admission/*/3`, one group each.
fn stages_bench(c: &mut Criterion) {
    let policy = Snapshot::new(Document::embedded());
    let labels = labels();
    let n = 3;
    let hooks = [
        ("mutate", review::body(n), decide_mutate as Decide),
        (
            "validate",
            mutated_body(n, &policy, &labels),
            decide_validate as Decide,
        ),
    ];
    let mut group = c.benchmark_group("decode");
    for (hook, body, _) in &hooks {
        group.bench_function(BenchmarkId::new(*hook, n), |b| {
            b.iter(|| decode(black_box(body)));
        });
    }
    group.finish();
    let mut group = c.benchmark_group("decide");
    for (hook, body, decide) in &hooks {
        let review = decode(body);
        group.bench_function(BenchmarkId::new(*hook, n), |b| {
            b.iter(|| decide(black_box(&review), &policy, &labels));
        });
    }
    group.finish();
    let mut group = c.benchmark_group("encode");
    for (hook, body, decide) in &hooks {
        let review = decode(body);
        let response = decide(&review, &policy, &labels);
        group.bench_function(BenchmarkId::new(*hook, n), |b| {
            b.iter(|| encode(&review, black_box(&response)));
        });
    }
    group.finish();
}

/// Where deciding a review on a thread of its own pays: the hop's cost,
/// next to the reviews that cost most per byte.
fn offload_bench(c: &mut Criterion) {
    let policy = Snapshot::new(Document::embedded());
    let labels = labels();
    let mut group = c.benchmark_group("offload");
    group.bench_function("hop", |b| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        b.iter(|| runtime.block_on(offload::run(async { black_box(1) })));
    });
    group.sample_size(20);
    for n in [100, 1_000, 3_000] {
        let body = serde_json::to_vec(&review::review(&review::small_container_pod(n))).unwrap();
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(BenchmarkId::new("small", n), |b| {
            b.iter(|| mutate_review(black_box(&body), &policy, &labels));
        });
    }
    group.finish();
}

criterion_group!(benches, bench, stages_bench, offload_bench);
criterion_main!(benches);
