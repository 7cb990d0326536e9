//! The docs check: what README.md, CONTRIBUTING.md, SECURITY.md, docs/*.md
//! and e2e/README.md say about unroot is held to the code.
//!
//! - every `--flag` written with an `unroot` command (in a code span or
//!   block) is in that command's `--help`, and a flag written alone is in
//!   some command's; the subcommands they name exist;
//! - every `unroot_*` metric they name is registered, and every metric that
//!   is registered is named in the metrics page;
//! - every `unroot.dev/*` label or annotation they name is read in `src/`;
//! - every relative link, and every `#anchor` into a markdown file, resolves;
//! - every kustomization they show renders (`kubectl kustomize`, with
//!   `<unroot>` standing for this repository), and every policy they show
//!   validates;
//! - the memory limit they quote is the Deployment's;
//! - a value the comments of `webhook-config/policy.yaml` offer for a field
//!   is one the policy accepts.
//!
//! Each check collects every problem and fails once, listing them with file
//! and line.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;

/// Pages other branches write: a link to them may dangle until they are
/// merged, and the checks that need them skip while they are missing.
const PENDING: &[&str] = &[];

/// The page that describes every metric.
const METRICS_PAGE: &str = "docs/metrics.md";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One markdown file, as lines.
struct Page {
    /// Relative to the repository root, with `/`.
    path: String,
    lines: Vec<String>,
}

fn pages() -> Vec<Page> {
    let root = root();
    let mut paths = vec![
        "README.md".to_owned(),
        "CONTRIBUTING.md".to_owned(),
        "SECURITY.md".to_owned(),
        "e2e/README.md".to_owned(),
    ];
    if let Ok(entries) = std::fs::read_dir(root.join("docs")) {
        let mut docs: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| Path::new(n).extension().is_some_and(|e| e == "md"))
            .map(|n| format!("docs/{n}"))
            .collect();
        docs.sort();
        paths.extend(docs);
    }
    paths
        .into_iter()
        .filter(|p| root.join(p).is_file())
        .map(|path| {
            let text = std::fs::read_to_string(root.join(&path))
                .unwrap_or_else(|e| panic!("failed to read {path}: {e}"));
            Page {
                path,
                lines: text.lines().map(str::to_owned).collect(),
            }
        })
        .collect()
}

/// A piece of a page: prose (with its inline code spans), or a line of a
/// fenced code block.
#[derive(Debug)]
enum Piece {
    /// A prose line (code spans kept in backticks).
    Prose(String),
    /// A line of a fenced block, with the block's info string.
    Code { lang: String, text: String },
}

/// The pieces of a page, each with its 1-based line number.
fn pieces(page: &Page) -> Vec<(usize, Piece)> {
    let mut out = Vec::new();
    let mut fence: Option<(String, String)> = None;
    for (i, line) in page.lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if let Some((marker, _)) = &fence {
            if trimmed.starts_with(marker.as_str()) && trimmed.trim_end() == marker.as_str() {
                fence = None;
                continue;
            }
        } else if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            let marker: String = trimmed
                .chars()
                .take_while(|c| *c == '`' || *c == '~')
                .collect();
            let lang = trimmed[marker.len()..].trim().to_owned();
            fence = Some((marker, lang));
            continue;
        }
        match &fence {
            Some((_, lang)) => out.push((
                i + 1,
                Piece::Code {
                    lang: lang.clone(),
                    text: line.clone(),
                },
            )),
            None => out.push((i + 1, Piece::Prose(line.clone()))),
        }
    }
    out
}

/// The fenced blocks of a page: (first line, info string, text).
fn blocks(page: &Page) -> Vec<(usize, String, String)> {
    let mut out: Vec<(usize, String, String)> = Vec::new();
    let mut last_line = 0;
    for (line, piece) in pieces(page) {
        if let Piece::Code { lang, text } = piece {
            match out.last_mut() {
                Some((_, l, body)) if line == last_line + 1 && *l == lang => {
                    body.push_str(&text);
                    body.push('\n');
                }
                _ => out.push((line, lang, format!("{text}\n"))),
            }
            last_line = line;
        }
    }
    out
}

/// The inline code spans of a prose line.
fn code_spans(line: &str) -> Vec<String> {
    let mut spans = Vec::new();
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'`' {
            let run = bytes[i..].iter().take_while(|b| **b == b'`').count();
            let marker = &line[i..i + run];
            if let Some(end) = line[i + run..].find(marker) {
                spans.push(line[i + run..i + run + end].trim().to_owned());
                i += run + end + run;
                continue;
            }
            i += run;
        } else {
            i += 1;
        }
    }
    spans
}

