//! Metric families in the Prometheus text exposition format, recorded without locks and rendered at scrape time.
//!
//! A family ([`CounterVec`], [`HistogramVec`]) keeps its series in a lock-free map keyed by label values: a
//! recording hashes a few short strings, finds the series and adds to its atomics; only the first request with new
//! label values allocates. A hot path whose labels are known ahead (the `prometheus` plugin, per route) resolves a
//! series once into a handle ([`Counter`], [`HistogramSeries`]) and records with atomics alone. Each family holds at most [`MAX_SERIES`] series, so labels built from request data can
//! never grow memory without bound: past it new label sets are dropped (and counted in `dropped`).
//!
//! Families render themselves (`# HELP`, `# TYPE`, then one line per series, sorted so scrapes are stable), from
//! label text each series rendered once when it was made, into the caller's one buffer. The
//! status listener concatenates whatever families the node has: Kong's (the gateway's `prometheus` plugin) and
//! Gatehouse's own ([`gatehouse::GatehouseMetrics`]).
//!
//! The families live in `model`, the one crate every layer depends on, so the store, the issuer, the control
//! plane and the gateway all record into the same kinds. A family whose label values are a fixed list known when
//! the code is written ([`FixedCounters`]) skips the map altogether: one atomic add, no hashing.

pub mod gatehouse;

use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The most series one family keeps. Kong's labels are bounded by configuration (services, routes, status codes,
/// and consumers only with `per_consumer`); this is the backstop.
pub const MAX_SERIES: usize = 100_000;

type Hasher_ = foldhash::fast::RandomState;

/// A series' label values, as stored.
#[derive(Debug, PartialEq, Eq)]
struct Labels(Box<[Box<str>]>);

impl Hash for Labels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_values(self.0.iter().map(|v| &**v), state);
    }
}

/// Label values as a request has them (borrowed), to look a series up without allocating.
#[derive(Debug)]
struct LabelsRef<'a>(&'a [&'a str]);

impl Hash for LabelsRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_values(self.0.iter().copied(), state);
    }
}

impl papaya::Equivalent<Labels> for LabelsRef<'_> {
    fn equivalent(&self, key: &Labels) -> bool {
        self.0.len() == key.0.len() && self.0.iter().zip(key.0.iter()).all(|(a, b)| *a == &**b)
    }
}

/// Both forms hash the same: each value with its length, so `["ab", "c"]` and `["a", "bc"]` differ.
fn hash_values<'a, H: Hasher>(values: impl Iterator<Item = &'a str>, state: &mut H) {
    for value in values {
        state.write_usize(value.len());
        state.write(value.as_bytes());
    }
}

/// One series: its label pairs rendered once, when it is made (`a="x",b="y"`, escaped, without the braces), and
/// its value. A scrape copies the rendered text instead of escaping and formatting every label again.
#[derive(Debug)]
struct Entry<V> {
    rendered: Box<str>,
    value: V,
}

/// A family's series map and its bound. Entries are reference-counted so that a caller can keep a series'
/// handle ([`Counter`], [`HistogramSeries`]) and record into it without a lookup; series are never removed, so a
/// handle and the map always point at the same values.
#[derive(Debug)]
struct Series<V> {
    names: &'static [&'static str],
    map: papaya::HashMap<Labels, Arc<Entry<V>>, Hasher_>,
    dropped: AtomicU64,
}

