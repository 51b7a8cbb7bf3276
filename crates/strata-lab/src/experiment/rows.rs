//! The claims table: one row per claim, the figures each design measured, and a verdict with
//! its reason, both computed from the figures.

use super::Mode;
use super::phases::{EventRun, Measured, StartupPoint, Steady};
use super::report::{Figure, Row, Verdict};

/// How much larger one design's figure must be than the other's to count as larger: the
/// machine is noisy, and a 10 % difference in one run is not a finding.
const MARGIN: f64 = 1.1;
/// How much longer a start-up with the most carts must take than with none to count as
/// growing with the data.
const GROWTH: f64 = 1.5;

fn fig(name: &str, value: f64, unit: &str) -> Figure {
    Figure {
        name: name.to_owned(),
        value,
        unit: unit.to_owned(),
    }
}

fn startup_of(m: &Measured, mode: Mode) -> Vec<&StartupPoint> {
    m.startup.iter().filter(|p| p.mode == mode).collect()
}

fn steady_of(m: &Measured, mode: Mode) -> Option<&Steady> {
    m.steady.iter().find(|s| s.mode == mode)
}

fn event_of<'a>(m: &'a Measured, mode: Mode, event: &str) -> Option<&'a EventRun> {
    m.events.iter().find(|e| e.mode == mode && e.event == event)
}

/// Every row, in the claims table's order.
pub(crate) fn rows(m: &Measured) -> Vec<Row> {
    vec![
        startup(m),
        latency(m),
        resources(m),
        scale(m, "scale_out"),
        scale(m, "scale_in"),
        recovery(m),
    ]
}

fn startup(m: &Measured) -> Row {
    let figures = |mode| {
        startup_of(m, mode)
            .iter()
            .map(|p| fig(&format!("{} carts", p.carts), p.ready_ms / 1000.0, "s"))
            .collect::<Vec<_>>()
    };
    let (local, shared) = (startup_of(m, Mode::Local), startup_of(m, Mode::Shared));
    let ends = |points: &[&StartupPoint]| {
        (
            points.first().map_or(0.0, |p| p.ready_ms),
            points.last().map_or(0.0, |p| p.ready_ms),
            points.last().map_or(0, |p| p.carts),
        )
    };
    let (l0, ln, n) = ends(&local);
    let (s0, sn, _) = ends(&shared);
    let grows = ln > l0 * GROWTH;
    let slower = ln > sn * MARGIN;
    let (verdict, why) = if grows && slower {
        (
            Verdict::Holds,
            format!(
                "stateful start-up grows with the carts it loads ({:.2} s with 0, {:.2} s with \
                 {n}); stateless stays at {:.2}–{:.2} s whatever the store holds",
                l0 / 1000.0,
                ln / 1000.0,
                s0.min(sn) / 1000.0,
                s0.max(sn) / 1000.0
            ),
        )
    } else if grows {
        (
            Verdict::Depends,
            format!(
                "stateful start-up grows with carts ({:.2} → {:.2} s at {n}) but is not yet \
                 slower than stateless ({:.2} s) at this count",
                l0 / 1000.0,
                ln / 1000.0,
                sn / 1000.0
            ),
        )
    } else {
        (
            Verdict::DoesNotHold,
            format!(
                "stateful start-up does not grow with carts here ({:.2} s with 0, {:.2} s with \
                 {n})",
                l0 / 1000.0,
                ln / 1000.0
            ),
        )
    };
    Row {
        key: "startup".into(),
        claim: "Start-up time: stateful is slow (it loads its data), stateless takes seconds"
            .into(),
        measure: "from spawn to the first 2xx of /readyz, one api process holding N carts".into(),
        stateful: figures(Mode::Local),
        stateless: figures(Mode::Shared),
        verdict,
        why,
    }
}