/// Prose with the code spans cut out.
fn without_spans(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let run = rest[start..].chars().take_while(|c| *c == '`').count();
        let marker = &rest[start..start + run];
        match rest[start + run..].find(marker) {
            Some(end) => rest = &rest[start + run + end + run..],
            None => {
                rest = &rest[start + run..];
            }
        }
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------- commands

/// What a command line says about unroot: the subcommand path it names and
/// the long flags it gives.
struct Invocation {
    path: Vec<String>,
    flags: Vec<String>,
    /// A word where a subcommand belongs that is none.
    unknown: Option<String>,
    /// Subcommand names that work but are not in `--help` (old names kept
    /// as hidden aliases).
    hidden: Vec<String>,
    /// A placeholder (`...`, `<sub>`) stands where a subcommand belongs:
    /// the flags may be any subcommand's below `path`.
    any_below: bool,
}

/// What one command's `--help` shows, and what it accepts unshown.
#[derive(Default)]
struct CommandHelp {
    flags: BTreeSet<String>,
    hidden_flags: BTreeSet<String>,
    /// Each subcommand name and alias → (its name, whether `--help` shows
    /// it under this name).
    subcommands: BTreeMap<String, (String, bool)>,
}

/// The commands, by subcommand path.
struct Cli {
    commands: BTreeMap<Vec<String>, CommandHelp>,
    all_flags: BTreeSet<String>,
    all_hidden_flags: BTreeSet<String>,
}

fn cli() -> Cli {
    fn walk(
        cmd: &clap::Command,
        path: &mut Vec<String>,
        inherited: &CommandHelp,
        out: &mut BTreeMap<Vec<String>, CommandHelp>,
    ) {
        let mut help = CommandHelp {
            flags: inherited.flags.clone(),
            hidden_flags: inherited.hidden_flags.clone(),
            subcommands: BTreeMap::new(),
        };
        help.flags.insert("--help".to_owned());
        help.flags.insert("--version".to_owned());
        let mut globals = CommandHelp {
            flags: inherited.flags.clone(),
            hidden_flags: inherited.hidden_flags.clone(),
            subcommands: BTreeMap::new(),
        };
        for arg in cmd.get_arguments() {
            let long: Vec<String> = arg
                .get_long()
                .into_iter()
                .map(|l| format!("--{l}"))
                .collect();
            let visible_aliases: Vec<String> = arg
                .get_visible_aliases()
                .unwrap_or_default()
                .into_iter()
                .map(|a| format!("--{a}"))
                .collect();
            let all_aliases: Vec<String> = arg
                .get_all_aliases()
                .unwrap_or_default()
                .into_iter()
                .map(|a| format!("--{a}"))
                .collect();
            let (shown, unshown): (Vec<String>, Vec<String>) = if arg.is_hide_set() {
                (Vec::new(), long.into_iter().chain(all_aliases).collect())
            } else {
                let hidden = all_aliases
                    .into_iter()
                    .filter(|a| !visible_aliases.contains(a))
                    .collect();
                (long.into_iter().chain(visible_aliases).collect(), hidden)
            };
            if arg.is_global_set() {
                globals.flags.extend(shown.iter().cloned());
                globals.hidden_flags.extend(unshown.iter().cloned());
            }
            help.flags.extend(shown);
            help.hidden_flags.extend(unshown);
        }
        for sub in cmd.get_subcommands() {
            let name = sub.get_name().to_owned();
            let visible: BTreeSet<&str> = sub.get_visible_aliases().collect();
            help.subcommands
                .insert(name.clone(), (name.clone(), !sub.is_hide_set()));
            for alias in sub.get_all_aliases() {
                let shown = !sub.is_hide_set() && visible.contains(alias);
                help.subcommands
                    .insert(alias.to_owned(), (name.clone(), shown));
            }
        }
        out.insert(path.clone(), help);
        for sub in cmd.get_subcommands() {
            path.push(sub.get_name().to_owned());
            walk(sub, path, &globals, out);
            path.pop();
        }
    }
    let mut command = unroot::cli::Cli::command();
    command.build();
    let mut commands = BTreeMap::new();
    walk(
        &command,
        &mut Vec::new(),
        &CommandHelp::default(),
        &mut commands,
    );
    let all_flags = commands
        .values()
        .flat_map(|h| h.flags.iter().cloned())
        .collect();
    let all_hidden_flags = commands
        .values()
        .flat_map(|h| h.hidden_flags.iter().cloned())
        .collect();
    Cli {
        commands,
        all_flags,
        all_hidden_flags,
    }
}

/// A long flag as written (`--flag`, `--flag=value`, `[--flag`, `--flag,`),
/// or None for anything else.
fn long_flag(token: &str) -> Option<String> {
    let token = token.trim_start_matches(['[', '(', '{', '"', '\'']);
    let name = token.split('=').next().unwrap_or("");
    let name = name.trim_end_matches([']', ')', '}', ',', '.', ':', ';', '"', '\'', '`']);
    let rest = name.strip_prefix("--")?;
    let mut chars = rest.chars();
    let first = chars.next()?;
    (first.is_ascii_lowercase()
        && rest
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    .then(|| name.to_owned())
}

/// The command-line segments of a text: split at pipes, `;`, `&&`, `$(`
/// and a trailing `# comment`, which is a segment of its own.
fn segments(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let text = text.trim().trim_start_matches("$ ");
    let (command, comment) = match text.find(" # ") {
        Some(at) => (&text[..at], Some(&text[at + 3..])),
        None if text.starts_with('#') => ("", Some(&text[1..])),
        None => (text, None),
    };
    for part in command
        .split("&&")
        .flat_map(|p| p.split("||"))
        .flat_map(|p| p.split(['|', ';']))
        .flat_map(|p| p.split("$("))
    {
        out.push(part.trim().to_owned());
    }
    if let Some(comment) = comment {
        out.extend(segments(comment.trim()));
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Reads one segment: an unroot command line, a flag alone, or something
/// else (None).
fn invocation(segment: &str, cli: &Cli) -> Option<Invocation> {
    let tokens: Vec<&str> = segment.split_whitespace().collect();
    let mut i = 0;
    // Environment assignments before the command.
    while i < tokens.len() && tokens[i].contains('=') && !tokens[i].starts_with('-') {
        i += 1;
    }
    let first = *tokens.get(i)?;
    let args: &[&str] = if first == "unroot" || first.ends_with("/unroot") {
        &tokens[i + 1..]
    } else if first == "cargo" && tokens.get(i + 1) == Some(&"run") {
        let dash = tokens.iter().position(|t| *t == "--")?;
        if let Some(bin) = tokens.iter().position(|t| *t == "--bin")
            && tokens.get(bin + 1) != Some(&"unroot")
        {
            return None;
        }
        &tokens[dash + 1..]
    } else if long_flag(first).is_some() {
        // A flag written with no command: `*` stands for "some command".
        return Some(Invocation {
            path: vec!["*".to_owned()],
            flags: tokens[i..].iter().filter_map(|t| long_flag(t)).collect(),
            unknown: None,
            hidden: Vec::new(),
            any_below: false,
        });
    } else {
        return None;
    };
    let mut path = Vec::new();
    let mut flags = Vec::new();
    let mut unknown = None;
    let mut hidden = Vec::new();
    let mut any_below = false;
    let mut descending = true;
    for token in args {
        if let Some(flag) = long_flag(token) {
            flags.push(flag);
            continue;
        }
        if token.starts_with('-') || !descending {
            continue;
        }
        let placeholder = token.starts_with(['<', '[', '.', '…', '{', '\\'])
            || token.chars().any(|c| c.is_ascii_uppercase());
        let subcommands = &cli.commands[&path].subcommands;
        if let Some((name, shown)) = subcommands.get(*token) {
            if !shown {
                hidden.push((*token).to_owned());
            }
            path.push(name.clone());
        } else {
            if !subcommands.is_empty() && *token != "help" {
                if placeholder {
                    any_below = true;
                } else {
                    unknown = Some((*token).to_owned());
                }
            }
            descending = false;
        }
    }
    Some(Invocation {
        path,
        flags,
        unknown,
        hidden,
        any_below,
    })
}

/// Programs whose flags the docs name too: a flag written alone after one
/// of them, in the same paragraph, is that program's.
const FOREIGN: &[&str] = &[
    "kubectl",
    "kube-apiserver",
    "kubelet",
    "kube-controller-manager",
    "kube-scheduler",
    "podman",
    "docker",
    "skopeo",
    "cargo",
    "openssl",
    "ctr",
    "oha",
    "deps.sh",
    "run.sh",
    "cluster.sh",
    "build-k8s.sh",
    "images.sh",
];

/// Whether the last program a text names is another one than unroot.
fn names_foreign_program_last(context: &str) -> bool {
    let words: Vec<&str> = context
        .split(|c: char| c.is_whitespace() || "`(),;:*[]".contains(c))
        .filter(|w| !w.is_empty())
        .collect();
    for word in words.iter().rev() {
        let word = word
            .trim_end_matches(['.', '\'', 's'])
            .trim_end_matches('\'');
        let base = word.rsplit('/').next().unwrap_or(word);
        if base == "unroot" {
            return false;
        }
        if FOREIGN.contains(&base) {
            return true;
        }
    }
    false
}

/// A command line the docs write: where, the text, and whether a flag
/// alone in it belongs to another program named just before.
struct CommandLine {
    line: usize,
    text: String,
    foreign: bool,
}

/// The command lines of a page: code spans of prose, and lines of blocks
/// (a `\` continuation joined).
fn command_lines(page: &Page) -> Vec<CommandLine> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    let mut paragraph = String::new();
    for (line, piece) in pieces(page) {
        match piece {
            Piece::Prose(text) => {
                if let Some((line, text)) = pending.take() {
                    out.push(CommandLine {
                        line,
                        text,
                        foreign: false,
                    });
                }
                let trimmed = text.trim_start();
                let numbered = trimmed
                    .split_once(". ")
                    .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
                if trimmed.is_empty() || trimmed.starts_with(['-', '*', '|', '#']) || numbered {
                    paragraph.clear();
                }
                let mut rest = text.as_str();
                for span in code_spans(&text) {
                    let at = rest.find(&span).unwrap_or(0);
                    let context = format!("{paragraph} {}", &rest[..at]);
                    rest = &rest[(at + span.len()).min(rest.len())..];
                    out.push(CommandLine {
                        line,
                        foreign: names_foreign_program_last(&context),
                        text: span,
                    });
                    paragraph = context;
                    paragraph.push_str(&out[out.len() - 1].text);
                }
                paragraph.push(' ');
                paragraph.push_str(rest);
            }
            Piece::Code { lang, text } => {
                paragraph.clear();
                if lang == "json" {
                    continue;
                }
                let (start, mut joined) = pending.take().unwrap_or((line, String::new()));
                let mut trimmed = text.trim_end();
                // A commented command continued on the next line.
                if joined.trim_start().starts_with('#') {
                    trimmed = trimmed.trim_start().trim_start_matches('#');
                }
                if let Some(head) = trimmed.strip_suffix('\\') {
                    joined.push_str(head);
                    joined.push(' ');
                    pending = Some((start, joined));
                } else {
                    joined.push_str(trimmed);
                    out.push(CommandLine {
                        line: start,
                        text: joined,
                        foreign: false,
                    });
                }
            }
        }
    }
    out.extend(pending.map(|(line, text)| CommandLine {
        line,
        text,
        foreign: false,
    }));
    out
}

/// Whether a line presents a name as an old one, which may be missing from
/// `--help` (a hidden alias).
fn names_an_old_name(line: &str) -> bool {
    let line = line.to_ascii_lowercase();
    ["old name", "alias", "renamed", "formerly", "deprecated"]
        .iter()
        .any(|w| line.contains(w))
}

#[test]
fn every_flag_the_docs_name_is_in_the_help_of_its_command() {
    let cli = cli();
    let mut problems = String::new();
    for page in pages() {
        for CommandLine {
            line,
            text,
            foreign,
        } in command_lines(&page)
        {
            // The line, or the lines before it in its section (a table of
            // renamed flags under a sentence that says so).
            let old_name_ok = page.lines[line.saturating_sub(10)..line]
                .iter()
                .rev()
                .take_while(|l| !l.starts_with('#'))
                .any(|l| names_an_old_name(l));
            for segment in segments(&text) {
                let Some(inv) = invocation(&segment, &cli) else {
                    continue;
                };
                let at = format!("{}:{line}", page.path);
                if inv.path == ["*"] {
                    if foreign {
                        continue;
                    }
                    for flag in inv.flags {
                        if cli.all_flags.contains(&flag)
                            || (old_name_ok && cli.all_hidden_flags.contains(&flag))
                        {
                            continue;
                        }
                        let why = if cli.all_hidden_flags.contains(&flag) {
                            "is hidden (an old name?) from every"
                        } else {
                            "is in no"
                        };
                        let _ = writeln!(
                            problems,
                            "{at}: {flag} {why} `unroot … --help` (`{segment}`)"
                        );
                    }
                    continue;
                }
                let command = format!("unroot {}", inv.path.join(" "));
                let command = command.trim_end();
                if let Some(word) = inv.unknown {
                    let _ = writeln!(
                        problems,
                        "{at}: `{command}` has no subcommand {word:?} (`{segment}`)"
                    );
                }
                if !old_name_ok {
                    for word in inv.hidden {
                        let _ = writeln!(
                            problems,
                            "{at}: {word:?} is a hidden name of `{command}`; write the name `--help` shows (`{segment}`)"
                        );
                    }
                }
                // The command's help, or with a placeholder for a
                // subcommand, that of every command below it.
                let mut help = CommandHelp::default();
                for (path, h) in &cli.commands {
                    if *path == inv.path || (inv.any_below && path.starts_with(&inv.path)) {
                        help.flags.extend(h.flags.iter().cloned());
                        help.hidden_flags.extend(h.hidden_flags.iter().cloned());
                    }
                }
                for flag in inv.flags {
                    if help.flags.contains(&flag)
                        || (old_name_ok && help.hidden_flags.contains(&flag))
                    {
                        continue;
                    }
                    let why = if help.hidden_flags.contains(&flag) {
                        "is hidden (an old name?) from"
                    } else {
                        "is not in"
                    };
                    let _ = writeln!(
                        problems,
                        "{at}: {flag} {why} `{command} --help` (`{segment}`)"
                    );
                }
            }
        }
    }
    assert!(problems.is_empty(), "flags the CLI lacks:\n{problems}");
}

/// Metrics the docs may name as gone (for those who migrate), and which
/// must stay unregistered.
const RETIRED_METRICS: &[&str] = &["unroot_pss_evaluations_total"];

// ----------------------------------------------------------------- metrics

/// Every metric family unroot registers, by name, as `unroot serve`
/// registers them all (some only with a cluster).
struct Registered {
    registry: prometheus::Registry,
}

impl Registered {
    fn new() -> Self {
        let metrics = unroot::metrics::Metrics::new();
        let registry = metrics.registry().clone();
        let _policy = unroot::policy::watch::Metrics::new(&registry);
        let _identities = unroot::identities::Metrics::new(&registry);
        let _certs = unroot::certs::Metrics::new(&registry);
        let _audit = unroot::audit::Metrics::new(&registry);
        Self { registry }
    }

    /// Whether a family of this name is registered: a probe of the same
    /// name cannot be.
    fn has(&self, name: &str) -> bool {
        let Ok(probe) = prometheus::IntCounter::new(name, "docs check probe") else {
            return false;
        };
        if self.registry.register(Box::new(probe.clone())).is_ok() {
            let _ = self.registry.unregister(Box::new(probe));
            false
        } else {
            true
        }
    }
}

/// The `unroot_*` names in a text (with a trailing `*` kept: a prefix).
fn metric_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(at) = text[from..].find("unroot_") {
        let start = from + at;
        let before = start.checked_sub(1).map(|i| bytes[i]);
        let mut end = start + "unroot_".len();
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        from = end;
        if before.is_some_and(|b| b.is_ascii_alphanumeric() || b"_-./".contains(&b))
            || end == start + "unroot_".len()
        {
            continue;
        }
        let mut name = text[start..end].to_owned();
        if bytes.get(end) == Some(&b'*') {
            name.push('*');
        }
        out.push(name);
    }
    out
}

/// Metric-looking string literals in `src/` (a name a module registers,
/// or reads back from the registry).
fn metric_literals() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (_, text) in source_files() {
        let mut rest = text.as_str();
        while let Some(at) = rest.find("\"unroot_") {
            let tail = &rest[at + 1..];
            let end = tail.find('"').unwrap_or(tail.len());
            let name = &tail[..end];
            if name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                out.insert(name.to_owned());
            }
            rest = &tail[end.min(tail.len())..];
        }
    }
    out
}

