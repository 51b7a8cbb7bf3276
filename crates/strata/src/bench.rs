//! `strata bench`: turns the flags into a strata-lab [`LoadSpec`], runs it and prints the
//! report: a summary for people, `--json` or `--markdown`.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use strata_lab::{LabError, LoadReport, LoadSpec, MAX_DURATION, Pace};

use crate::cli::BenchArgs;
use crate::up::print_stdout;

/// The time bound of a run given only a request bound: every run is bounded in time, and ten
/// minutes is far beyond any run `--requests` is meant for.
const REQUESTS_TIME_CAP: Duration = Duration::from_secs(600);
/// The time bound of a run given neither bound.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// Not one request of the run succeeded: the report is printed, and the exit code says so.
#[derive(Debug, thiserror::Error)]
#[error("not one request succeeded ({requests} sent: {what})")]
struct NothingSucceeded {
    requests: u64,
    what: String,
}

/// Runs the load (until its bounds, or the first Ctrl-C or SIGTERM) and prints the report.
///
/// # Errors
/// [`LabError`] for an invalid spec (the caller exits with 2), an unresolvable host or a
/// failed setup; [`NothingSucceeded`] (after printing the report) when every request failed
/// or was answered with a non-2xx status.
pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let spec = spec(args)?;
    let rates = match &spec.pace {
        Pace::Closed => None,
        Pace::Open { rates, .. } => Some(
            rates
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ),
    };
    tracing::info!(
        url = %spec.measured_url(),
        scenario = %spec.scenario,
        concurrency = spec.concurrency,
        duration_secs = spec.run_time().as_secs_f64(),
        requests = spec.requests,
        rate = rates.as_deref(),
        "bench starting"
    );
    // Ctrl-C or SIGTERM ends the run early, with its report: requests in flight finish first.
    let stop = crate::on_signal();
    let report = strata_lab::run_until(&spec, stop).await?;
    let text = if args.json {
        let json = serde_json::to_string_pretty(&report).context("cannot encode the report")?;
        format!("{json}\n")
    } else if args.markdown {
        report.markdown()
    } else {
        report.summary()
    };
    print_stdout(&text);
    if report.all_failed() {
        return Err(nothing_succeeded(&report).into());
    }
    Ok(())
}

fn nothing_succeeded(report: &LoadReport) -> NothingSucceeded {
    let mut what: Vec<String> = report
        .errors
        .iter()
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    what.extend(
        report
            .statuses
            .iter()
            .map(|(status, n)| format!("status {status} {n}")),
    );
    NothingSucceeded {
        requests: report.requests,
        what: if what.is_empty() {
            "nothing answered".to_owned()
        } else {
            what.join(", ")
        },
    }
}