impl<V> Series<V> {
    fn new(names: &'static [&'static str]) -> Self {
        Self { names, map: papaya::HashMap::with_hasher(Hasher_::default()), dropped: AtomicU64::new(0) }
    }

    /// Runs `f` on the series for `values`, made with `make` when missing; nothing when the family is full.
    fn with(&self, values: &[&str], make: impl FnOnce() -> V, f: impl FnOnce(&V)) {
        let map = self.map.pin();
        if let Some(series) = map.get(&LabelsRef(values)) {
            f(&series.value);
        } else if let Some(series) = self.insert(&map, values, make) {
            f(&series.value);
        }
    }

    /// The series for `values`, made when missing; `None` (counted as dropped) when the family is full.
    fn entry(&self, values: &[&str], make: impl FnOnce() -> V) -> Option<Arc<Entry<V>>> {
        let map = self.map.pin();
        match map.get(&LabelsRef(values)) {
            Some(series) => Some(series.clone()),
            None => self.insert(&map, values, make).cloned(),
        }
    }

    fn insert<'g>(
        &self,
        map: &'g papaya::HashMapRef<'_, Labels, Arc<Entry<V>>, Hasher_, impl papaya::Guard>,
        values: &[&str],
        make: impl FnOnce() -> V,
    ) -> Option<&'g Arc<Entry<V>>> {
        if map.len() >= MAX_SERIES {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let key = Labels(values.iter().map(|v| Box::<str>::from(*v)).collect());
        let make = || Arc::new(Entry { rendered: label_pairs(self.names, values).into_boxed_str(), value: make() });
        Some(map.get_or_insert_with(key, make))
    }

    /// Every series, sorted by its rendered labels (unique per series), for `f`, within one pin of the map.
    fn each_sorted(&self, mut f: impl FnMut(&str, &V)) {
        let map = self.map.pin();
        let mut rows: Vec<&Entry<V>> = map.values().map(|e| &**e).collect();
        rows.sort_unstable_by(|a, b| a.rendered.cmp(&b.rendered));
        for row in rows {
            f(&row.rendered, &row.value);
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// `name="value",…` with the exposition format's escapes.
fn label_pairs(names: &[&str], values: &[&str]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in names.iter().zip(values.iter()).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        escape_into(value, &mut out);
        out.push('"');
    }
    out
}

/// The exposition format's label-value escapes: backslash, double quote and line feed.
pub fn escape_into(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `n` in decimal, without the formatting machinery (a scrape writes tens of thousands of them).
fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits only.
    out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or_default());
}

/// `name{labels}` (`name` alone without labels), the start of a sample line.
fn push_series(out: &mut String, name: &str, suffix: &str, labels: &str) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() {
        out.push('{');
        out.push_str(labels);
        out.push('}');
    }
}

/// `# HELP` and `# TYPE` lines.
pub fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A counter family.
#[derive(Debug)]
pub struct CounterVec {
    name: &'static str,
    help: &'static str,
    series: Series<AtomicU64>,
}

/// One series of a [`CounterVec`], resolved once: adding to it is one atomic add, no hashing.
#[derive(Debug, Clone)]
pub struct Counter(Arc<Entry<AtomicU64>>);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.value.fetch_add(n, Ordering::Relaxed);
    }
}

impl CounterVec {
    pub fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Self { name, help, series: Series::new(labels) }
    }

    /// Adds `n` to the series for `values` (one per label name, in order).
    pub fn add(&self, values: &[&str], n: u64) {
        debug_assert_eq!(values.len(), self.series.names.len(), "{}", self.name);
        self.series.with(
            values,
            || AtomicU64::new(0),
            |c| {
                c.fetch_add(n, Ordering::Relaxed);
            },
        );
    }

    /// The series for `values`, made now if missing (it renders from now on, with 0 until added to), to add to
    /// later without a lookup; `None` when the family is full.
    pub fn series(&self, values: &[&str]) -> Option<Counter> {
        debug_assert_eq!(values.len(), self.series.names.len(), "{}", self.name);
        self.series.entry(values, || AtomicU64::new(0)).map(Counter)
    }

    /// The series' value, if it exists.
    pub fn get(&self, values: &[&str]) -> Option<u64> {
        self.series.map.pin().get(&LabelsRef(values)).map(|c| c.value.load(Ordering::Relaxed))
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Label sets refused because the family was full.
    pub fn dropped(&self) -> u64 {
        self.series.dropped.load(Ordering::Relaxed)
    }

    /// The family in the exposition format; nothing while it has no series.
    pub fn render(&self, out: &mut String) {
        if self.series.len() == 0 {
            return;
        }
        header(out, self.name, self.help, "counter");
        self.series.each_sorted(|labels, count| {
            push_series(out, self.name, "", labels);
            out.push(' ');
            push_u64(out, count.load(Ordering::Relaxed));
            out.push('\n');
        });
    }
}