fn source_files() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs")
                && let Ok(text) = std::fs::read_to_string(&path)
            {
                out.push((path, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(&root().join("src"), &mut out);
    walk(&root().join("crates"), &mut out);
    out
}

/// `src/` without comments and test modules: what the code reads, not
/// what it says.
fn source_code() -> String {
    let mut out = String::new();
    for (_, text) in source_files() {
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
        for line in code.lines() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("//") {
                continue;
            }
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The shell functions of the e2e suite (`unroot_running`, …): names the
/// e2e README gives that are no metrics.
fn e2e_functions() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for dir in ["e2e", "e2e/scenarios"] {
        let Ok(entries) = std::fs::read_dir(root().join(dir)) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            for line in text.lines() {
                if let Some((name, _)) = line.split_once("()")
                    && !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                {
                    out.insert(name.to_owned());
                }
            }
        }
    }
    out
}

#[test]
fn every_metric_the_docs_name_is_registered_and_every_registered_one_is_documented() {
    let registered = Registered::new();
    let functions = e2e_functions();
    let exported: BTreeSet<String> = metric_literals()
        .into_iter()
        .filter(|n| registered.has(n))
        .collect();
    assert!(
        exported.contains("unroot_admission_requests_total"),
        "the docs check found no registered metric: {exported:?}"
    );
    let mut problems = String::new();
    let mut named_on_metrics_page = BTreeSet::new();
    for page in pages() {
        for (i, line) in page.lines.iter().enumerate() {
            for name in metric_names(line) {
                // `unroot_core` is the core crate's name, no metric.
                if functions.contains(&name)
                    || RETIRED_METRICS.contains(&name.as_str())
                    || name == "unroot_core"
                {
                    continue;
                }
                let known = if let Some(prefix) = name.strip_suffix('*') {
                    exported.iter().any(|e| e.starts_with(prefix))
                } else {
                    let base = ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|s| name.strip_suffix(s))
                        .filter(|b| exported.contains(*b))
                        .unwrap_or(&name);
                    if page.path == METRICS_PAGE {
                        named_on_metrics_page.insert(base.to_owned());
                    }
                    exported.contains(base)
                };
                if !known {
                    let _ = writeln!(
                        problems,
                        "{}:{}: {name} is not a metric unroot registers",
                        page.path,
                        i + 1
                    );
                }
            }
        }
    }
    // Every metric has its description on the metrics page (unless that
    // page is still to be merged).
    if root().join(METRICS_PAGE).is_file() || !PENDING.contains(&METRICS_PAGE) {
        for name in exported.difference(&named_on_metrics_page) {
            let _ = writeln!(problems, "{name} is registered but not on {METRICS_PAGE}");
        }
    }
    for name in RETIRED_METRICS {
        if registered.has(name) {
            let _ = writeln!(problems, "{name} is on RETIRED_METRICS but registered");
        }
    }
    assert!(problems.is_empty(), "metrics:\n{problems}");
}

// ------------------------------------------------------------------ labels

/// The `unroot.dev/` keys a text names: (key, whole word as written). Keys
/// of audit annotations (`mutate.pods.unroot.dev/harden`) come back with
/// their prefix.
fn label_keys(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("unroot.dev/") {
        let start = from + at;
        let mut begin = start;
        while begin > 0 {
            let c = text.as_bytes()[begin - 1];
            if c.is_ascii_lowercase() || c == b'.' || c == b'-' {
                begin -= 1;
            } else {
                break;
            }
        }
        let name_start = start + "unroot.dev/".len();
        let mut end = name_start;
        let bytes = text.as_bytes();
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'-'
                || bytes[end] == b'_')
        {
            end += 1;
        }
        from = end.max(start + 1);
        let name = text[name_start..end].trim_end_matches('-');
        if name.is_empty() || name == "v1" || bytes.get(end) == Some(&b'<') {
            continue;
        }
        out.push(format!("{}{name}", &text[begin..name_start]));
    }
    out
}

