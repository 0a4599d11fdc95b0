//! `gatehouse token create|list|revoke`: personal access tokens for the platform API, managed offline against
//! the node's storage.

use std::io::Write;

use gatehouse_model::PatId;
use gatehouse_runtime::Services;
use gatehouse_runtime::auth::{PatError, issue_pat};

/// Parses `--expires-in`: days, written `30` or `30d`.
pub fn parse_days(text: &str) -> Result<i64, String> {
    let digits = text.strip_suffix('d').unwrap_or(text);
    digits.parse::<i64>().map_err(|_| format!("expected a number of days such as 30 or 30d, got [{text}]"))
}

pub async fn create(services: &Services, name: &str, days: Option<i64>, out: &mut impl Write) -> Result<(), PatError> {
    let issued = issue_pat(services, name, days, false).await?;
    let _ = writeln!(out, "{}", issued.token.expose());
    let _ = writeln!(
        out,
        "# token {} (\"{}\") expires {}; it is shown only now",
        issued.record.id, issued.record.name, issued.record.expires_at
    );
    Ok(())
}

pub async fn list(services: &Services, out: &mut impl Write) -> Result<(), gatehouse_store::StoreError> {
    let now = services.clock.now();
    let _ = writeln!(out, "{:<36}  {:<24}  {:<27}  {:<27}  STATUS", "ID", "NAME", "CREATED", "EXPIRES");
    for pat in services.store.list_pats().await? {
        let status = if pat.expires_at <= now { "expired" } else { "active" };
        let _ =
            writeln!(out, "{:<36}  {:<24}  {:<27}  {:<27}  {status}", pat.id, pat.name, pat.created_at, pat.expires_at);
    }
    Ok(())
}

/// Revokes by id, or every token with that name.
pub async fn revoke(services: &Services, id_or_name: &str) -> Result<usize, gatehouse_store::StoreError> {
    let targets: Vec<PatId> = match id_or_name.parse::<PatId>() {
        Ok(id) => vec![id],
        Err(_) => {
            services.store.list_pats().await?.into_iter().filter(|p| p.name == id_or_name).map(|p| p.id).collect()
        }
    };
    let mut revoked = 0;
    for id in targets {
        match services.store.delete_pat(id).await {
            Ok(()) => revoked += 1,
            Err(gatehouse_store::StoreError::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(revoked)
}