/// One histogram series: a count per bucket (not cumulative; summed when rendered), the count and the sum.
#[derive(Debug)]
struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    /// An `f64`'s bits, added to with a compare-and-swap loop.
    sum: AtomicU64,
}

impl Histogram {
    fn new(bounds: &[f64]) -> Self {
        Self {
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    fn observe(&self, bounds: &[f64], value: f64) {
        let bucket = bounds.iter().position(|b| value <= *b).unwrap_or(bounds.len());
        if let Some(b) = self.buckets.get(bucket) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| Some((f64::from_bits(bits) + value).to_bits()));
    }
}

/// A histogram family with fixed upper bounds (the `+Inf` bucket is implied).
#[derive(Debug)]
pub struct HistogramVec {
    name: &'static str,
    help: &'static str,
    bounds: &'static [f64],
    /// Each bucket's `le="…"` pair, formatted once.
    le: Box<[Box<str>]>,
    series: Series<Histogram>,
}

/// One series of a [`HistogramVec`], resolved once: observing is a bucket search and three atomic updates.
#[derive(Debug, Clone)]
pub struct HistogramSeries {
    bounds: &'static [f64],
    entry: Arc<Entry<Histogram>>,
}

impl HistogramSeries {
    #[inline]
    pub fn observe(&self, value: f64) {
        self.entry.value.observe(self.bounds, value);
    }
}

impl HistogramVec {
    pub fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        bounds: &'static [f64],
    ) -> Self {
        let le = bounds
            .iter()
            .map(|b| format!("le=\"{b}\""))
            .chain(std::iter::once("le=\"+Inf\"".to_owned()))
            .map(String::into_boxed_str)
            .collect();
        Self { name, help, bounds, le, series: Series::new(labels) }
    }

    pub fn observe(&self, values: &[&str], value: f64) {
        debug_assert_eq!(values.len(), self.series.names.len(), "{}", self.name);
        self.series.with(values, || Histogram::new(self.bounds), |h| h.observe(self.bounds, value));
    }

    /// The series for `values`, made now if missing (it renders from now on, empty until observed), to observe
    /// into later without a lookup; `None` when the family is full.
    pub fn series(&self, values: &[&str]) -> Option<HistogramSeries> {
        debug_assert_eq!(values.len(), self.series.names.len(), "{}", self.name);
        let entry = self.series.entry(values, || Histogram::new(self.bounds))?;
        Some(HistogramSeries { bounds: self.bounds, entry })
    }

    /// The series' observation count, if it exists.
    pub fn count(&self, values: &[&str]) -> Option<u64> {
        self.series.map.pin().get(&LabelsRef(values)).map(|h| h.value.count.load(Ordering::Relaxed))
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn render(&self, out: &mut String) {
        if self.series.len() == 0 {
            return;
        }
        header(out, self.name, self.help, "histogram");
        let name = self.name;
        self.series.each_sorted(|labels, h| {
            let mut cumulative = 0;
            for (bucket, le) in h.buckets.iter().zip(self.le.iter()) {
                cumulative += bucket.load(Ordering::Relaxed);
                out.push_str(name);
                out.push_str("_bucket{");
                out.push_str(labels);
                if !labels.is_empty() {
                    out.push(',');
                }
                out.push_str(le);
                out.push_str("} ");
                push_u64(out, cumulative);
                out.push('\n');
            }
            // The count is the `+Inf` bucket's, so the two always agree within a scrape.
            push_series(out, name, "_sum", labels);
            let _ = writeln!(out, " {}", f64::from_bits(h.sum.load(Ordering::Relaxed)));
            push_series(out, name, "_count", labels);
            out.push(' ');
            push_u64(out, cumulative);
            out.push('\n');
        });
    }
}

/// A counter family with one label whose values are fixed in the code (a cache's hit/miss, a failure's kind): a
/// series per value from the start, so recording is one atomic add by index, and every series renders, zeros too
/// (a rate over a series that appears late misses its first increments).
#[derive(Debug)]
pub struct FixedCounters {
    name: &'static str,
    help: &'static str,
    label: &'static str,
    values: &'static [&'static str],
    counts: Box<[AtomicU64]>,
}

