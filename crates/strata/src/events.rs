//! `strata events`: the event pipeline as an operator sees it, read from (and, for replay,
//! changed through) a worker's `/events/*` endpoints, so it works the same for `strata up`
//! (in-memory bus) and for workers on NATS.

use anyhow::Context;
use serde_json::Value;
use strata_core::table::{Align, Table};
use strata_worker::EventStats;
use strata_worker::dlq::{Listed, Replayed};

use crate::cli::{DlqCommand, EventsArgs, EventsCommand};

/// Runs one `strata events` command and prints its answer (a table, or JSON with `--json`).
///
/// # Errors
/// When the worker cannot be reached or refuses the request (its error is shown).
pub async fn run(args: &EventsArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .context("cannot build the HTTP client")?;
    let base = args.url.trim_end_matches('/');
    let request = match &args.command {
        EventsCommand::Stats => client.get(format!("{base}/events/stats")),
        EventsCommand::Dlq {
            command: DlqCommand::List { from, limit },
        } => client.get(format!("{base}/events/dlq?from={from}&limit={limit}")),
        EventsCommand::Dlq {
            command: DlqCommand::Replay { ids },
        } => client
            .post(format!("{base}/events/dlq/replay"))
            .json(&serde_json::json!({ "ids": ids })),
    };
    let request = match &args.token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach the worker at {base}"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .with_context(|| format!("the worker at {base} did not answer JSON"))?;
    if !status.is_success() {
        let message = body["error"]["message"].as_str().unwrap_or("no message");
        anyhow::bail!("the worker answered {status}: {message}");
    }
    if args.json {
        println!("{body}");
        return Ok(());
    }
    match &args.command {
        EventsCommand::Stats => {
            let stats: EventStats = serde_json::from_value(body)?;
            print!("{}", stats.table());
        }
        EventsCommand::Dlq {
            command: DlqCommand::List { .. },
        } => {
            let letters: Vec<Listed> = serde_json::from_value(body)?;
            let mut table = Table::new(&[
                ("id", Align::Right),
                ("handler", Align::Left),
                ("subject", Align::Left),
                ("tries", Align::Right),
                ("failed at", Align::Left),
                ("error", Align::Left),
            ]);
            for l in &letters {
                let at = l
                    .letter
                    .failed_at
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                table.row([
                    l.id.to_string(),
                    l.letter.handler.clone(),
                    l.letter.subject.clone(),
                    l.letter.deliveries.to_string(),
                    at,
                    l.letter.error.clone(),
                ]);
            }
            print!("{}", table.render());
            println!("{} dead letter(s)", letters.len());
        }
        EventsCommand::Dlq {
            command: DlqCommand::Replay { .. },
        } => {
            let replayed: Replayed = serde_json::from_value(body)?;
            println!("replayed: {:?}", replayed.replayed);
            if !replayed.missing.is_empty() {
                println!("not in the dead-letter stream: {:?}", replayed.missing);
            }
        }
    }
    Ok(())
}