#[test]
fn every_label_and_annotation_the_docs_name_is_read_in_src() {
    let code = source_code();
    let mut problems = String::new();
    for page in pages() {
        for (i, line) in page.lines.iter().enumerate() {
            for key in label_keys(line) {
                let read = match key.split_once("unroot.dev/") {
                    // An audit annotation: the API server prefixes unroot's
                    // key with the webhook's name.
                    Some((prefix, name)) if !prefix.is_empty() => {
                        code.contains(&format!("\"{name}\""))
                    }
                    _ => code.contains(&key),
                };
                if !read {
                    let _ = writeln!(
                        problems,
                        "{}:{}: {key} is read nowhere in src/",
                        page.path,
                        i + 1
                    );
                }
            }
        }
    }
    assert!(problems.is_empty(), "labels and annotations:\n{problems}");
}

/// The page that describes every label and annotation.
const LABELS_PAGE: &str = "docs/labels.md";

#[test]
fn every_label_and_annotation_src_reads_is_on_the_labels_page() {
    let page = std::fs::read_to_string(root().join(LABELS_PAGE)).expect("docs/labels.md");
    let documented: BTreeSet<String> = label_keys(&page).into_iter().collect();
    let read: BTreeSet<String> = label_keys(&source_code())
        .into_iter()
        .filter(|k| k.starts_with("unroot.dev/"))
        .collect();
    assert!(
        read.contains("unroot.dev/harden"),
        "no label found in src/: {read:?}"
    );
    let missing: Vec<&String> = read.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "read in src/ but not on {LABELS_PAGE}: {missing:?}"
    );
}