impl FixedCounters {
    pub fn new(name: &'static str, help: &'static str, label: &'static str, values: &'static [&'static str]) -> Self {
        Self { name, help, label, values, counts: values.iter().map(|_| AtomicU64::new(0)).collect() }
    }

    /// Adds `n` to the series of `values[index]`; an index out of range is a bug, ignored in release builds.
    pub fn add(&self, index: usize, n: u64) {
        debug_assert!(index < self.counts.len(), "{}", self.name);
        if let Some(count) = self.counts.get(index) {
            count.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The series' value for the label value `value`.
    pub fn get(&self, value: &str) -> Option<u64> {
        let index = self.values.iter().position(|v| *v == value)?;
        self.counts.get(index).map(|c| c.load(Ordering::Relaxed))
    }

    pub fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "counter");
        for (value, count) in self.values.iter().zip(self.counts.iter()) {
            let _ = writeln!(out, "{}{{{}=\"{value}\"}} {}", self.name, self.label, count.load(Ordering::Relaxed));
        }
    }
}

/// A gauge with no labels or with fixed ones, rendered from a value the caller computes at scrape time.
pub fn gauge(out: &mut String, name: &str, help: &str, series: &[(&[(&str, &str)], f64)]) {
    header(out, name, help, "gauge");
    for (labels, value) in series {
        out.push_str(name);
        if !labels.is_empty() {
            out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(k);
                out.push_str("=\"");
                escape_into(v, out);
                out.push('"');
            }
            out.push('}');
        }
        let _ = writeln!(out, " {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_per_label_set_and_render_sorted_and_escaped() {
        let c = CounterVec::new("t_total", "Help.", &["a", "b"]);
        c.add(&["y", "1"], 1);
        c.add(&["x", "q\"\\\n"], 2);
        c.add(&["y", "1"], 3);
        assert_eq!(c.get(&["y", "1"]), Some(4));
        assert_eq!(c.get(&["y1", ""]), None, "label boundaries are part of the key");
        let mut out = String::new();
        c.render(&mut out);
        assert_eq!(
            out,
            "# HELP t_total Help.\n# TYPE t_total counter\nt_total{a=\"x\",b=\"q\\\"\\\\\\n\"} 2\nt_total{a=\"y\",b=\"1\"} 4\n"
        );
    }

    #[test]
    fn histograms_are_cumulative_with_an_inf_bucket() {
        static BOUNDS: [f64; 3] = [1.0, 5.0, 10.0];
        let h = HistogramVec::new("t_ms", "Help.", &["r"], &BOUNDS);
        for v in [0.5, 1.0, 7.0, 11.0] {
            h.observe(&["r1"], v);
        }
        let mut out = String::new();
        h.render(&mut out);
        assert_eq!(
            out,
            "# HELP t_ms Help.\n# TYPE t_ms histogram\nt_ms_bucket{r=\"r1\",le=\"1\"} 2\nt_ms_bucket{r=\"r1\",le=\"5\"} 2\n\
             t_ms_bucket{r=\"r1\",le=\"10\"} 3\nt_ms_bucket{r=\"r1\",le=\"+Inf\"} 4\nt_ms_sum{r=\"r1\"} 19.5\n\
             t_ms_count{r=\"r1\"} 4\n"
        );
        assert_eq!(h.count(&["r1"]), Some(4));
    }

    #[test]
    fn a_full_family_drops_new_label_sets_and_keeps_counting_old_ones() {
        let c = CounterVec::new("t_total", "Help.", &["a"]);
        for i in 0..MAX_SERIES {
            c.add(&[&i.to_string()], 1);
        }
        c.add(&["new"], 1);
        c.add(&["0"], 1);
        assert_eq!((c.len(), c.dropped(), c.get(&["new"]), c.get(&["0"])), (MAX_SERIES, 1, None, Some(2)));
    }

    #[test]
    fn handles_record_into_the_same_series_as_lookups() {
        static BOUNDS: [f64; 2] = [1.0, 5.0];
        let c = CounterVec::new("t_total", "Help.", &["a", "b"]);
        let h = HistogramVec::new("t_ms", "Help.", &["r"], &BOUNDS);
        c.add(&["x", "1"], 2);
        let counter = c.series(&["x", "1"]).unwrap();
        counter.add(3);
        let fresh = c.series(&["y", "2"]).unwrap();
        assert_eq!((c.get(&["x", "1"]), c.get(&["y", "2"])), (Some(5), Some(0)), "a new handle's series exists");
        fresh.add(1);
        c.add(&["y", "2"], 1);
        assert_eq!(c.get(&["y", "2"]), Some(2));
        let series = h.series(&["r1"]).unwrap();
        series.observe(0.5);
        series.observe(7.0);
        h.observe(&["r1"], 2.0);
        let mut out = String::new();
        c.render(&mut out);
        h.render(&mut out);
        assert_eq!(
            out,
            "# HELP t_total Help.\n# TYPE t_total counter\nt_total{a=\"x\",b=\"1\"} 5\nt_total{a=\"y\",b=\"2\"} 2\n\
             # HELP t_ms Help.\n# TYPE t_ms histogram\nt_ms_bucket{r=\"r1\",le=\"1\"} 1\nt_ms_bucket{r=\"r1\",le=\"5\"} 2\n\
             t_ms_bucket{r=\"r1\",le=\"+Inf\"} 3\nt_ms_sum{r=\"r1\"} 9.5\nt_ms_count{r=\"r1\"} 3\n"
        );
    }

    #[test]
    fn a_full_family_gives_no_handle_for_a_new_label_set() {
        let c = CounterVec::new("t_total", "Help.", &["a"]);
        for i in 0..MAX_SERIES {
            c.add(&[&i.to_string()], 1);
        }
        assert!(c.series(&["new"]).is_none());
        assert_eq!(c.dropped(), 1);
        c.series(&["7"]).unwrap().add(1);
        assert_eq!(c.get(&["7"]), Some(2), "an existing series still has one");
    }

    #[test]
    fn integers_print_as_decimal() {
        for n in [0, 7, 10, 99, 1_234_567, u64::MAX] {
            let mut out = String::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string());
        }
    }

