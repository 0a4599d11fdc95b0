//! From target state to changes: what to create, update and delete, decK's console lines with a JSON diff per
//! update, its `--json-output` document, and the masking of secrets in both.

use serde_json::{Map, Value, json};

use gatehouse_model::gateway::EntityKind;
use gatehouse_model::gateway::plugins::encrypted_values;

use crate::target::{ORDER, Target};

pub const MASK: &str = "[masked]";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Delete,
}

impl Action {
    pub fn verb(self) -> &'static str {
        match self {
            Action::Create => "creating",
            Action::Update => "updating",
            Action::Delete => "deleting",
        }
    }
}

/// One change to make.
#[derive(Debug, Clone)]
pub struct Change {
    pub action: Action,
    pub kind: EntityKind,
    pub id: String,
    pub console: String,
    pub old: Option<Map<String, Value>>,
    pub new: Option<Map<String, Value>>,
}

/// How many changes of each kind were made (or, in a dry run, would be).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
}

impl Summary {
    pub fn count(&mut self, action: Action) {
        match action {
            Action::Create => self.created += 1,
            Action::Update => self.updated += 1,
            Action::Delete => self.deleted += 1,
        }
    }

    pub fn total(&self) -> usize {
        self.created + self.updated + self.deleted
    }
}

fn comparable(e: &Map<String, Value>) -> Map<String, Value> {
    let mut e = e.clone();
    e.remove("created_at");
    e.remove("updated_at");
    e
}

/// The changes that take the server to the target: creates and updates in dependency order, then deletes in
/// reverse order.
pub fn changes(target: &Target) -> Vec<Change> {
    let mut out = Vec::new();
    for r in &target.entities {
        let (action, old) = match &r.current {
            None => (Action::Create, None),
            Some(current) if comparable(current) != r.data => (Action::Update, Some(comparable(current))),
            Some(_) => continue,
        };
        out.push(Change {
            action,
            kind: r.kind,
            id: r.id.clone(),
            console: r.console.clone(),
            old,
            new: Some(r.data.clone()),
        });
    }
    for l in &target.leftovers {
        out.push(Change {
            action: Action::Delete,
            kind: l.kind,
            id: crate::target::id_of(&l.data).to_owned(),
            console: l.console.clone(),
            old: Some(comparable(&l.data)),
            new: None,
        });
    }
    out
}

/// Groups of changes that may run together: creates and updates per kind in dependency order, then deletes per
/// kind in reverse.
pub fn stages(changes: &[Change]) -> Vec<Vec<&Change>> {
    let mut stages = Vec::new();
    for kind in ORDER {
        stages.push(changes.iter().filter(|c| c.kind == kind && c.action != Action::Delete).collect::<Vec<_>>());
    }
    for kind in ORDER.into_iter().rev() {
        stages.push(changes.iter().filter(|c| c.kind == kind && c.action == Action::Delete).collect());
    }
    stages.retain(|s| !s.is_empty());
    stages
}

/// Values that never appear in output: the environment values the file used and secret plugin fields.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    secrets: Vec<String>,
}

impl Masker {
    pub fn new(env_values: &[String], changes: &[Change]) -> Self {
        let mut secrets: Vec<String> = env_values.to_vec();
        for c in changes {
            for e in [&c.old, &c.new].into_iter().flatten() {
                secrets.extend(secret_values(e));
            }
        }
        secrets.retain(|s| !s.is_empty());
        // Longer first, so a secret that contains another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
    }

    /// No masking (`--no-mask-deck-env-vars-value`); secret fields stay masked.
    pub fn secret_fields_only(changes: &[Change]) -> Self {
        Self::new(&[], changes)
    }

    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            out = out.replace(s.as_str(), MASK);
        }
        out
    }

    pub fn mask_value(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.mask(s)),
            Value::Array(a) => Value::Array(a.iter().map(|v| self.mask_value(v)).collect()),
            Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), self.mask_value(v))).collect()),
            other => other.clone(),
        }
    }
}

fn secret_values(e: &Map<String, Value>) -> Vec<String> {
    let (Some(name), Some(config)) =
        (e.get("name").and_then(Value::as_str), e.get("config").and_then(Value::as_object))
    else {
        return Vec::new();
    };
    encrypted_values(name, config).into_iter().map(|(_, value)| value.to_owned()).collect()
}

fn pretty_lines(e: &Map<String, Value>) -> Vec<String> {
    serde_json::to_string_pretty(e).unwrap_or_default().lines().map(str::to_owned).collect()
}

