//! `strata lab --quick`: the whole stateful-vs-stateless experiment as CI runs it (a debug
//! build, no external service), within three minutes, with figures for both designs in every
//! row of the report.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Process, TempDir, strata};

/// CI's bound for the quick run.
const QUICK_BOUND: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quick_lab_reports_every_claim_for_both_designs() {
    let out = TempDir::new("lab");
    let report_dir = out.path().join("report");
    let started = Instant::now();
    let mut lab = Process::spawn(strata(&[
        "lab",
        "--quick",
        "--out",
        report_dir.to_str().unwrap(),
    ]));
    let status = lab
        .wait_exit(QUICK_BOUND + Duration::from_secs(60))
        .await
        .expect("strata lab --quick ends");
    let took = started.elapsed();
    assert!(
        status.success(),
        "strata lab failed: {status}\nstdout:\n{}\nstderr:\n{}",
        lab.stdout(),
        lab.stderr()
    );
    eprintln!("strata lab --quick took {took:?}");
    assert!(took < QUICK_BOUND, "strata lab --quick took {took:?}");

    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(report_dir.join("report.json")).expect("report.json"),
    )
    .expect("report.json is JSON");
    let rows = json["rows"].as_array().expect("rows");
    let keys: Vec<&str> = rows.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "startup",
            "latency",
            "resources",
            "scale_out",
            "scale_in",
            "recovery"
        ]
    );
    for row in rows {
        for design in ["stateful", "stateless"] {
            let figures = row[design].as_array().expect("figures");
            assert!(!figures.is_empty(), "{} has no {design} figure", row["key"]);
            for figure in figures {
                assert!(
                    figure["value"].is_number(),
                    "{} {design}: {figure} is not a number",
                    row["key"]
                );
            }
        }
        let verdict = row["verdict"].as_str().unwrap();
        assert!(
            ["holds", "does not hold", "depends"].contains(&verdict),
            "{verdict}"
        );
        assert!(!row["why"].as_str().unwrap().is_empty());
    }
    assert_eq!(json["plan"]["quick"], true);
    assert_eq!(json["build"], "debug");

    let markdown = std::fs::read_to_string(report_dir.join("report.md")).expect("report.md");
    assert!(
        markdown.contains("| claim | stateful (local carts) measured |"),
        "{markdown}"
    );
    assert!(markdown.contains("![Latency around kill -9"), "{markdown}");
    let html = std::fs::read_to_string(report_dir.join("report.html")).expect("report.html");
    assert!(html.contains("<table>") && html.matches("<svg").count() >= 4);
    for chart in ["startup.svg", "kill.svg", "scale_out.svg", "scale_in.svg"] {
        let svg = std::fs::read_to_string(report_dir.join(chart)).expect(chart);
        assert!(svg.starts_with("<svg"), "{chart}");
    }
    assert!(lab.stdout().contains("| claim |"), "the table is printed");
}

#[tokio::test]
async fn bad_lab_flags_are_refused_plainly() {
    let mut lab = Process::spawn(strata(&["lab", "--quick", "--rate", "5"]));
    let status = lab.wait_exit(Duration::from_secs(10)).await.expect("exits");
    assert_eq!(status.code(), Some(2), "{}", lab.stderr());
    assert!(lab.stderr().contains("--rate"), "{}", lab.stderr());

    let dir = TempDir::new("lab-file");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let mut lab = Process::spawn(strata(&["lab", "--out", file.to_str().unwrap()]));
    let status = lab.wait_exit(Duration::from_secs(10)).await.expect("exits");
    assert_eq!(status.code(), Some(1));
    assert!(
        lab.stderr().contains("is a file, not a directory"),
        "{}",
        lab.stderr()
    );
}
