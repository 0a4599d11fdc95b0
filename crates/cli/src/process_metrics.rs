//! Prometheus's standard `process_*` series for this process, read from `/proc` at scrape time (the names and
//! units of the official client libraries' process collector, so existing dashboards read them).
//!
//! Off Linux, or when `/proc` is not mounted, the series are left out rather than reported as zeros.

use gatehouse_gateway::metrics::{gauge, header};

/// The fields of `/proc/self/stat` this module reads.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat {
    /// User and system CPU time, in clock ticks.
    cpu_ticks: u64,
    /// Start time after boot, in clock ticks.
    start_ticks: u64,
    virtual_bytes: u64,
    resident_pages: u64,
}

/// Parses `/proc/self/stat`. The command name (field 2) is in parentheses and may hold spaces and parentheses
/// itself, so fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // Field 3 (the state) is the first after the name; `field(n)` is proc(5)'s field n.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        cpu_ticks: field(14)? + field(15)?,
        start_ticks: field(22)?,
        virtual_bytes: field(23)?,
        resident_pages: field(24)?,
    })
}

/// `btime` of `/proc/stat`: the boot time in Unix seconds.
fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

pub fn render(out: &mut String) {
    let Some(stat) = std::fs::read_to_string("/proc/self/stat").ok().and_then(|t| parse_stat(&t)) else { return };
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    header(out, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter");
    out.push_str(&format!("process_cpu_seconds_total {}\n", stat.cpu_ticks as f64 / ticks));
    let resident = stat.resident_pages.saturating_mul(rustix::param::page_size() as u64);
    gauge(out, "process_resident_memory_bytes", "Resident memory size in bytes.", &[(&[], resident as f64)]);
    gauge(out, "process_virtual_memory_bytes", "Virtual memory size in bytes.", &[(&[], stat.virtual_bytes as f64)]);
    if let Some(boot) = std::fs::read_to_string("/proc/stat").ok().and_then(|t| parse_boot_time(&t)) {
        let started = boot as f64 + stat.start_ticks as f64 / ticks;
        gauge(
            out,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            &[(&[], started)],
        );
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        // The directory handle reading the listing is one of the entries.
        let open = entries.count().saturating_sub(1);
        gauge(out, "process_open_fds", "Number of open file descriptors.", &[(&[], open as f64)]);
    }
    if let Some(max) = rustix::process::getrlimit(rustix::process::Resource::Nofile).current {
        gauge(out, "process_max_fds", "Maximum number of open file descriptors.", &[(&[], max as f64)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        // A command name with a space and a parenthesis, as `prctl` allows.
        let text = "4242 (gate house) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 9 0 123456 \
                    987654321 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(text),
            Some(Stat { cpu_ticks: 300, start_ticks: 123456, virtual_bytes: 987654321, resident_pages: 2048 })
        );
        assert_eq!(parse_stat("4242 (no closing"), None);
    }

    #[test]
    fn boot_time_is_read_from_btime() {
        assert_eq!(parse_boot_time("cpu  1 2 3\nbtime 1765000000\nprocesses 9\n"), Some(1765000000));
        assert_eq!(parse_boot_time("cpu  1 2 3\n"), None);
    }

    #[test]
    fn this_process_reports_every_series() {
        let mut out = String::new();
        render(&mut out);
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_virtual_memory_bytes ",
            "process_start_time_seconds ",
            "process_open_fds ",
            "process_max_fds ",
        ] {
            let value: f64 = out
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("{name} missing from {out}"))
                .parse()
                .unwrap();
            // A test process may not have used a whole clock tick of CPU yet.
            let least = if name.starts_with("process_cpu") { 0.0 } else { 1.0 };
            assert!(value >= least, "{name}{value}");
        }
    }
}
