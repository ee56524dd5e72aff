//! One measurement in a fresh child process: this binary re-executed with `--child`.
//!
//! A user's program runs one multiplexer in a process of its own. Measured in one process
//! after the others, an implementation inherits their heap, their faulted-in pages and
//! picomux's smolscale threads (which keep running once started), which is not what a user
//! sees; see docs/performance.md ("one process or one per measurement") for the figures.

use std::process::Command;
use std::sync::LazyLock;

use serde_json::json;

use crate::link::LinkParams;
use crate::pattern::PATTERN;
use crate::peers::{Impl, Route};
use crate::runtime::start_executor;
use crate::scenarios::{self, peak_rss_mb, proc_status_kb, MResult, Outcome};
use crate::Opts;

const RESULT_PREFIX: &str = "CHILD_RESULT ";

/// Runs `scenario` on `imp` in a child process and returns what it measured. The child
/// inherits the environment, so it reads the same options.
pub(crate) fn run_in_child(
    scenario: u8,
    imp: Impl,
    route: Route,
    link: Option<LinkParams>,
) -> MResult {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let out = Command::new(exe)
        .arg("--child")
        .arg(scenario.to_string())
        .arg(imp.key())
        .env("BENCH_CHILD_ROUTE", json!(route).to_string())
        .env("BENCH_CHILD_LINK", json!(link).to_string())
        .output()
        .map_err(|e| format!("spawning the child: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix(RESULT_PREFIX));
    let Some(line) = line.filter(|_| out.status.success()) else {
        return Err(format!(
            "child for {} failed ({}): {}",
            imp.key(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    };
    let result: MResult =
        serde_json::from_str(line).map_err(|e| format!("child output {line:?}: {e}"))?;
    result
}

/// The child's side: `args` are the scenario number and the implementation's key.
pub(crate) fn child_main(args: &[String]) -> ! {
    let parsed = match args {
        [scenario, imp] => scenario.parse::<u8>().ok().zip(Impl::parse(imp)),
        _ => None,
    };
    let Some((scenario, imp)) = parsed else {
        eprintln!("--child wants a scenario number and an implementation, got {args:?}");
        std::process::exit(2)
    };
    let route: Route = env_json("BENCH_CHILD_ROUTE").unwrap_or_else(Route::loopback);
    let link: Option<LinkParams> = env_json("BENCH_CHILD_LINK").flatten();
    let opts = Opts::from_env();
    start_executor();
    LazyLock::force(&PATTERN);
    let baseline_kb = proc_status_kb("VmRSS:").unwrap_or(f64::NAN);
    if opts.child_warmup && !scenarios::needs_own_process(scenario) {
        // Only to measure what a warm-up changes (docs/performance.md): its figure is dropped,
        // its failures are not.
        if let Err(e) = scenarios::run(scenario, imp, &opts, route, link) {
            emit(Err(format!("warm-up in the child: {e}")));
        }
    }
    let mut result = scenarios::run(scenario, imp, &opts, route, link);
    if let Ok(out) = &mut result {
        out.values.insert("child_peak_rss_mb".into(), peak_rss_mb());
        out.extra.insert(
            "child_baseline_rss_mb".into(),
            json!(baseline_kb * 1024.0 / 1e6),
        );
    }
    emit(result)
}

fn env_json<T: serde::de::DeserializeOwned>(name: &str) -> Option<T> {
    serde_json::from_str(&std::env::var(name).ok()?).ok()
}

fn emit(result: Result<Outcome, String>) -> ! {
    println!("{RESULT_PREFIX}{}", json!(result));
    std::process::exit(0)
}
