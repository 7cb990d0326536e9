//! Which certificate `unroot serve` serves, and what keeps it current: the
//! in-cluster task ([`super::manage`]), the file reloader
//! ([`super::files`]), or a self-issued certificate that nothing renews.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::info;

use super::{Authority, Error, Metrics, Names, Resolver, Result, manage, rotation};
use crate::readiness::Readiness;

/// What `unroot serve`'s certificate flags ask for.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--manage-certs`: issue and rotate in the Secret `tls_secret`.
    pub manage: bool,
    /// `--tls-secret NAMESPACE/NAME` (default: `<own namespace>/unroot-tls`).
    pub tls_secret: Option<String>,
    /// `--webhook-configuration`: the configurations whose caBundle follows.
    pub webhook_configurations: Vec<String>,
    /// `--tls-cert` and `--tls-key`: serve these files, reloaded on change.
    pub files: Option<(PathBuf, PathBuf)>,
    /// `--ca-lifetime`.
    pub ca_lifetime: Duration,
    /// `--serving-cert-lifetime`.
    pub serving_lifetime: Duration,
    /// `--cert-propagation-delay`.
    pub propagation_delay: Duration,
    /// `--dns-name`: extra DNS names of the issued certificate.
    pub dns_names: Vec<String>,
    /// `--ip`: extra IP addresses of the issued certificate.
    pub ips: Vec<IpAddr>,
    /// `--ca-cert-out`: where the CA clients should trust is written.
    pub ca_cert_out: Option<PathBuf>,
}

/// Loads or issues the serving certificate into `resolver` and starts
/// whatever keeps it current: the file reloader, or the in-cluster task
/// (returned, to stop it and release its Lease at shutdown). Readiness
/// condition [`super::READY_CONDITION`] follows the certificate.
pub fn keep_certificate(
    settings: &Settings,
    client: Option<&kube::Client>,
    resolver: &Arc<Resolver>,
    registry: &prometheus::Registry,
    readiness: &Arc<Readiness>,
) -> Result<Option<manage::Handle>> {
    let metrics = Metrics::new(registry);
    if settings.manage {
        return manage_in_cluster(settings, client, resolver, metrics, readiness).map(Some);
    }
    if let Some((cert, key)) = &settings.files {
        let mut reloader =
            super::files::Reloader::new(cert.clone(), key.clone(), Arc::clone(resolver), metrics);
        let fingerprint = reloader.load()?;
        info!(cert = %cert.display(), serving = %fingerprint, "serving certificate from files; reloaded when they change");
        reloader.spawn(super::files::POLL_INTERVAL);
        readiness.set(super::READY_CONDITION, true);
        return Ok(None);
    }
    issue_self_signed(settings, resolver, &metrics)?;
    readiness.set(super::READY_CONDITION, true);
    Ok(None)
}

/// Starts the in-cluster task on the Secret `--tls-secret`.
fn manage_in_cluster(
    settings: &Settings,
    client: Option<&kube::Client>,
    resolver: &Arc<Resolver>,
    metrics: Metrics,
    readiness: &Arc<Readiness>,
) -> Result<manage::Handle> {
    if settings.files.is_some() {
        return Err(Error::Settings("--manage-certs and --tls-cert exclude each other: unroot either rotates its certificate in the Secret or serves the files it is given".to_owned()));
    }
    let Some(client) = client else {
        return Err(Error::Settings("--manage-certs needs a cluster (give --kubeconfig or KUBECONFIG, run inside a cluster, or drop --standalone)".to_owned()));
    };
    let (namespace, secret) = manage::object_reference(
        "--tls-secret",
        settings.tls_secret.as_deref(),
        manage::DEFAULT_SECRET,
    )?;
    let config = manage::Config {
        namespace: namespace.clone(),
        secret,
        lease: manage::LEASE_NAME.to_owned(),
        identity: manage::identity(),
        webhook_configurations: settings.webhook_configurations.clone(),
        policy: rotation::Policy {
            ca_lifetime: settings.ca_lifetime,
            serving_lifetime: settings.serving_lifetime,
            propagation_delay: settings.propagation_delay,
            names: Names::for_service(&namespace).with(&settings.dns_names, &settings.ips),
        },
    };
    info!(secret = %format!("{}/{}", config.namespace, config.secret), lease = %config.lease, identity = %config.identity, names = %config.policy.names, "managing certificates in the cluster; not ready until the Secret holds a valid certificate");
    let ready = Arc::clone(readiness);
    let loader = super::secret::Loader::new(
        Arc::clone(resolver),
        metrics.clone(),
        Arc::new(move |ok| ready.set(super::READY_CONDITION, ok)),
    )
    .with_bundle_out(settings.ca_cert_out.clone());
    Ok(manage::start(
        client.clone(),
        config,
        Arc::new(loader),
        metrics,
    ))
}

/// Issues a CA and a serving certificate for this process alone, and
/// writes the CA where clients can trust it.
fn issue_self_signed(settings: &Settings, resolver: &Resolver, metrics: &Metrics) -> Result<()> {
    let now = SystemTime::now();
    let ca = Authority::issue_at(now, settings.ca_lifetime)?;
    let names = Names::local().with(&settings.dns_names, &settings.ips);
    let serving = ca.issue_serving_at(&names, now, settings.serving_lifetime)?;
    let ca_out = settings
        .ca_cert_out
        .clone()
        .unwrap_or_else(|| PathBuf::from("certs/ca.crt"));
    super::write_pem(&ca_out, &ca.cert_pem)?;
    info!(ca = %ca_out.display(), %names, "issued a self-signed serving certificate; trust the CA file");
    let key = super::certified_key(
        serving.cert_pem.as_bytes(),
        serving.key_pem.as_bytes(),
        &ca_out,
    )?;
    resolver.replace(key);
    // The serving certificate ends with its lifetime or the CA's, whichever
    // comes first.
    metrics.set_expiry(super::metrics::Cert::Ca, ca.not_after());
    metrics.set_expiry(
        super::metrics::Cert::Serving,
        (now + settings.serving_lifetime).min(ca.not_after()),
    );
    Ok(())
}