fn latency(m: &Measured) -> Row {
    let figures = |mode| {
        let mut out = Vec::new();
        if let Some(s) = steady_of(m, mode) {
            for op in ["read", "update"] {
                if let Some(o) = s.load.operations.get(op) {
                    out.push(fig(&format!("{op} p50"), o.latency_ms.p50, "ms"));
                    out.push(fig(&format!("{op} p99"), o.latency_ms.p99, "ms"));
                    out.push(fig(&format!("{op} p99.9"), o.latency_ms.p999, "ms"));
                }
            }
        }
        out
    };
    let p = |mode, q: fn(&crate::Latency) -> f64| {
        steady_of(m, mode).map_or(0.0, |s| q(&s.load.latency_ms))
    };
    let (l50, s50) = (p(Mode::Local, |l| l.p50), p(Mode::Shared, |l| l.p50));
    let (l99, s99) = (p(Mode::Local, |l| l.p99), p(Mode::Shared, |l| l.p99));
    let (verdict, why) = if l50 * MARGIN < s50 && l99 <= s99 * MARGIN {
        (
            Verdict::Holds,
            format!(
                "stateful answers faster: p50 {l50:.2} ms against {s50:.2} ms, p99 {l99:.2} ms \
                 against {s99:.2} ms (no store round trip)"
            ),
        )
    } else if l50 * MARGIN < s50 || l99 * MARGIN < s99 {
        (
            Verdict::Depends,
            format!(
                "stateful is faster on one percentile only: p50 {l50:.2} against {s50:.2} ms, \
                 p99 {l99:.2} against {s99:.2} ms"
            ),
        )
    } else {
        (
            Verdict::DoesNotHold,
            format!(
                "stateful is not faster here: p50 {l50:.2} against {s50:.2} ms, p99 {l99:.2} \
                 against {s99:.2} ms"
            ),
        )
    };
    Row {
        key: "latency".into(),
        claim: "Per-request latency: stateful is lower (the data is local)".into(),
        measure: "cart read and update through the gateway, open loop at a fixed rate, from \
                  each request's intended send time"
            .into(),
        stateful: figures(Mode::Local),
        stateless: figures(Mode::Shared),
        verdict,
        why,
    }
}

fn resources(m: &Measured) -> Row {
    let biggest = |mode| startup_of(m, mode).last().map(|p| (p.carts, p.rss_mib));
    let figures = |mode| {
        let mut out = Vec::new();
        if let Some(s) = steady_of(m, mode) {
            out.push(fig("CPU per 1,000 requests", s.cpu_ms_per_1000, "ms"));
            out.push(fig("RSS under load", s.rss_load_mib, "MiB"));
            out.push(fig("CPU at idle", s.cpu_idle_ms_per_sec, "ms/s"));
            out.push(fig("RSS at idle", s.rss_idle_mib, "MiB"));
        }
        if let Some((carts, rss)) = biggest(mode) {
            out.push(fig(&format!("RSS at idle, {carts} carts"), rss, "MiB"));
        }
        out
    };
    let (l_rss, s_rss) = (
        biggest(Mode::Local).map_or(0.0, |b| b.1),
        biggest(Mode::Shared).map_or(0.0, |b| b.1),
    );
    let cpu = |mode| steady_of(m, mode).map_or(0.0, |s| s.cpu_ms_per_1000);
    let (l_cpu, s_cpu) = (cpu(Mode::Local), cpu(Mode::Shared));
    let carts = biggest(Mode::Local).map_or(0, |b| b.0);
    let (verdict, why) = if l_rss > s_rss * MARGIN {
        (
            Verdict::Holds,
            format!(
                "stateful reserves memory for the data it holds: {l_rss:.0} MiB at idle with \
                 {carts} carts against {s_rss:.0} MiB; CPU per 1,000 requests {l_cpu:.0} against \
                 {s_cpu:.0} ms"
            ),
        )
    } else if l_cpu * MARGIN < s_cpu {
        (
            Verdict::Depends,
            format!(
                "memory alike ({l_rss:.0} against {s_rss:.0} MiB with {carts} carts), but \
                 stateful spends less CPU per 1,000 requests ({l_cpu:.0} against {s_cpu:.0} ms)"
            ),
        )
    } else {
        (
            Verdict::DoesNotHold,
            format!(
                "no capacity held back: {l_rss:.0} against {s_rss:.0} MiB with {carts} carts, CPU \
                 {l_cpu:.0} against {s_cpu:.0} ms per 1,000 requests"
            ),
        )
    };
    Row {
        key: "resources".into(),
        claim: "Resource use: stateful has lower utilisation (capacity reserved for its data)"
            .into(),
        measure: "CPU time (/proc/PID/stat) and RSS of the api processes: per 1,000 requests \
                  of the steady run, and at idle"
            .into(),
        stateful: figures(Mode::Local),
        stateless: figures(Mode::Shared),
        verdict,
        why,
    }
}

fn event_figures(e: Option<&EventRun>) -> Vec<Figure> {
    let Some(e) = e else {
        return Vec::new();
    };
    let mut out = vec![fig("carts moved", e.carts_moved, "")];
    let settled = e.settled_secs.unwrap_or(f64::NAN);
    match e.event.as_str() {
        "scale_out" => out.push(fig("time to take its share", settled, "s")),
        "scale_in" => {
            out.push(fig("time until its share moved", settled, "s"));
            if let Some(exit) = e.exit_secs {
                out.push(fig("time until it exited", exit, "s"));
            }
        }
        _ => {}
    }
    #[allow(clippy::cast_precision_loss)]
    let failed = e.failed as f64;
    out.push(fig("requests failed", failed, ""));
    out
}