fn spec(args: &BenchArgs) -> Result<LoadSpec, LabError> {
    let mut spec = LoadSpec::new(args.url.clone());
    spec.scenario = args.scenario.parse()?;
    spec.concurrency = args.concurrency;
    spec.requests = args.requests;
    spec.users = args.users;
    spec.rooms = args.rooms;
    spec.listeners = args.listeners;
    spec.token.clone_from(&args.token);
    spec.duration = match (&args.duration, args.requests) {
        (Some(text), _) => duration("duration", text)?,
        (None, Some(_)) => REQUESTS_TIME_CAP,
        (None, None) => DEFAULT_DURATION,
    };
    if !args.rate.is_empty() {
        let rates = args
            .rate
            .iter()
            .map(|r| {
                r.trim().parse::<f64>().map_err(|_| {
                    LabError::spec(
                        "rate",
                        format!("`{r}` is not a number of requests per second"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let step = args
            .step
            .as_deref()
            .map(|s| duration("step", s))
            .transpose()?;
        spec.pace = Pace::Open { rates, step };
    }
    spec.request_timeout = duration("timeout", &args.timeout)?;
    spec.method = args.method.to_ascii_uppercase().parse().map_err(|_| {
        LabError::spec("method", format!("`{}` is not an HTTP method", args.method))
    })?;
    spec.paths.clone_from(&args.path);
    spec.progress = args.progress || std::io::stderr().is_terminal();
    Ok(spec)
}

/// A duration flag: seconds (`10`, `0.5`) or a number with a unit (`500ms`, `10s`, `2m`).
/// Out of range (negative, above an hour) is refused here, naming the flag; zero is left to
/// the spec's own check.
fn duration(field: &'static str, text: &str) -> Result<Duration, LabError> {
    let trimmed = text.trim();
    let (number, scale) = if let Some(n) = trimmed.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = trimmed.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = trimmed.strip_suffix('m') {
        (n, 60.0)
    } else {
        (trimmed, 1.0)
    };
    let range = || {
        LabError::spec(
            field,
            format!(
                "expected more than 0 s and at most {} s, got `{text}`",
                MAX_DURATION.as_secs()
            ),
        )
    };
    let secs = number.trim().parse::<f64>().map_err(|_| {
        LabError::spec(
            field,
            format!("`{text}` is not a duration (seconds, or 500ms, 10s, 2m)"),
        )
    })? * scale;
    if !(0.0..=MAX_DURATION.as_secs_f64()).contains(&secs) {
        return Err(range());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| range())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn bench(args: &[&str]) -> BenchArgs {
        let cli = Cli::try_parse_from(
            ["strata", "bench", "--url", "http://127.0.0.1:1/x"]
                .iter()
                .chain(args),
        )
        .unwrap();
        match cli.command {
            Command::Bench(args) => args,
            other => panic!("{other:?}"),
        }
    }

    fn error(args: &[&str]) -> String {
        spec(&bench(args)).unwrap_err().to_string()
    }

    #[test]
    fn every_run_is_bounded_in_time() {
        assert_eq!(spec(&bench(&[])).unwrap().duration, DEFAULT_DURATION);
        let by_count = spec(&bench(&["-n", "100"])).unwrap();
        assert_eq!(
            (by_count.requests, by_count.duration),
            (Some(100), REQUESTS_TIME_CAP)
        );
        assert_eq!(
            spec(&bench(&["-d", "0.5"])).unwrap().duration,
            Duration::from_millis(500)
        );
        assert_eq!(
            spec(&bench(&["-d", "250ms"])).unwrap().duration,
            Duration::from_millis(250)
        );
        assert_eq!(
            spec(&bench(&["-d", "2m"])).unwrap().duration,
            Duration::from_secs(120)
        );
    }

    #[test]
    fn flags_reach_the_spec() {
        let built = spec(&bench(&[
            "-c", "3", "--path", "/a", "--path", "/b?x=1", "--method", "head",
        ]))
        .unwrap();
        assert_eq!(built.concurrency, 3);
        assert_eq!(built.paths, ["/a", "/b?x=1"]);
        assert_eq!(built.method.as_str(), "HEAD");
        assert_eq!(built.pace, Pace::Closed);
        let open = spec(&bench(&["--rate", "1000,2000", "--step", "10s"])).unwrap();
        assert_eq!(
            open.pace,
            Pace::Open {
                rates: vec![1000.0, 2000.0],
                step: Some(Duration::from_secs(10))
            }
        );
        assert_eq!(open.run_time(), Duration::from_secs(20));
        let shop = spec(&bench(&["--scenario", "shop", "--users", "5"])).unwrap();
        assert_eq!((shop.scenario, shop.users), (strata_lab::Scenario::Shop, 5));
    }

    #[test]
    fn nonsense_gets_a_message_naming_the_flag() {
        for (args, needle) in [
            (
                &["-d", "-1"][..],
                "duration: expected more than 0 s and at most 3600 s, got `-1`",
            ),
            (&["-d", "soon"], "duration: `soon` is not a duration"),
            (&["-d", "2h"], "duration: `2h` is not a duration"),
            (&["--rate", "fast"], "rate: `fast` is not a number"),
            (
                &["--step", "-5s", "--rate", "1"],
                "step: expected more than 0 s",
            ),
            (&["--timeout", "-1"], "timeout: expected more than 0 s"),
            (&["--scenario", "nope"], "unknown scenario `nope`"),
        ] {
            let message = error(args);
            assert!(message.contains(needle), "{args:?}: {message}");
        }
    }
}
