//! Checking a scrape of the status listener's `/metrics`.

/// The value of the sample whose name and labels are exactly `series` (`name{a="b",…}`).
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// `promtool check metrics` on a scrape: required when `GATEHOUSE_TEST_PROMTOOL` names it (CI), else used when
/// `promtool` is on the PATH, else skipped with a line saying so.
pub fn promtool_check(text: &str) {
    let promtool = match std::env::var("GATEHOUSE_TEST_PROMTOOL") {
        Ok(path) => path,
        Err(_) => match which("promtool") {
            Some(path) => path,
            None => {
                println!("promtool check: SKIPPED (promtool not installed; set GATEHOUSE_TEST_PROMTOOL)");
                return;
            }
        },
    };
    use std::io::Write;
    let mut child = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {promtool}: {e}"));
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let problems = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Exit 3 is lint advice only (the text parsed). Kong's names must stay Kong's even where promtool's naming
    // advice dislikes them (`_ms`, a counter without `_total`, gauges with it); any other problem, or a parse
    // error (exit 1), fails.
    const KONGS_NAMES: &[&str] = &[
        "kong_kong_latency_ms metric names should not contain abbreviated units",
        "kong_upstream_latency_ms metric names should not contain abbreviated units",
        "kong_request_latency_ms metric names should not contain abbreviated units",
        "kong_bandwidth_bytes counter metrics should have \"_total\" suffix",
        "kong_nginx_connections_total non-counter metrics should not have \"_total\" suffix",
        "kong_nginx_requests_total non-counter metrics should not have \"_total\" suffix",
    ];
    let kong_names_only = problems.lines().all(|l| l.is_empty() || KONGS_NAMES.contains(&l));
    assert!(
        out.status.success() || (out.status.code() == Some(3) && kong_names_only),
        "promtool check metrics failed ({:?}):\n{problems}\n{text}",
        out.status.code()
    );
    println!("promtool check metrics: passed ({promtool})");
}

fn which(name: &str) -> Option<String> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| format!("{dir}/{name}"))
        .find(|path| std::path::Path::new(path).is_file())
}
