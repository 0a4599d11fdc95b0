//! The commands: `apply`, `sync`, `diff`, `reset`, `dump`, `validate` and offline `file validate`, writing decK's
//! console output. The binary parses flags and hands over the inputs; everything else happens here.

use std::io::Write;

use futures_util::StreamExt;
use futures_util::stream;

use crate::DeckError;
use crate::client::{Client, Connection};
use crate::dump::{DumpOptions, dump, render};
use crate::file::{Content, Env, Source, load_all};
use crate::plan::{Action, Change, Masker, Summary, changes, console_line, json_output, stages};
use crate::target::{Mode, resolve};

/// `apply`, `sync` or `diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    Apply,
    Sync,
    Diff,
}

/// How a sync-like command runs and prints.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub kind: SyncKind,
    /// `--select-tag`: must equal the file's `_info.select_tags` when both are given.
    pub select_tags: Vec<String>,
    pub json_output: bool,
    pub parallelism: usize,
    /// `--no-mask-deck-env-vars-value`: show the environment values the file used (secret fields stay masked).
    pub no_mask: bool,
    pub color: bool,
    /// Show a running count on the error stream while changes are sent (the caller sets this for a terminal only);
    /// output lines are printed above it, never through it.
    pub progress: bool,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            kind: SyncKind::Sync,
            select_tags: Vec::new(),
            json_output: false,
            parallelism: 10,
            no_mask: false,
            color: false,
            progress: false,
        }
    }
}

/// What a sync-like command did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    pub summary: Summary,
}

pub(crate) fn paint(color: bool, style: anstyle::Style, text: &str) -> String {
    if color { format!("{style}{text}{style:#}") } else { text.to_owned() }
}

pub(crate) fn action_color(a: Action) -> anstyle::Style {
    let color = match a {
        Action::Create => anstyle::AnsiColor::Green,
        Action::Update => anstyle::AnsiColor::Yellow,
        Action::Delete => anstyle::AnsiColor::Red,
    };
    anstyle::Style::new().fg_color(Some(color.into()))
}

/// decK's summary block.
pub fn print_summary(out: &mut dyn Write, summary: &Summary, kind: SyncKind, color: bool) {
    let block = format!(
        "Summary:\n  Created: {}\n  Updated: {}\n  Deleted: {}",
        summary.created,
        summary.updated,
        if kind == SyncKind::Apply { 0 } else { summary.deleted }
    );
    let style = anstyle::Style::new().bold().fg_color(Some(anstyle::AnsiColor::Green.into()));
    let _ = writeln!(out, "{}", paint(color, style, &block));
}

/// Which command reads the files: the gateway commands refuse formats older than 3.0 as decK does against a
/// Kong 3.x target; offline `file validate` reads them as Kong's DB-less loader does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    Gateway,
    Offline,
}

/// Reads, renders and checks the files; the select tags of the file and of the flags must agree. Notices (an
/// ignored `_workspace`, an old format read in memory) go to standard error.
fn read(
    sources: &[Source],
    env: &Env,
    select_tags: &[String],
    reader: Reader,
) -> Result<(Content, Vec<String>), DeckError> {
    let (mut content, used, mut errors) = load_all(sources, env);
    let mut notices = std::mem::take(&mut content.notices);
    if !content.docs.is_empty() && content.is_old_format() {
        match reader {
            Reader::Gateway => {
                if let Err(e) = content.check_format_version() {
                    errors.insert(0, e);
                }
            }
            Reader::Offline => {
                let version = content.format_version.clone().unwrap_or_else(|| "1.1".into());
                let changed = content.upgrade_in_memory();
                let file = content.docs.first().map(|d| d.name.clone()).unwrap_or_default();
                let paths = if changed.is_empty() {
                    String::new()
                } else {
                    format!(
                        " The paths that look like regexes were read with a `~` in these routes: {}.",
                        changed.join(", ")
                    )
                };
                notices.push(format!(
                    "{file}: format '{version}' was read as Kong's DB-less loader reads it, as format 3.0.{paths} \
                     `gateway sync`, `diff`, `apply` and `validate` refuse it as decK does: convert the file with \
                     `gatehouse file convert --from kong-gateway-2.x --to kong-gateway-3.x --input-file {file} \
                     --output-file {file}`."
                ));
            }
        }
    }
    let mut stderr = std::io::stderr();
    for notice in notices {
        let _ = writeln!(stderr, "Notice: {notice}");
    }
    if !content.gaps.is_empty() {
        return Err(DeckError::Unsupported { gaps: std::mem::take(&mut content.gaps), errors });
    }
    if !errors.is_empty() {
        return Err(DeckError::Files(errors));
    }
    if !select_tags.is_empty() {
        if !content.select_tags.is_empty() && content.select_tags != select_tags {
            return Err(DeckError::Other(format!(
                "select tags given with --select-tag ({}) differ from the file's _info.select_tags ({})",
                select_tags.join(","),
                content.select_tags.join(",")
            )));
        }
        content.select_tags = select_tags.to_vec();
    }
    Ok((content, used))
}