/// The page that describes every flag.
const CLI_PAGE: &str = "docs/cli.md";

#[test]
fn every_flag_is_on_the_cli_page() {
    let Ok(page) = std::fs::read_to_string(root().join(CLI_PAGE)) else {
        assert!(PENDING.contains(&CLI_PAGE), "{CLI_PAGE} is missing");
        return;
    };
    let named: BTreeSet<String> = page
        .split(|c: char| c.is_whitespace() || "`[](),|=".contains(c))
        .filter_map(long_flag)
        .collect();
    let cli = cli();
    let missing: Vec<&String> = cli
        .all_flags
        .iter()
        .filter(|f| *f != "--help" && *f != "--version")
        .filter(|f| !named.contains(*f))
        .collect();
    assert!(missing.is_empty(), "flags not on {CLI_PAGE}: {missing:?}");
}

#[test]
fn the_readme_is_a_front_page() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let lines = readme.lines().count();
    assert!(
        lines < 200,
        "README.md has {lines} lines; keep it under 200"
    );
}

// ------------------------------------------------------------------- links

/// GitHub's anchor for a heading.
fn slug(heading: &str) -> String {
    let text = without_markup(heading);
    text.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// A heading's text without backticks and link targets.
fn without_markup(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find("](") {
        let Some(close) = rest[open..].find(')') else {
            break;
        };
        out.push_str(&rest[..open]);
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out.replace(['`', '[', ']', '*'], "")
}

/// The anchors of a page: its headings' (numbered as GitHub numbers
/// repeats), and explicit `<a id="…">` / `<a name="…">`.
fn anchors(page: &Page) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (_, piece) in pieces(page) {
        let Piece::Prose(line) = piece else { continue };
        if line.starts_with('#') {
            let text = line.trim_start_matches('#').trim();
            let base = slug(text);
            let n = seen.entry(base.clone()).or_insert(0);
            out.insert(if *n == 0 {
                base.clone()
            } else {
                format!("{base}-{n}")
            });
            *n += 1;
        }
        for marker in ["<a id=\"", "<a name=\""] {
            let mut rest = line.as_str();
            while let Some(at) = rest.find(marker) {
                let tail = &rest[at + marker.len()..];
                let end = tail.find('"').unwrap_or(tail.len());
                out.insert(tail[..end].to_owned());
                rest = &tail[end..];
            }
        }
    }
    out
}

/// The link targets of a prose line: `[text](target)` and `[ref]: target`.
fn link_targets(line: &str) -> Vec<String> {
    let prose = without_spans(line);
    let mut out = Vec::new();
    let mut rest = prose.as_str();
    while let Some(at) = rest.find("](") {
        let tail = &rest[at + 2..];
        let end = tail.find(')').unwrap_or(tail.len());
        out.push(
            tail[..end]
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_owned(),
        );
        rest = &tail[end..];
    }
    let trimmed = prose.trim_start();
    if trimmed.starts_with('[')
        && let Some(at) = trimmed.find("]: ")
    {
        out.push(trimmed[at + 3..].trim().to_owned());
    }
    out
}

fn normalize(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::CurDir => {}
            other => parts.push(other.as_os_str().to_string_lossy().into_owned()),
        }
    }
    parts.join("/")
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let pages = pages();
    let by_path: BTreeMap<&str, &Page> = pages.iter().map(|p| (p.path.as_str(), p)).collect();
    let mut problems = String::new();
    for page in &pages {
        let dir = Path::new(&page.path)
            .parent()
            .unwrap_or_else(|| Path::new(""));
        for (line, piece) in pieces(page) {
            let Piece::Prose(text) = piece else { continue };
            for target in link_targets(&text) {
                if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (file, anchor) = match target.split_once('#') {
                    Some((f, a)) => (f, Some(a)),
                    None => (target.as_str(), None),
                };
                let resolved = if file.is_empty() {
                    page.path.clone()
                } else {
                    normalize(&dir.join(file))
                };
                let at = format!("{}:{line}", page.path);
                if !root().join(&resolved).exists() {
                    if !PENDING.contains(&resolved.as_str()) {
                        let _ = writeln!(problems, "{at}: {target}: no such file {resolved}");
                    }
                    continue;
                }
                let Some(anchor) = anchor else { continue };
                let Some(target_page) = by_path.get(resolved.as_str()) else {
                    if Path::new(&resolved).extension().is_some_and(|e| e == "md") {
                        let text =
                            std::fs::read_to_string(root().join(&resolved)).unwrap_or_default();
                        let other = Page {
                            path: resolved.clone(),
                            lines: text.lines().map(str::to_owned).collect(),
                        };
                        if !anchors(&other).contains(anchor) {
                            let _ = writeln!(problems, "{at}: {target}: no anchor #{anchor}");
                        }
                    }
                    continue;
                };
                if !anchors(target_page).contains(anchor) {
                    let _ = writeln!(
                        problems,
                        "{at}: {target}: {resolved} has no heading for #{anchor}"
                    );
                }
            }
        }
    }
    assert!(problems.is_empty(), "links:\n{problems}");
}