    #[test]
    fn fixed_counters_render_every_value_zeros_included() {
        let c = FixedCounters::new("t_total", "Help.", "result", &["hit", "miss"]);
        c.add(1, 2);
        assert_eq!((c.get("hit"), c.get("miss"), c.get("other")), (Some(0), Some(2), None));
        let mut out = String::new();
        c.render(&mut out);
        assert_eq!(
            out,
            "# HELP t_total Help.\n# TYPE t_total counter\nt_total{result=\"hit\"} 0\nt_total{result=\"miss\"} 2\n"
        );
    }

    #[test]
    fn families_without_labels_render_without_braces() {
        static BOUNDS: [f64; 1] = [1.0];
        let h = HistogramVec::new("t_seconds", "Help.", &[], &BOUNDS);
        h.observe(&[], 0.5);
        let c = CounterVec::new("t_total", "Help.", &[]);
        c.add(&[], 3);
        let mut out = String::new();
        h.render(&mut out);
        c.render(&mut out);
        assert!(
            out.contains(
                "t_seconds_bucket{le=\"1\"} 1\nt_seconds_bucket{le=\"+Inf\"} 1\nt_seconds_sum 0.5\nt_seconds_count 1\n"
            ),
            "{out}"
        );
        assert!(out.ends_with("t_total 3\n"), "{out}");
    }

    #[test]
    fn an_empty_family_renders_nothing() {
        let mut out = String::new();
        CounterVec::new("t_total", "Help.", &["a"]).render(&mut out);
        assert!(out.is_empty());
    }
}