/// Konnect's control plane: the flag or variable, else the file's `_konnect.control_plane_name`.
fn connection_for(conn: &Connection, content: &Content) -> Result<Connection, DeckError> {
    let mut conn = conn.clone();
    match (&mut conn.konnect, &content.control_plane_name) {
        (Some(k), Some(from_file)) if k.control_plane_name.is_empty() => k.control_plane_name = from_file.clone(),
        (Some(k), _) if k.control_plane_name.is_empty() => k.control_plane_name = "default".into(),
        (None, Some(_)) => {
            return Err(DeckError::Other(
                "the file names a Konnect control plane (_konnect); give a token with --konnect-token or DECK_KONNECT_TOKEN"
                    .into(),
            ));
        }
        _ => {}
    }
    Ok(conn)
}

/// `apply`, `sync` and `diff`. Nothing is sent until the whole file is valid and every reference resolves.
pub async fn sync(
    sources: &[Source],
    env: &Env,
    conn: &Connection,
    opts: &SyncOptions,
    out: &mut dyn Write,
) -> Result<Outcome, DeckError> {
    let (content, used) = read(sources, env, &opts.select_tags, Reader::Gateway)?;
    let conn = connection_for(conn, &content)?;
    let client = Client::connect(&conn).await?;
    let current = client.current().await?;
    let mode = if opts.kind == SyncKind::Apply { Mode::Apply } else { Mode::Sync };
    let target = resolve(&content, Some(&current), mode).map_err(DeckError::Files)?;
    let planned = changes(&target);
    let masker = if opts.no_mask { Masker::secret_fields_only(&planned) } else { Masker::new(&used, &planned) };
    execute(&client, &planned, &masker, opts, out).await
}

