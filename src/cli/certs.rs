//! `unroot certs`: issue, inspect and rotate unroot's certificates by hand
//! or from a Job, with the same code the in-cluster task runs.

use std::fmt::Write as _;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};

use crate::certs::inspect::Certificate;
use crate::certs::issue::Names;
use crate::certs::lease::{Elector, LEASE_DURATION};
use crate::certs::manage::{self, Kind};
use crate::certs::rotation::{self, Decision, Observed, Plan, Policy};
use crate::certs::secret::{self, Contents, Issuer, Parsed};

/// Arguments of `unroot certs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// What the issued certificates are for.
#[derive(Debug, Clone, clap::Args)]
pub struct Issuance {
    /// Extra DNS names for the serving certificate, besides
    /// unroot.<ns>.svc and unroot.<ns>.svc.cluster.local.
    #[arg(long = "dns-name", value_delimiter = ',')]
    pub dns_names: Vec<String>,
    /// Extra IP addresses for the serving certificate.
    #[arg(long = "ip", value_delimiter = ',')]
    pub ips: Vec<IpAddr>,
    /// Lifetime of a new CA.
    #[arg(long, default_value = "8760h", value_parser = super::parse_duration)]
    pub ca_lifetime: Duration,
    /// Lifetime of a new serving certificate (never beyond its CA's).
    #[arg(long, default_value = "2160h", value_parser = super::parse_duration)]
    pub serving_cert_lifetime: Duration,
}

/// Where the cluster is, as kubectl's flags say it.
#[derive(Debug, Clone, clap::Args)]
pub struct Cluster {
    /// Kubeconfig (else KUBECONFIG, else the in-cluster service account).
    #[arg(long, env = "UNROOT_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use, instead of its current context.
    #[arg(long, env = "UNROOT_CONTEXT")]
    pub context: Option<String>,
    /// unroot's namespace: of its Secret when --tls-secret gives only a
    /// NAME or is left out, and of the Service the certificate names.
    /// Default: POD_NAMESPACE or the service account's namespace inside a
    /// pod, else the kubeconfig context's namespace, else `default`
    /// (`certs issue --out-dir`, which reads no cluster: `unroot`).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
}

/// Which certificate `rotate --force` renews.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// The CA (with the overlap: both CAs in the caBundle until a serving
    /// certificate from the new CA is out).
    Ca,
    /// The serving certificate.
    Serving,
}

/// `unroot certs` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Issue a CA and a serving certificate for unroot.<ns>.svc, into a
    /// directory of PEM files (ca.crt, ca.key, tls.crt, tls.key) or into
    /// the Secret unroot reads.
    Issue {
        /// Write the PEM files into this directory.
        #[arg(long, conflicts_with = "secret", required_unless_present = "secret")]
        out_dir: Option<PathBuf>,
        /// Write into this Secret, [NAMESPACE/]NAME (created if absent).
        #[arg(long = "tls-secret", alias = "secret", value_name = "[NAMESPACE/]NAME")]
        secret: Option<String>,
        /// Overwrite a Secret or files that already hold certificates.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        issuance: Issuance,
        #[command(flatten)]
        cluster: Cluster,
    },
    /// Show subjects, names, validity and SHA-256 fingerprints, check that
    /// keys match and what signed what. Of a Secret (--tls-secret), of a
    /// directory laid out as one, or of PEM files. Exit 0 when everything
    /// is usable, 1 when something is not, 2 when it cannot be read.
    Inspect {
        /// The Secret, [NAMESPACE/]NAME.
        #[arg(
            long = "tls-secret",
            alias = "secret",
            value_name = "[NAMESPACE/]NAME",
            conflicts_with = "files"
        )]
        secret: Option<String>,
        /// A directory with ca.crt, ca.key, tls.crt, tls.key (and
        /// ca-previous.crt), or PEM certificate files.
        #[arg(required_unless_present = "secret")]
        files: Vec<PathBuf>,
        #[command(flatten)]
        cluster: Cluster,
    },
    /// Carry out what is due now, as the replica holding the Lease would
    /// (for a Job or CronJob, or by hand): renew what is due, inject the
    /// caBundle, finish a CA rotation. Takes the Lease unroot-certs; when a
    /// replica running with --manage-certs holds it, that replica rotates:
    /// with --force this asks it to renew now (an annotation on the
    /// Secret), without it this exits 1.
    Rotate {
        /// The Secret, [NAMESPACE/]NAME. Default: unroot-tls in unroot's
        /// namespace (--namespace).
        #[arg(long = "tls-secret", alias = "secret", value_name = "[NAMESPACE/]NAME")]
        secret: Option<String>,
        /// Webhook configurations (Mutating and Validating, same name)
        /// whose caBundle follows the Secret.
        #[arg(long = "webhook-configuration", value_delimiter = ',', default_value = manage::DEFAULT_WEBHOOK_CONFIGURATION)]
        webhook_configurations: Vec<String>,
        /// How long a new caBundle is given to reach every API server, and
        /// a new serving certificate every replica.
        #[arg(long, alias = "propagation-delay", default_value = "30s", value_parser = super::parse_duration)]
        cert_propagation_delay: Duration,
        /// Renew this certificate now, whether due or not.
        #[arg(long, value_enum)]
        force: Option<Which>,
        #[command(flatten)]
        issuance: Issuance,
        #[command(flatten)]
        cluster: Cluster,
    },
}