// ------------------------------------------------------ what the docs show

/// Where the docs write a kustomization of one's own over this repository.
const REPO: &str = "<unroot>";

#[test]
fn every_kustomization_the_docs_show_renders() {
    let mut problems = String::new();
    let mut rendered = 0;
    for page in pages() {
        for (line, lang, text) in blocks(&page) {
            if lang != "yaml" || !text.contains("kind: Kustomization") {
                continue;
            }
            // Inside the repository: kustomize takes no absolute resource
            // paths, and target/tmp… is two levels down.
            let scratch = root().join("target");
            std::fs::create_dir_all(&scratch).expect("a writable target/");
            let dir = tempfile::tempdir_in(&scratch).expect("a temporary directory");
            std::fs::write(
                dir.path().join("kustomization.yaml"),
                text.replace(REPO, "../.."),
            )
            .expect("writable temporary directory");
            let out = Command::new(
                std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_owned()),
            )
            .arg("kustomize")
            .arg(dir.path())
            .output()
            .unwrap_or_else(|e| {
                panic!("failed to run `kubectl kustomize` (kubectl is needed for make test): {e}")
            });
            rendered += 1;
            if !out.status.success() {
                let _ = writeln!(
                    problems,
                    "{}:{line}: kubectl kustomize fails: {}",
                    page.path,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
    }
    assert!(rendered > 0, "the docs show no kustomization any more");
    assert!(problems.is_empty(), "kustomizations:\n{problems}");
}

#[test]
fn every_policy_the_docs_show_validates() {
    let mut problems = String::new();
    let mut checked = 0;
    for page in pages() {
        for (line, lang, text) in blocks(&page) {
            if lang != "yaml" || !text.contains("kind: Policy") {
                continue;
            }
            checked += 1;
            if let Err(e) = unroot::policy::Document::from_yaml(&text) {
                let _ = writeln!(problems, "{}:{line}: {e}", page.path);
            }
        }
    }
    assert!(checked > 0, "the docs show no policy any more");
    assert!(problems.is_empty(), "policies:\n{problems}");
}

/// The char boundary at or before `at`.
fn boundary(text: &str, mut at: usize) -> usize {
    at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// A size as the docs write it (`512 Mi`, `512Mi`, `128 MiB`), in MiB.
fn sizes(text: &str) -> Vec<(usize, u64)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric()) {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let number: u64 = text[start..i].parse().unwrap_or(0);
            let unit = text[i..].trim_start_matches(' ');
            let factor = if unit.starts_with("Mi") {
                Some(1)
            } else if unit.starts_with("Gi") {
                Some(1024)
            } else {
                None
            };
            if let Some(f) = factor {
                out.push((start, number * f));
            }
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn the_memory_limit_the_docs_quote_is_the_deployments() {
    let deployment = std::fs::read_to_string(root().join("manifests/deployment.yaml"))
        .expect("manifests/deployment.yaml");
    let limit = deployment
        .lines()
        .find_map(|l| {
            let l = l.trim();
            l.strip_prefix("limits: {memory: ")
                .and_then(|r| r.strip_suffix('}'))
        })
        .and_then(|v| sizes(v).first().map(|(_, s)| *s))
        .expect("the Deployment sets `limits: {memory: …}`");
    let mut problems = String::new();
    let mut quoted = 0;
    for page in pages() {
        // Paragraphs, so that a figure and "limit" on two lines are read
        // together.
        let mut paragraph = String::new();
        let mut first = 1;
        let lines: Vec<&str> = page.lines.iter().map(String::as_str).chain([""]).collect();
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                let lower = paragraph.to_ascii_lowercase();
                let mut from = 0;
                while let Some(at) = lower[from..].find("limit") {
                    let at = from + at;
                    from = at + 5;
                    let window_start = boundary(&lower, at.saturating_sub(25));
                    let before = sizes(&paragraph[window_start..at]);
                    let after_end = boundary(&lower, (at + 20).min(lower.len()));
                    let after = sizes(&paragraph[at..after_end]);
                    let near = before.last().or(after.first());
                    let about_memory = lower[boundary(&lower, at.saturating_sub(40))..at]
                        .contains("memory")
                        || lower[boundary(&lower, at.saturating_sub(40))..at]
                            .contains("deployment");
                    if let Some((_, size)) = near
                        && about_memory
                    {
                        quoted += 1;
                        if *size != limit {
                            let _ = writeln!(
                                problems,
                                "{}:{first}: quotes a {size} MiB memory limit; manifests/deployment.yaml sets {limit} Mi",
                                page.path
                            );
                        }
                    }
                }
                paragraph.clear();
                first = i + 2;
            } else {
                paragraph.push_str(line);
                paragraph.push(' ');
            }
        }
    }
    assert!(quoted > 0, "the docs quote the memory limit nowhere");
    assert!(problems.is_empty(), "memory limit:\n{problems}");
}

/// For each `key: Value` of the policy file, the values its comment offers
/// besides the one set (`RuntimeDefault (recommended) or Localhost`, `on |
/// off`).
fn offered_values(policy: &str) -> Vec<(usize, String, String, String)> {
    let mut out = Vec::new();
    let mut comment = String::new();
    for (i, line) in policy.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(text) = trimmed.strip_prefix('#') {
            comment.push_str(text);
            comment.push(' ');
            continue;
        }
        if let Some((key, value)) = trimmed.split_once(": ") {
            let value = value.trim().trim_matches('"');
            if !comment.is_empty()
                && !value.is_empty()
                && value.chars().all(|c| c.is_ascii_alphanumeric())
            {
                let words: Vec<&str> = comment
                    .split(|c: char| c.is_whitespace() || c == ',' || c == ';' || c == ':')
                    .filter(|w| !w.is_empty())
                    .collect();
                for (at, word) in words.iter().enumerate() {
                    if word.trim_matches('"') != value {
                        continue;
                    }
                    let quoted = word.starts_with('"');
                    // `VALUE (aside) or OTHER`, `VALUE or OTHER`, `VALUE | OTHER`.
                    let mut j = at + 1;
                    if words.get(j).is_some_and(|w| w.starts_with('(')) {
                        while j < words.len() && !words[j].ends_with(')') {
                            j += 1;
                        }
                        j += 1;
                    }
                    if !matches!(words.get(j), Some(&"or" | &"|")) {
                        continue;
                    }
                    j += 1;
                    if words.get(j).is_some_and(|w| ["a", "an", "the"].contains(w)) {
                        j += 1;
                    }
                    if let Some(raw) = words.get(j) {
                        let other = raw.trim_matches(['"', '.', ')', '(']);
                        // The same kind of word: a CamelCase value for a
                        // CamelCase one, a quoted value for a quoted one.
                        let alike = (value.starts_with(|c: char| c.is_ascii_uppercase())
                            && other.starts_with(|c: char| c.is_ascii_uppercase()))
                            || (quoted && raw.starts_with('"'));
                        if alike && other.chars().all(|c| c.is_ascii_alphanumeric()) {
                            out.push((i, key.to_owned(), value.to_owned(), other.to_owned()));
                        }
                    }
                }
            }
        }
        comment.clear();
    }
    out
}