/// Sends the changes stage by stage (or only prints them for `diff`), then the summary.
async fn execute(
    client: &Client,
    planned: &[Change],
    masker: &Masker,
    opts: &SyncOptions,
    out: &mut dyn Write,
) -> Result<Outcome, DeckError> {
    let mut summary = Summary::default();
    let mut failures: Vec<String> = Vec::new();
    let total = planned.len();
    let print = |out: &mut dyn Write, c: &Change| {
        if !opts.json_output {
            let _ = writeln!(out, "{}", paint(opts.color, action_color(c.action), &console_line(c, masker)));
        }
    };
    if opts.kind == SyncKind::Diff {
        for c in planned {
            print(out, c);
            summary.count(c.action);
        }
    } else {
        let bar = (opts.progress && total > 1).then(|| {
            let bar =
                indicatif::ProgressBar::with_draw_target(Some(total as u64), indicatif::ProgressDrawTarget::stderr());
            bar.set_style(
                indicatif::ProgressStyle::with_template("sending changes: {pos}/{len}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        let mut dropped: Vec<&Change> = Vec::new();
        for stage in stages(planned) {
            if !failures.is_empty() {
                dropped.extend(stage);
                continue;
            }
            let results: Vec<(&Change, Result<(), DeckError>)> = stream::iter(stage)
                .map(|c| async move {
                    let r = match c.action {
                        Action::Delete => client.delete(c.kind, &c.id).await,
                        _ => match &c.new {
                            Some(body) => client.put(c.kind, &c.id, body).await,
                            None => Ok(()),
                        },
                    };
                    (c, r)
                })
                .buffered(opts.parallelism.max(1))
                .collect()
                .await;
            for (c, r) in results {
                match r {
                    Ok(()) => {
                        // The counter is cleared while the line is written and drawn again below it.
                        match &bar {
                            Some(bar) => bar.suspend(|| print(out, c)),
                            None => print(out, c),
                        }
                        summary.count(c.action);
                    }
                    Err(e) => failures.push(masker.mask(&format!(
                        "failed to {} {} {}: {e}",
                        match c.action {
                            Action::Create => "create",
                            Action::Update => "update",
                            Action::Delete => "delete",
                        },
                        crate::target::kind_name(c.kind),
                        c.console
                    ))),
                }
                if let Some(bar) = &bar {
                    bar.inc(1);
                }
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        if !opts.json_output {
            for c in dropped {
                let what = match c.action {
                    Action::Create => "creation",
                    Action::Update => "update",
                    Action::Delete => "deletion",
                };
                let _ = writeln!(
                    out,
                    "{}",
                    masker.mask(&format!("Dropped {what} {} {}", crate::target::kind_name(c.kind), c.console))
                );
            }
        }
    }
    if opts.json_output {
        let doc = json_output(planned, &summary, masker, &failures);
        let _ = writeln!(out, "{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        print_summary(out, &summary, opts.kind, opts.color);
    }
    let _ = out.flush();
    if failures.is_empty() {
        Ok(Outcome { summary })
    } else {
        Err(DeckError::Other(format!("{} errors occurred:\n\t{}", failures.len(), failures.join("\n\t"))))
    }
}

/// `reset`: deletes every entity (carrying the select tags, if given). The caller has asked for confirmation.
pub async fn reset(conn: &Connection, opts: &SyncOptions, out: &mut dyn Write) -> Result<Outcome, DeckError> {
    let content = Content { select_tags: opts.select_tags.clone(), ..Content::default() };
    let conn = connection_for(conn, &content)?;
    let client = Client::connect(&conn).await?;
    let current = client.current().await?;
    let target = resolve(&content, Some(&current), Mode::Sync).map_err(DeckError::Files)?;
    let planned = changes(&target);
    let masker = Masker::secret_fields_only(&planned);
    execute(&client, &planned, &masker, opts, out).await
}

/// `ping`: connects as every command does (the Admin API's `GET /` with its Kong version, or the control plane
/// found with the token) and says so in decK's words.
pub async fn ping(conn: &Connection, out: &mut dyn Write) -> Result<(), DeckError> {
    let conn = connection_for(conn, &Content::default())?;
    let client = Client::connect(&conn).await?;
    match &conn.konnect {
        Some(k) => {
            // decK names the Konnect organization; Gatehouse has none, so the control plane it found.
            let _ = writeln!(out, "Successfully Konnected to control plane '{}' at {}!", k.control_plane_name, k.addr);
        }
        None => {
            let _ = writeln!(out, "Successfully connected to Kong!");
            let _ = writeln!(out, "Kong version:  {}", client.kong_version.as_deref().unwrap_or_default());
        }
    }
    let _ = out.flush();
    Ok(())
}

/// `dump`: the file text for what the target holds.
pub async fn dump_text(conn: &Connection, opts: &DumpOptions, json: bool) -> Result<String, DeckError> {
    let content = Content::default();
    let conn = connection_for(conn, &content)?;
    let client = Client::connect(&conn).await?;
    let current = client.current().await?;
    let opts = DumpOptions { control_plane_name: client.control_plane_name.clone(), ..opts.clone() };
    render(&dump(&current, &opts), json).map_err(|e| DeckError::Other(format!("writing the dump: {e}")))
}

/// `gateway validate`: the files checked against what the target holds (references to its entities resolve);
/// nothing is changed.
pub async fn validate_online(sources: &[Source], env: &Env, conn: &Connection) -> Result<(), DeckError> {
    let (content, _) = read(sources, env, &[], Reader::Gateway)?;
    let conn = connection_for(conn, &content)?;
    let client = Client::connect(&conn).await?;
    let current = client.current().await?;
    resolve(&content, Some(&current), Mode::Apply).map_err(DeckError::Files)?;
    Ok(())
}

/// `file validate`: the files checked on their own, offline.
pub fn validate_offline(sources: &[Source], env: &Env) -> Result<(), DeckError> {
    let (content, _) = read(sources, env, &[], Reader::Offline)?;
    resolve(&content, None, Mode::Apply).map_err(DeckError::Files)?;
    Ok(())
}
