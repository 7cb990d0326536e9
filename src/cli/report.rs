//! `unroot report`: the readiness report, once, from wherever a kubeconfig
//! reaches the cluster (the same report `serve` exports as metrics).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;

use crate::policy::{CONFIGMAP_KEY, Document, DocumentFile as _, Snapshot};
use crate::report::{self, Builder, source};

/// Exit code when the report was printed.
pub const EXIT_OK: u8 = 0;
/// Exit code when it could not be built: no cluster, an API error, a bad
/// policy, an unknown namespace.
pub const EXIT_ERROR: u8 = 2;

const AFTER_HELP: &str = "\
For each namespace: the pods in it, how many would be denied at baseline and
at restricted, and the checks most pods fail at restricted. Each level is
evaluated at the version the namespace pins for it (the first of its enforce,
warn and audit modes at that level, else its enforce version). The policy's
excluded and exempt namespaces are listed as skipped; pods with an exempt
runtime class count as passing.

The policy is the embedded default unless --policy or --policy-configmap
names the one your unroot runs with (its excluded namespaces, exemptions and
podSecurity defaults change the report).

Needs get/list on namespaces and list on pods (cluster-wide, or in
--namespace).

Exit status: 0 when the report was printed (whatever it says), 2 when it could
not be built (no cluster, an API error, an invalid policy, no such namespace).";

/// Arguments of `unroot report` (`unroot audit`, its old name, hidden).
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// Kubeconfig of the cluster. Without it, unroot looks where kubectl
    /// does: the KUBECONFIG environment variable, then the in-cluster
    /// service account.
    #[arg(long, env = "UNROOT_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use, instead of its current context.
    #[arg(long, env = "UNROOT_CONTEXT")]
    pub context: Option<String>,
    /// Report on this namespace only (default: every namespace, as the
    /// report `serve` exports).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Output format: a table, or the object `GET /report` serves on the
    /// dashboard listener, as JSON or YAML. `--format` is an alias.
    #[arg(short = 'o', long = "output", alias = "format", value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// The policy file unroot runs with.
    #[arg(long, conflicts_with = "policy_configmap")]
    pub policy: Option<PathBuf>,
    /// The policy ConfigMap unroot runs with, NAMESPACE/NAME (key
    /// `policy.yaml`), e.g. unroot/unroot-policy.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub policy_configmap: Option<String>,
    /// Pods listed per API request.
    #[arg(long, default_value_t = report::DEFAULT_PAGE_SIZE, value_parser = clap::value_parser!(u32).range(1..))]
    pub page_size: u32,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table: namespace, pods, violating baseline, violating restricted,
    /// top checks.
    Text,
    /// One JSON object: `{"finished_at","duration_seconds","policy_hash",
    /// "namespaces":[{"namespace","pods","exempt_pods","baseline":{"version","violating","checks"},"restricted":{…}}],"skipped":[{"namespace","reason"}]}`.
    Json,
    /// The same object as YAML.
    Yaml,
}

/// Runs `unroot report`.
#[must_use]
pub fn run(args: &Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("unroot report: failed to start the async runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match runtime.block_on(report(args)) {
        Ok(text) => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error of the report.
            let _ = stdout.write_all(text.as_bytes());
            ExitCode::from(EXIT_OK)
        }
        Err(message) => {
            eprintln!("unroot report: {message}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

async fn report(args: &Args) -> Result<String, String> {
    let client =
        crate::cluster::connect_to(args.kubeconfig.as_deref(), args.context.as_deref(), false)
            .await?
            .ok_or("no cluster found: give --kubeconfig, set KUBECONFIG, or run inside a cluster")?
            .client;
    let document = match (&args.policy, &args.policy_configmap) {
        (Some(path), _) => Document::from_file(path).map_err(|e| e.to_string())?,
        (None, Some(reference)) => policy_from_configmap(client.clone(), reference).await?,
        (None, None) => Document::embedded(),
    };
    let policy = Snapshot::new(document);
    let built = if let Some(namespace) = &args.namespace {
        let labels = source::namespace(client.clone(), namespace)
            .await
            .map_err(|e| e.to_string())?;
        let builder = Builder::single(&policy, namespace.clone(), labels);
        let pages = source::ApiPages::namespaced(client, namespace, args.page_size);
        report::build(builder, &pages).await
    } else {
        let namespaces = source::namespaces(client.clone())
            .await
            .map_err(|e| e.to_string())?;
        let builder = Builder::new(&policy, namespaces);
        let pages = source::ApiPages::all(client, args.page_size);
        report::build(builder, &pages).await
    };
    let report = built.map_err(|e| e.to_string())?;
    Ok(match args.format {
        Format::Text => report::render_text(&report),
        Format::Json => {
            let mut json = serde_json::to_string(&report).map_err(|e| e.to_string())?;
            json.push('\n');
            json
        }
        Format::Yaml => serde_saphyr::to_string(&report).map_err(|e| e.to_string())?,
    })
}

async fn policy_from_configmap(client: kube::Client, reference: &str) -> Result<Document, String> {
    let Some((namespace, name)) = reference
        .split_once('/')
        .filter(|(ns, n)| !ns.is_empty() && !n.is_empty() && !n.contains('/'))
    else {
        return Err(format!(
            "--policy-configmap {reference:?}: expected NAMESPACE/NAME"
        ));
    };
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    let config_map = api
        .get(name)
        .await
        .map_err(|e| format!("failed to read the policy ConfigMap {reference}: {e}"))?;
    let text = config_map
        .data
        .as_ref()
        .and_then(|d| d.get(CONFIGMAP_KEY))
        .ok_or_else(|| format!("the policy ConfigMap {reference} has no {CONFIGMAP_KEY:?} key"))?;
    Document::from_yaml(text).map_err(|e| format!("{reference}: {e}"))
}