/// A line diff of two entities' pretty JSON, each line marked ` `, `-` or `+` as decK prints updates.
pub fn json_diff(old: &Map<String, Value>, new: &Map<String, Value>) -> String {
    let (a, b) = (pretty_lines(old), pretty_lines(new));
    // Lines are compared without their trailing comma, so a new last field does not mark its neighbour changed.
    let key = |s: &String| s.trim_end_matches(',').to_owned();
    let (ka, kb): (Vec<String>, Vec<String>) = (a.iter().map(key).collect(), b.iter().map(key).collect());
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if ka[i] == kb[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && ka[i] == kb[j] {
            out.push(format!(" {}", b[j]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // The old line before the new one, as decK prints a changed field.
            out.push(format!("-{}", a[i]));
            i += 1;
        } else {
            out.push(format!("+{}", b[j]));
            j += 1;
        }
    }
    out.join("\n")
}

/// The console line of a change, masked: `creating service s`, `updating service s  {…}`, `deleting route r`.
pub fn console_line(c: &Change, masker: &Masker) -> String {
    let head = format!("{} {} {}", c.action.verb(), crate::target::kind_name(c.kind), c.console);
    match (c.action, &c.old, &c.new) {
        (Action::Update, Some(old), Some(new)) => masker.mask(&format!("{head} {}", json_diff(old, new))),
        _ => masker.mask(&head),
    }
}

/// decK's `--json-output` document.
pub fn json_output(changes: &[Change], summary: &Summary, masker: &Masker, errors: &[String]) -> Value {
    let group = |action: Action| -> Vec<Value> {
        changes
            .iter()
            .filter(|c| c.action == action)
            .map(|c| {
                json!({
                    "name": c.console,
                    "kind": crate::target::kind_name(c.kind),
                    "body": masker.mask_value(&json!({"old": c.old, "new": c.new})),
                })
            })
            .collect()
    };
    json!({
        "changes": {"creating": group(Action::Create), "updating": group(Action::Update), "deleting": group(Action::Delete)},
        "summary": {
            "creating": summary.created, "updating": summary.updated, "deleting": summary.deleted, "total": summary.total(),
        },
        "warnings": [],
        "errors": errors,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn diffs_mark_changed_lines_only() {
        let old = json!({"host": "a", "name": "s", "port": 80}).as_object().cloned().unwrap();
        let new = json!({"host": "b", "name": "s", "port": 80, "tags": ["t"]}).as_object().cloned().unwrap();
        let d = json_diff(&old, &new);
        assert!(d.starts_with(" {"), "{d}");
        assert!(d.contains("-  \"host\": \"a\","), "{d}");
        assert!(d.contains("+  \"host\": \"b\","), "{d}");
        assert!(d.contains("   \"port\": 80"), "{d}");
        assert!(!d.contains("-  \"port\""), "{d}");
        assert!(d.contains("+  \"tags\": ["), "{d}");
    }

    /// Each element of an encrypted array (`openid-connect`'s `client_secret`, `introspection_headers_values`).
    #[test]
    fn secrets_in_arrays_are_masked() {
        let plugin = |v: &str| {
            json!({"name": "openid-connect", "config": {"introspection_headers_values": ["hv-1", v],
                "introspection_headers_names": ["x-a", "x-b"]}})
            .as_object()
            .cloned()
            .unwrap()
        };
        let c = Change {
            action: Action::Update,
            kind: EntityKind::Plugin,
            id: "x".into(),
            console: "openid-connect (global)".into(),
            old: Some(plugin("old-secret")),
            new: Some(plugin("new-secret")),
        };
        let line = console_line(&c, &Masker::secret_fields_only(std::slice::from_ref(&c)));
        assert!(!line.contains("secret") && !line.contains("hv-1") && line.contains("x-b"), "{line}");
        assert!(line.contains("-      \"[masked]\"") && line.contains("+      \"[masked]\""), "{line}");
    }

    #[test]
    fn secrets_are_masked() {
        let plugin = |v: &str| {
            json!({"name": "oauth2-introspection", "config": {"authorization_value": v, "introspection_url": "http://i/x",
                "custom_introspection_headers": {"x-api-key": v.replace("Basic", "Key")}}})
            .as_object()
            .cloned()
            .unwrap()
        };
        let c = Change {
            action: Action::Update,
            kind: EntityKind::Plugin,
            id: "x".into(),
            console: "oauth2-introspection (global)".into(),
            old: Some(plugin("Basic old-secret")),
            new: Some(plugin("Basic new-secret")),
        };
        let masker = Masker::new(&["http://i/x".to_owned()], std::slice::from_ref(&c));
        let line = console_line(&c, &masker);
        assert!(!line.contains("secret") && !line.contains("http://i/x"), "{line}");
        assert!(line.contains("-    \"authorization_value\": \"[masked]\""), "{line}");
        assert!(line.contains("+    \"authorization_value\": \"[masked]\""), "{line}");
        assert!(line.contains("-      \"x-api-key\": \"[masked]\""), "custom header values too: {line}");
        assert!(line.contains("+      \"x-api-key\": \"[masked]\""), "{line}");
        let json = json_output(std::slice::from_ref(&c), &Summary::default(), &masker, &[]).to_string();
        assert!(!json.contains("secret"), "{json}");
    }
}