fn scale(m: &Measured, event: &str) -> Row {
    let (local, shared) = (
        event_of(m, Mode::Local, event),
        event_of(m, Mode::Shared, event),
    );
    let out = event == "scale_out";
    let (claim, measure) = if out {
        (
            "Scaling out: stateful needs sharding (its data must be spread again)",
            "2 → 3 api instances under load: carts handed over, time until the new instance \
             takes its share, requests failed meanwhile",
        )
    } else {
        (
            "Scaling in: stateful must migrate its data first",
            "3 → 2 api instances under load (drain, remove, SIGTERM): carts handed over, time \
             until the others take its share, requests failed meanwhile",
        )
    };
    let (verdict, why) = match (local, shared) {
        (Some(l), Some(s)) => {
            let l_time = l.settled_secs.unwrap_or(f64::INFINITY);
            let s_time = s.settled_secs.unwrap_or(f64::INFINITY);
            if l.carts_moved > 0.0 && s.carts_moved == 0.0 {
                (
                    Verdict::Holds,
                    format!(
                        "stateful moved {:.0} carts ({} requests failed), stateless moved none \
                         ({} failed); {:.2} s against {:.2} s to settle",
                        l.carts_moved, l.failed, s.failed, l_time, s_time
                    ),
                )
            } else if l_time > s_time * MARGIN || l.failed > s.failed {
                (
                    Verdict::Depends,
                    format!(
                        "no carts moved, yet stateful took {l_time:.2} s against {s_time:.2} s \
                         and failed {} requests against {}",
                        l.failed, s.failed
                    ),
                )
            } else {
                (
                    Verdict::DoesNotHold,
                    format!(
                        "stateful moved no carts and settled as fast ({l_time:.2} s against \
                         {s_time:.2} s)"
                    ),
                )
            }
        }
        _ => (Verdict::Depends, "not measured for both designs".to_owned()),
    };
    Row {
        key: event.to_owned(),
        claim: claim.into(),
        measure: measure.into(),
        stateful: event_figures(local),
        stateless: event_figures(shared),
        verdict,
        why,
    }
}

fn recovery(m: &Measured) -> Row {
    let (local, shared) = (
        event_of(m, Mode::Local, "kill"),
        event_of(m, Mode::Shared, "kill"),
    );
    #[allow(clippy::cast_precision_loss)]
    let figures = |e: Option<&EventRun>| {
        e.map(|e| {
            vec![
                fig("requests failed", e.failed as f64, ""),
                fig("carts lost", e.carts_lost as f64, ""),
                fig(
                    "time until every cart is served",
                    e.settled_secs.unwrap_or(f64::NAN),
                    "s",
                ),
                fig("restart to ready", e.restart_secs.unwrap_or(f64::NAN), "s"),
            ]
        })
        .unwrap_or_default()
    };
    let t = |e: Option<&EventRun>| e.and_then(|e| e.settled_secs).unwrap_or(f64::INFINITY);
    let (lt, st) = (t(local), t(shared));
    let growth = startup_of(m, Mode::Local);
    let per_carts = match (growth.first(), growth.last()) {
        (Some(a), Some(b)) if b.carts > a.carts => {
            #[allow(clippy::cast_precision_loss)]
            let per_million = (b.ready_ms - a.ready_ms) / (b.carts - a.carts) as f64 * 1e6;
            format!(
                "; its start-up adds {:.1} s per million carts",
                per_million / 1000.0
            )
        }
        _ => String::new(),
    };
    let (verdict, why) = if lt > st * 2.0 {
        (
            Verdict::Holds,
            format!(
                "every cart served again after {lt:.2} s stateful (its instance replays its log) \
                 against {st:.2} s stateless{per_carts}"
            ),
        )
    } else if lt > st * MARGIN {
        (
            Verdict::Depends,
            format!(
                "stateful slower to serve every cart again ({lt:.2} s against {st:.2} s), but \
                 with this little data not by minutes{per_carts}"
            ),
        )
    } else {
        (
            Verdict::DoesNotHold,
            format!("stateful recovered as fast: {lt:.2} s against {st:.2} s{per_carts}"),
        )
    };
    Row {
        key: "recovery".into(),
        claim: "Recovery after a failure: stateful takes minutes to hours (depending on data), \
                stateless seconds"
            .into(),
        measure: "kill -9 of one api instance under load, restarted at once as a supervisor \
                  would: requests failed, carts lost, time until every cart is served with its \
                  line again"
            .into(),
        stateful: figures(local),
        stateless: figures(shared),
        verdict,
        why,
    }
}