/// Runs `unroot certs`.
#[must_use]
pub fn run(args: &Args) -> ExitCode {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    ExitCode::from(execute(args, &mut stdout.lock(), &mut stderr.lock()))
}

/// The command, writing to the given streams; returns the exit code.
pub fn execute(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(err, "failed to start the async runtime: {e}");
            return 2;
        }
    };
    let result = runtime.block_on(async {
        match &args.command {
            Command::Issue {
                out_dir,
                secret,
                force,
                issuance,
                cluster,
            } => {
                issue(
                    out_dir.as_deref(),
                    secret.as_deref(),
                    *force,
                    issuance,
                    cluster,
                    out,
                )
                .await
            }
            Command::Inspect {
                secret,
                files,
                cluster,
            } => inspect(secret.as_deref(), files, cluster, out).await,
            Command::Rotate {
                secret,
                webhook_configurations,
                cert_propagation_delay,
                force,
                issuance,
                cluster,
            } => {
                rotate(
                    secret.as_deref(),
                    webhook_configurations,
                    *cert_propagation_delay,
                    *force,
                    issuance,
                    cluster,
                    out,
                )
                .await
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(message) => {
            let _ = writeln!(err, "unroot certs: {message}");
            2
        }
    }
}

/// A connected cluster and unroot's namespace in it.
struct Connected {
    client: kube::Client,
    namespace: String,
}

impl Connected {
    /// `NAMESPACE/NAME` as given, `NAME` in unroot's namespace, or
    /// `default_name` there.
    fn secret(&self, reference: Option<&str>) -> Result<(String, String), String> {
        match reference {
            None => Ok((self.namespace.clone(), manage::DEFAULT_SECRET.to_owned())),
            Some(reference) if reference.contains('/') => {
                manage::object_reference("--tls-secret", Some(reference), "")
                    .map_err(|e| e.to_string())
            }
            Some("") => Err("--tls-secret: expected [NAMESPACE/]NAME, got nothing".to_owned()),
            Some(name) => Ok((self.namespace.clone(), name.to_owned())),
        }
    }
}

async fn connect(cluster: &Cluster) -> Result<Connected, String> {
    let found = crate::cluster::connect_to(
        cluster.kubeconfig.as_deref(),
        cluster.context.as_deref(),
        false,
    )
    .await?
    .ok_or_else(|| "no cluster found: give --kubeconfig or KUBECONFIG".to_owned())?;
    // kubectl's order, except that a Job's own namespace (POD_NAMESPACE,
    // the service account's) wins over the in-cluster default.
    let namespace = cluster
        .namespace
        .clone()
        .or_else(manage::own_namespace)
        .unwrap_or(found.namespace);
    Ok(Connected {
        client: found.client,
        namespace,
    })
}

fn policy(namespace: &str, issuance: &Issuance, propagation_delay: Duration) -> Policy {
    Policy {
        ca_lifetime: issuance.ca_lifetime,
        serving_lifetime: issuance.serving_cert_lifetime,
        propagation_delay,
        names: Names::for_service(namespace).with(&issuance.dns_names, &issuance.ips),
    }
}

async fn issue(
    out_dir: Option<&Path>,
    secret: Option<&str>,
    force: bool,
    issuance: &Issuance,
    cluster: &Cluster,
    out: &mut dyn Write,
) -> Result<u8, String> {
    // Only a Secret needs the cluster; files are written offline.
    let connected = match secret {
        Some(_) => Some(connect(cluster).await?),
        None => None,
    };
    let target = connected.as_ref().map(|c| c.secret(secret)).transpose()?;
    let namespace = cluster
        .namespace
        .clone()
        .or_else(|| target.as_ref().map(|(ns, _)| ns.clone()))
        .unwrap_or_else(|| "unroot".to_owned());
    let now = SystemTime::now();
    let contents = issue_contents(&namespace, issuance, now)?;
    match (out_dir, target) {
        (Some(dir), _) => write_files(dir, &contents, force, out)?,
        (None, Some((ns, name))) => {
            let client = connected.map(|c| c.client).ok_or("no cluster connection")?;
            write_secret(client, &ns, &name, &contents, force, out).await?;
        }
        (None, None) => return Err("give --out-dir or --tls-secret".to_owned()),
    }
    let _ = write!(out, "{}", report(&contents, now).0);
    Ok(0)
}

/// A new CA and a serving certificate for the Service in `namespace`: the
/// rotation that starts from an empty Secret.
fn issue_contents(
    namespace: &str,
    issuance: &Issuance,
    now: SystemTime,
) -> Result<Contents, String> {
    let p = policy(namespace, issuance, Duration::ZERO);
    let empty = Contents::default();
    let parsed = empty.parse(now);
    let plan = rotation::forced(&Observed::from_parsed(&parsed, &p.names), true);
    rotation::execute(&empty, &parsed, &plan, &p, now).map_err(|e| e.to_string())
}

/// Writes `contents` as the PEM files of `dir`; refuses to overwrite them
/// unless `force`.
fn write_files(
    dir: &Path,
    contents: &Contents,
    force: bool,
    out: &mut dyn Write,
) -> Result<(), String> {
    let files = [
        (secret::CA_CERT, &contents.ca_cert),
        (secret::CA_KEY, &contents.ca_key),
        (secret::TLS_CERT, &contents.tls_cert),
        (secret::TLS_KEY, &contents.tls_key),
    ];
    if !force && files.iter().any(|(name, _)| dir.join(name).exists()) {
        return Err(format!(
            "{} already holds certificates; pass --force to overwrite them",
            dir.display()
        ));
    }
    for (name, pem) in files {
        crate::certs::write_pem(&dir.join(name), pem).map_err(|e| e.to_string())?;
    }
    let _ = writeln!(
        out,
        "wrote ca.crt, ca.key, tls.crt, tls.key to {}",
        dir.display()
    );
    Ok(())
}

/// Writes `contents` into the Secret `ns/name`, creating it if absent;
/// refuses to replace certificates it holds unless `force`.
async fn write_secret(
    client: kube::Client,
    ns: &str,
    name: &str,
    contents: &Contents,
    force: bool,
    out: &mut dyn Write,
) -> Result<(), String> {
    let api: Api<Secret> = Api::namespaced(client, ns);
    let existing = api
        .get_opt(name)
        .await
        .map_err(|e| format!("failed to read Secret {ns}/{name}: {e}"))?;
    let params = PostParams {
        field_manager: Some(manage::FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    if let Some(mut current) = existing {
        if !force && !Contents::from_data(current.data.as_ref()).is_empty() {
            return Err(format!(
                "Secret {ns}/{name} already holds certificates; pass --force to replace them (or use `unroot certs rotate`, which keeps the caBundle valid)"
            ));
        }
        current.data = Some(contents.to_data());
        current.metadata.managed_fields = None;
        api.replace(name, &params, &current)
            .await
            .map_err(|e| format!("failed to update Secret {ns}/{name}: {e}"))?;
    } else {
        let new = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(ns.to_owned()),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".to_owned()),
            data: Some(contents.to_data()),
            ..Secret::default()
        };
        api.create(&params, &new)
            .await
            .map_err(|e| format!("failed to create Secret {ns}/{name}: {e}"))?;
    }
    let _ = writeln!(out, "wrote the certificates to Secret {ns}/{name}");
    Ok(())
}

async fn inspect(
    secret: Option<&str>,
    files: &[PathBuf],
    cluster: &Cluster,
    out: &mut dyn Write,
) -> Result<u8, String> {
    let now = SystemTime::now();
    if secret.is_some() {
        let connected = connect(cluster).await?;
        let (ns, name) = connected.secret(secret)?;
        let api: Api<Secret> = Api::namespaced(connected.client, &ns);
        let found = api
            .get(&name)
            .await
            .map_err(|e| format!("failed to read Secret {ns}/{name}: {e}"))?;
        let _ = writeln!(out, "Secret {ns}/{name}");
        let (text, ok) = report(&Contents::from_data(found.data.as_ref()), now);
        let _ = write!(out, "{text}");
        return Ok(u8::from(!ok));
    }
    if let [dir] = files
        && dir.is_dir()
    {
        let read = |key: &str| std::fs::read_to_string(dir.join(key)).unwrap_or_default();
        let contents = Contents {
            ca_cert: read(secret::CA_CERT),
            ca_key: read(secret::CA_KEY),
            tls_cert: read(secret::TLS_CERT),
            tls_key: read(secret::TLS_KEY),
            ca_previous: read(secret::CA_PREVIOUS),
        };
        let _ = writeln!(out, "directory {}", dir.display());
        let (text, ok) = report(&contents, now);
        let _ = write!(out, "{text}");
        return Ok(u8::from(!ok));
    }
    let mut ok = true;
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("failed to read {}: {e}", file.display()))?;
        let _ = writeln!(out, "{}:", file.display());
        if text.contains("PRIVATE KEY-----") && !text.contains("CERTIFICATE-----") {
            let _ = writeln!(out, "  a private key (not shown)");
            continue;
        }
        match Certificate::parse_pem(&text) {
            Ok(certs) => {
                for cert in certs {
                    ok &= cert.valid_at(now);
                    let _ = write!(out, "{}", cert.describe(now, "  "));
                }
            }
            Err(why) => {
                ok = false;
                let _ = writeln!(out, "  {why}");
            }
        }
    }
    Ok(u8::from(!ok))
}

/// Describes the Secret contents; `true` when everything is usable.
fn report(contents: &Contents, now: SystemTime) -> (String, bool) {
    let parsed = contents.parse(now);
    let mut text = String::new();
    let mut problems = Vec::new();
    let _ = writeln!(text, "{}:", secret::CA_CERT);
    match &parsed.ca_cert {
        Some(ca) => text.push_str(&ca.describe(now, "  ")),
        None => text.push_str("  (none)\n"),
    }
    match &parsed.ca {
        Ok(_) => {
            let _ = writeln!(text, "{}: matches {}", secret::CA_KEY, secret::CA_CERT);
        }
        Err(problem) => {
            let _ = writeln!(text, "{}: unusable CA: {problem}", secret::CA_KEY);
            problems.push(format!("CA: {problem}"));
        }
    }
    if !parsed.previous.is_empty() {
        let _ = writeln!(
            text,
            "{} (being retired, still in the caBundle):",
            secret::CA_PREVIOUS
        );
        for cert in &parsed.previous {
            text.push_str(&cert.describe(now, "  "));
        }
    }
    let _ = writeln!(text, "{}:", secret::TLS_CERT);
    describe_leaf(contents, &parsed, now, &mut text, &mut problems);
    let bundle = Certificate::parse_pem(&parsed.ca_bundle(now)).unwrap_or_default();
    let _ = write!(text, "caBundle: {} CA certificate(s)", bundle.len());
    for cert in &bundle {
        let _ = write!(text, "\n  {} ({})", cert.subject, cert.fingerprint);
    }
    text.push('\n');
    if problems.is_empty() {
        text.push_str("usable: yes\n");
    } else {
        let _ = writeln!(text, "usable: no ({})", problems.join("; "));
    }
    (text, problems.is_empty())
}

fn describe_leaf(
    contents: &Contents,
    parsed: &Parsed,
    now: SystemTime,
    text: &mut String,
    problems: &mut Vec<String>,
) {
    match &parsed.leaf {
        Ok(leaf) => {
            text.push_str(&leaf.cert.describe(now, "  "));
            let signer = match leaf.issuer {
                Issuer::Current => secret::CA_CERT.to_owned(),
                Issuer::Previous(_) => secret::CA_PREVIOUS.to_owned(),
                Issuer::Unknown => {
                    problems
                        .push("serving certificate not signed by a CA of the Secret".to_owned());
                    "no CA of the Secret".to_owned()
                }
            };
            let _ = writeln!(text, "  signed by:   {signer}");
            let _ = writeln!(text, "{}: matches {}", secret::TLS_KEY, secret::TLS_CERT);
        }
        Err(problem) => {
            // Show what is there, even when it cannot be used.
            match Certificate::parse_pem(&contents.tls_cert) {
                Ok(certs) => text.push_str(&certs[0].describe(now, "  ")),
                Err(_) => text.push_str("  (none usable)\n"),
            }
            let _ = writeln!(
                text,
                "{}: unusable serving pair: {problem}",
                secret::TLS_KEY
            );
            problems.push(format!("serving certificate: {problem}"));
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn rotate(
    secret: Option<&str>,
    webhook_configurations: &[String],
    propagation_delay: Duration,
    force: Option<Which>,
    issuance: &Issuance,
    cluster: &Cluster,
    out: &mut dyn Write,
) -> Result<u8, String> {
    let connected = connect(cluster).await?;
    let (ns, name) = connected.secret(secret)?;
    let client = connected.client;
    let mut elector = Elector::new(
        Api::namespaced(client.clone(), &ns),
        manage::LEASE_NAME,
        &format!("{}-rotate", manage::identity()),
        LEASE_DURATION,
    );
    let taken = elector
        .try_acquire_or_renew()
        .await
        .map_err(|e| e.to_string())?;
    if !taken {
        let holder = elector.holder().unwrap_or("another candidate").to_owned();
        let Some(which) = force else {
            let _ = writeln!(
                out,
                "the Lease {ns}/{} is held by {holder}: that replica rotates the certificates; nothing done (--force asks it to renew one now)",
                manage::LEASE_NAME,
            );
            return Ok(1);
        };
        // Ask the holder: it renews on seeing the annotation, through the
        // same steps as a due renewal, and removes it.
        let value = if which == Which::Ca { "ca" } else { "serving" };
        let patch =
            serde_json::json!({"metadata": {"annotations": {manage::ROTATE_ANNOTATION: value}}});
        Api::<Secret>::namespaced(client, &ns)
            .patch(
                &name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .map_err(|e| format!("failed to annotate Secret {ns}/{name}: {e}"))?;
        let _ = writeln!(
            out,
            "asked {holder}, which holds the Lease, to renew the {} certificate (annotation {}={value} on Secret {ns}/{name})",
            if which == Which::Ca { "CA" } else { "serving" },
            manage::ROTATE_ANNOTATION,
        );
        return Ok(0);
    }
    let p = policy(&ns, issuance, propagation_delay);
    let result = rotate_steps(
        &client,
        &mut elector,
        &ns,
        &name,
        webhook_configurations,
        &p,
        force,
        out,
    )
    .await;
    if let Err(e) = elector.release().await {
        let _ = writeln!(out, "failed to release the Lease: {e}");
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn rotate_steps(
    client: &kube::Client,
    elector: &mut Elector,
    ns: &str,
    name: &str,
    webhook_configurations: &[String],
    p: &Policy,
    mut force: Option<Which>,
    out: &mut dyn Write,
) -> Result<u8, String> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut confirmed: Option<(String, SystemTime)> = None;
    // A CA rotation takes a handful of steps; more means something fights us.
    for _ in 0..16 {
        if !elector
            .try_acquire_or_renew()
            .await
            .map_err(|e| e.to_string())?
        {
            return Err("lost the Lease to another candidate; stopping".to_owned());
        }
        let found = read_secret(&api, ns, name).await?;
        let now = found.now;
        let bundle = found.parsed.ca_bundle(now);
        if !bundle.is_empty() {
            inject(client, webhook_configurations, &bundle, out).await?;
            if confirmed.as_ref().is_none_or(|(b, _)| *b != bundle) {
                confirmed = Some((bundle.clone(), SystemTime::now()));
            }
        }
        let observed = Observed::from_parsed(&found.parsed, &p.names);
        let confirmed_at = confirmed
            .as_ref()
            .filter(|(b, _)| *b == bundle)
            .map(|(_, at)| *at);
        let decision = match force.take() {
            Some(which) => Decision::Write(rotation::forced(&observed, which == Which::Ca)),
            None => rotation::decide(&observed, p, now, confirmed_at),
        };
        match decision {
            Decision::Idle { recheck_at } if observed.retiring => {
                wait_until(
                    recheck_at,
                    p.propagation_delay,
                    out,
                    "until the replicas have loaded the new serving certificate",
                )
                .await;
            }
            Decision::Idle { .. } => {
                let _ = writeln!(out, "nothing (more) is due");
                let _ = write!(out, "{}", report(&found.contents, now).0);
                return Ok(0);
            }
            Decision::AwaitBundle { recheck_at } => {
                let at = recheck_at.unwrap_or(now + Duration::from_secs(1));
                wait_until(
                    at,
                    p.propagation_delay,
                    out,
                    "for the new caBundle to reach every API server",
                )
                .await;
            }
            Decision::Write(plan) => write_next(&api, ns, name, &found, &plan, p, out).await?,
        }
    }
    Err("the rotation did not settle after 16 steps".to_owned())
}

/// The Secret as one step of the rotation read it.
struct Found {
    secret: Secret,
    contents: Contents,
    parsed: Parsed,
    /// When it was read.
    now: SystemTime,
}

/// Reads the Secret `ns/name`, which must exist.
async fn read_secret(api: &Api<Secret>, ns: &str, name: &str) -> Result<Found, String> {
    let secret = api
        .get_opt(name)
        .await
        .map_err(|e| format!("failed to read Secret {ns}/{name}: {e}"))?
        .ok_or_else(|| {
            format!("Secret {ns}/{name} does not exist: create it (empty is fine), e.g. with `kubectl apply -k manifests/`")
        })?;
    let now = SystemTime::now();
    let contents = Contents::from_data(secret.data.as_ref());
    let parsed = contents.parse(now);
    Ok(Found {
        secret,
        contents,
        parsed,
        now,
    })
}

/// Carries out `plan` on what `found` holds and writes the result back to
/// the Secret `ns/name`.
async fn write_next(
    api: &Api<Secret>,
    ns: &str,
    name: &str,
    found: &Found,
    plan: &Plan,
    p: &Policy,
    out: &mut dyn Write,
) -> Result<(), String> {
    let now = found.now;
    let next = rotation::execute(&found.contents, &found.parsed, plan, p, now)
        .map_err(|e| e.to_string())?;
    let mut updated = found.secret.clone();
    updated.data = Some(next.to_data());
    updated.metadata.managed_fields = None;
    let params = PostParams {
        field_manager: Some(manage::FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    api.replace(name, &params, &updated)
        .await
        .map_err(|e| format!("failed to update Secret {ns}/{name}: {e}"))?;
    let _ = writeln!(out, "{}", manage::describe(&next, Some(plan), now));
    Ok(())
}

async fn wait_until(at: SystemTime, most: Duration, out: &mut dyn Write, why: &str) {
    let wait = at
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .min(most + Duration::from_secs(1));
    if !wait.is_zero() {
        let _ = writeln!(out, "waiting {} s {why}", wait.as_secs_f64().ceil());
        tokio::time::sleep(wait).await;
    }
}

/// Makes every webhook of the named configurations carry `bundle`, and
/// brings their failing-closed copies up to date.
async fn inject(
    client: &kube::Client,
    names: &[String],
    bundle: &str,
    out: &mut dyn Write,
) -> Result<(), String> {
    for name in names {
        for kind in [Kind::Mutating, Kind::Validating] {
            let Some(webhooks) = manage::read_webhooks(client, kind, name)
                .await
                .map_err(|e| e.to_string())?
            else {
                continue;
            };
            if webhooks.hold(bundle) {
                continue;
            }
            let hooks: Vec<String> = webhooks.0.iter().map(|(n, _)| n.clone()).collect();
            manage::apply_ca_bundle(client, kind, name, &hooks, bundle)
                .await
                .map_err(|e| e.to_string())?;
            let _ = writeln!(
                out,
                "injected the caBundle into {kind} {name} ({} webhooks)",
                hooks.len()
            );
        }
        for kind in [Kind::Mutating, Kind::Validating] {
            let copies = crate::certs::fail_closed::sync_twins(client, kind, name)
                .await
                .map_err(|e| e.to_string())?;
            if copies > 0 {
                let _ = writeln!(
                    out,
                    "brought {copies} failing-closed webhooks of {kind} {} up to date",
                    crate::certs::fail_closed::twin_name(name)
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::certs::issue::{Authority, DEFAULT_CA_LIFETIME, DEFAULT_SERVING_LIFETIME};
    use crate::cli::{Cli, Command as Top};

    #[test]
    fn lifetime_defaults_are_the_documented_ones() {
        let cli = Cli::try_parse_from(["unroot", "certs", "issue", "--out-dir", "x"]).unwrap();
        let Top::Certs(Args {
            command: Command::Issue { issuance, .. },
        }) = cli.command
        else {
            panic!("not certs issue");
        };
        assert_eq!(issuance.ca_lifetime, DEFAULT_CA_LIFETIME);
        assert_eq!(issuance.serving_cert_lifetime, DEFAULT_SERVING_LIFETIME);
    }

    #[test]
    fn the_report_names_what_is_unusable() {
        let now = SystemTime::now();
        let ca = Authority::issue().unwrap();
        let serving = ca.issue_serving(&["unroot.unroot.svc".to_owned()]).unwrap();
        let other = ca.issue_serving(&["unroot.unroot.svc".to_owned()]).unwrap();
        let good = Contents {
            ca_cert: ca.cert_pem.clone(),
            ca_key: ca.key_pem().to_owned(),
            tls_cert: serving.cert_pem.clone(),
            tls_key: serving.key_pem.clone(),
            ca_previous: String::new(),
        };
        let (text, ok) = report(&good, now);
        assert!(ok, "{text}");
        assert!(text.contains("signed by:   ca.crt"), "{text}");
        assert!(text.contains("names:       unroot.unroot.svc"), "{text}");
        assert!(text.contains("usable: yes"), "{text}");
        let broken = Contents {
            tls_key: other.key_pem,
            ..good
        };
        let (text, ok) = report(&broken, now);
        assert!(!ok);
        assert!(text.contains("usable: no (serving certificate: "), "{text}");
        assert!(!text.contains("PRIVATE"), "{text}");
    }
}
