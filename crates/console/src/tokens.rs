//! Personal access tokens: generate (the value shown once), list, revoke. The platform API has no endpoint for
//! them (Konnect manages them in its UI only), so this page uses the same functions as `gatehouse token`; any valid
//! token already has every power on the platform API, so minting another grants nothing new.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use gatehouse_model::PatId;
use gatehouse_model::pat::{DEFAULT_PAT_LIFETIME_DAYS, MAX_PAT_LIFETIME_DAYS};
use gatehouse_runtime::auth::{PatError, issue_pat};

use crate::view::{Action, Cell, Field, FieldErrors, Form, Kind, Row, Section, Table};
use crate::{Console, ConsoleError, Posted, Result, Signed, page, see_other};

pub(crate) fn routes() -> Router<Console> {
    Router::new().route("/console/tokens", get(list).post(generate)).route("/console/tokens/{id}/revoke", post(revoke))
}

fn generate_form() -> Form {
    Form::new(
        "new-token",
        "Generate a token",
        "/console/tokens",
        "Generate token",
        vec![
            Field::text("name", "Name").required().help("1–64 letters, digits, '.', '_' or '-'."),
            Field::new("expires_in_days", "Expires in (days)", Kind::Number)
                .value(DEFAULT_PAT_LIFETIME_DAYS.to_string())
                .help(format!("Between 1 and {MAX_PAT_LIFETIME_DAYS} days.")),
        ],
    )
}

async fn table(console: &Console, signed: &Signed) -> Result<Table> {
    let now = console.services.clock.now();
    let mut pats = console.services.store.list_pats().await?;
    pats.sort_by_key(|p| std::cmp::Reverse(p.created_at));
    let rows = pats
        .into_iter()
        .map(|p| {
            let status = if p.expires_at <= now { "expired" } else { "active" };
            let mine = if p.id == signed.current.token_id { " (this session)" } else { "" };
            Row {
                cells: vec![
                    Cell::text(format!("{}{mine}", p.name)),
                    Cell::text(p.created_at.to_rfc3339()),
                    Cell::text(p.expires_at.to_rfc3339()),
                    Cell::text(status),
                ],
                actions: vec![Action::danger(
                    "Revoke",
                    format!("/console/tokens/{}/revoke", p.id),
                    format!("Revoke the token {}? Anything using it stops working.", p.name),
                )],
            }
        })
        .collect();
    Ok(Table {
        id: "tokens".into(),
        heading: "Tokens".into(),
        columns: vec!["Name".into(), "Created".into(), "Expires".into(), "Status".into()],
        rows,
        empty: "No tokens.".into(),
        search: None,
        pager: None,
    })
}

async fn render(console: &Console, signed: &Signed, form: Form, mut top: Vec<Section>) -> Result {
    top.push(Section::Table(table(console, signed).await?));
    top.push(Section::Form(form));
    Ok(page(&signed.current, "tokens", "Personal access tokens", Vec::new(), top).into_response())
}

async fn list(State(console): State<Console>, signed: Signed) -> Result {
    render(&console, &signed, generate_form(), Vec::new()).await
}

async fn generate(State(console): State<Console>, posted: Posted) -> Result {
    let signed = Signed { current: posted.current.clone(), peer: posted.peer };
    let days = match posted.get("expires_in_days").trim() {
        "" => None,
        d => match d.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                let errors = FieldErrors {
                    general: Vec::new(),
                    fields: vec![("expires_in_days".into(), "must be a whole number of days".into())],
                };
                return render(&console, &signed, generate_form().with_submission(&posted.pairs, &errors), Vec::new())
                    .await;
            }
        },
    };
    match issue_pat(&console.services, posted.get("name").trim(), days, false).await {
        Ok(issued) => {
            tracing::info!(token = %issued.record.id, "console: personal access token generated");
            let secret = Section::Secret {
                id: "new-token-value".into(),
                label: format!("Token {}", issued.record.name),
                value: issued.token.expose().to_owned(),
                note: format!(
                    "Copy it now: it is shown only once. It expires {}.",
                    issued.record.expires_at.to_rfc3339()
                ),
            };
            render(&console, &signed, generate_form(), vec![secret]).await
        }
        Err(e) => {
            let field = match e {
                PatError::BadName => "name",
                PatError::BadLifetime => "expires_in_days",
                PatError::Store(store) => return Err(store.into()),
            };
            let errors = FieldErrors { general: Vec::new(), fields: vec![(field.into(), e.to_string())] };
            render(&console, &signed, generate_form().with_submission(&posted.pairs, &errors), Vec::new()).await
        }
    }
}

async fn revoke(State(console): State<Console>, Path(id): Path<String>, posted: Posted) -> Result<Response> {
    let Ok(id) = id.parse::<PatId>() else { return Ok(crate::pages::not_found().await) };
    match console.services.store.delete_pat(id).await {
        Ok(()) | Err(gatehouse_store::StoreError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    console.sessions.end_for_token(id);
    tracing::info!(token = %id, "console: personal access token revoked");
    if id == posted.current.token_id {
        return Err(ConsoleError::SignedOut);
    }
    Ok(see_other("/console/tokens"))
}