#[test]
fn every_value_the_policy_comments_offer_is_accepted() {
    let path = root().join("webhook-config/policy.yaml");
    let policy = std::fs::read_to_string(&path).expect("webhook-config/policy.yaml");
    let mut problems = String::new();
    for (i, key, value, other) in offered_values(&policy) {
        let lines: Vec<String> = policy
            .lines()
            .enumerate()
            .map(|(j, l)| {
                if j == i {
                    l.replacen(&value, &other, 1)
                } else {
                    l.to_owned()
                }
            })
            .collect();
        if let Err(e) = unroot::policy::Document::from_yaml(&lines.join("\n")) {
            let _ = writeln!(
                problems,
                "webhook-config/policy.yaml:{}: the comment offers {key}: {other}, which the policy refuses: {e}",
                i + 1
            );
        }
    }
    assert!(problems.is_empty(), "policy comments:\n{problems}");
}

#[test]
fn the_policy_comment_reader_finds_offered_values() {
    let sample = "# RuntimeDefault (recommended) or Localhost.\nseccompProfileType: RuntimeDefault\n# Only RuntimeDefault.\nother: RuntimeDefault\n";
    let found: Vec<(String, String)> = offered_values(sample)
        .into_iter()
        .map(|(_, _, _, other)| (String::new(), other))
        .collect();
    assert_eq!(found, vec![(String::new(), "Localhost".to_owned())]);
}

#[test]
fn the_command_reader_reads_unroot_command_lines() {
    let cli = cli();
    let inv = invocation("unroot certs rotate --force serving", &cli).expect("an unroot command");
    assert_eq!(inv.path, ["certs", "rotate"]);
    assert_eq!(inv.flags, ["--force"]);
    let inv = invocation(
        "cargo run -q -- mutate --namespace-labels a=b pod.yaml",
        &cli,
    )
    .expect("cargo run is unroot");
    assert_eq!(inv.path, ["mutate"]);
    assert!(invocation("kubectl label ns x --overwrite", &cli).is_none());
    let inv = invocation("--max-lag=0", &cli).expect("a flag alone");
    assert_eq!(inv.path, ["*"]);
    assert_eq!(inv.flags, ["--max-lag"]);
    assert_eq!(
        segments("unroot check -   # one JSON object --per-object"),
        ["unroot check -", "one JSON object --per-object"]
    );
}
