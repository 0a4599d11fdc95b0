//! Kong Identity's pages: auth servers (with their keys), scopes, claims (and "test claim"), clients (the secret
//! shown once, token records with revoke) and "Try it". Everything goes through `/v1` as the signed-in token.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};

use gatehouse_model::body::Choice;
use gatehouse_model::identity::client::{GrantType, ResponseType};
use gatehouse_model::identity::signing::SigningAlgorithm;

use crate::api::Answer;
use crate::view::{Action, Cell, Detail, Field, FieldErrors, Form, Kind, Link, Row, Search, Section, Table};
use crate::{
    Console, J, ListParams, Posted, Result, Signed, body_of, call, fetch, items, list, page, pager, s, see_other, seg,
};

/// Entities per list page.
const PAGE_SIZE: u64 = 20;

pub(crate) fn routes() -> Router<Console> {
    Router::new()
        .route("/console/auth-servers", get(servers).post(create_server))
        .route("/console/auth-servers/{id}", get(server).post(edit_server))
        .route("/console/auth-servers/{id}/delete", post(delete_server))
        .route("/console/auth-servers/{id}/rotate", post(rotate))
        .route("/console/auth-servers/{id}/scopes", get(scopes).post(create_scope))
        .route("/console/auth-servers/{id}/scopes/{sid}/delete", post(delete_scope))
        .route("/console/auth-servers/{id}/scopes/{sid}", editable(Editable::Scope))
        .route("/console/auth-servers/{id}/claims/{cid}", editable(Editable::Claim))
        .route("/console/auth-servers/{id}/claims", get(claims).post(create_claim))
        .route("/console/auth-servers/{id}/claims/{cid}/delete", post(delete_claim))
        .route("/console/auth-servers/{id}/test-claim", post(test_claim))
        .route("/console/auth-servers/{id}/clients", get(clients).post(create_client))
        .route("/console/auth-servers/{id}/clients/{cid}", get(client))
        .route("/console/auth-servers/{id}/clients/{cid}/delete", post(delete_client))
        .route("/console/auth-servers/{id}/clients/{cid}/secrets", post(add_secret))
        .route(
            "/console/auth-servers/{id}/clients/{cid}/secrets/{sid}/enable",
            post(|State(c): State<Console>, Path(p): Path<(String, String, String)>, posted: Posted| {
                change_secret(c, posted, p, Some(true))
            }),
        )
        .route(
            "/console/auth-servers/{id}/clients/{cid}/secrets/{sid}/disable",
            post(|State(c): State<Console>, Path(p): Path<(String, String, String)>, posted: Posted| {
                change_secret(c, posted, p, Some(false))
            }),
        )
        .route(
            "/console/auth-servers/{id}/clients/{cid}/secrets/{sid}/delete",
            post(|State(c): State<Console>, Path(p): Path<(String, String, String)>, posted: Posted| {
                change_secret(c, posted, p, None)
            }),
        )
        .route("/console/auth-servers/{id}/clients/{cid}/tokens/{tid}/revoke", post(revoke_token))
        .route("/console/auth-servers/{id}/try", get(try_page).post(try_it))
}

/// The edit page of a scope or claim (GET) and its save (POST).
fn editable(kind: Editable) -> axum::routing::MethodRouter<Console> {
    get(move |State(c): State<Console>, signed: Signed, Path(p): Path<(String, String)>| edit_page(kind, c, signed, p))
        .post(move |State(c): State<Console>, Path(p): Path<(String, String)>, posted: Posted| {
            save_edit(kind, c, posted, p)
        })
}

fn home() -> Link {
    Link::new("Auth servers", "/console/auth-servers")
}

fn base(id: &str) -> String {
    format!("/console/auth-servers/{}", seg(id))
}

fn api(id: &str) -> String {
    format!("/v1/auth-servers/{}", seg(id))
}

fn choices<C: Choice>() -> Vec<(String, String)> {
    C::ALL.iter().map(|c| (c.as_str().to_owned(), c.as_str().to_owned())).collect()
}

// ---- auth servers ----

fn server_fields() -> Vec<Field> {
    vec![
        Field::text("name", "Name").required().help("Unique among auth servers."),
        Field::new("audience", "Audience", Kind::Text).required().help("The `aud` claim of its tokens."),
        Field::text("description", "Description"),
        Field::text("signing_algorithm", "Signing algorithm")
            .options(choices::<SigningAlgorithm>())
            .value("RS256")
            .help("A new algorithm generates a new key; the old one stays published until its tokens expire."),
    ]
}

const SERVER_BODY: &[(&str, J)] =
    &[("name", J::Str), ("audience", J::Str), ("description", J::Str), ("signing_algorithm", J::Opt)];

async fn servers_page(console: &Console, signed: &Signed, params: &ListParams, form: Form) -> Result {
    let answer = fetch(console, signed, &format!("/v1/auth-servers?{}", params.api_query(PAGE_SIZE))).await?;
    let rows = items(&answer)
        .iter()
        .map(|v| Row {
            cells: vec![
                Cell::link(s(v, "name"), base(&s(v, "id"))),
                Cell::text(s(v, "audience")),
                Cell::text(s(v, "issuer")),
                Cell::text(s(v, "signing_algorithm")),
            ],
            actions: Vec::new(),
        })
        .collect();
    let total = answer.pointer("/meta/page/total").and_then(Value::as_u64).unwrap_or(0);
    let table = Table {
        id: "auth-servers".into(),
        heading: "Auth servers".into(),
        columns: vec!["Name".into(), "Audience".into(), "Issuer".into(), "Algorithm".into()],
        rows,
        empty: "No auth servers yet: create one below.".into(),
        search: Some(Search {
            url: "/console/auth-servers".into(),
            query: params.q.clone(),
            label: "Search by name".into(),
        }),
        pager: Some(pager("/console/auth-servers", &params.q, params.page(), PAGE_SIZE, total)),
    };
    Ok(page(&signed.current, "identity", "Auth servers", Vec::new(), vec![Section::Table(table), Section::Form(form)])
        .into_response())
}

fn new_server_form() -> Form {
    Form::new(
        "new-auth-server",
        "Create an auth server",
        "/console/auth-servers",
        "Create auth server",
        server_fields(),
    )
}

async fn servers(State(console): State<Console>, signed: Signed, Query(params): Query<ListParams>) -> Result {
    servers_page(&console, &signed, &params, new_server_form()).await
}

async fn create_server(State(console): State<Console>, posted: Posted) -> Result {
    let body = body_of(&posted, SERVER_BODY);
    match call(&console, &posted.current, posted.peer, Method::POST, "/v1/auth-servers", Some(&body)).await? {
        Answer::Ok(v) => Ok(see_other(&base(&s(&v, "id")))),
        Answer::Refused(_, errors) => {
            let signed = posted.signed();
            let form = new_server_form().with_submission(&posted.pairs, &errors);
            servers_page(&console, &signed, &ListParams::default(), form).await
        }
    }
}

async fn server_page(
    console: &Console,
    signed: &Signed,
    id: &str,
    edit: Option<Form>,
    notice: Option<Section>,
) -> Result {
    let v = fetch(console, signed, &api(id)).await?;
    let keys = fetch(console, signed, &format!("{}/keys", api(id))).await?;
    let name = s(&v, "name");
    let mut sections: Vec<Section> = notice.into_iter().collect();
    sections.push(Section::Details {
        heading: "Auth server".into(),
        rows: vec![
            Detail::text("ID", s(&v, "id")),
            Detail::text("Audience", s(&v, "audience")),
            Detail::text("Description", s(&v, "description")),
            Detail::text("Signing algorithm", s(&v, "signing_algorithm")),
            Detail::link("Issuer URL", s(&v, "issuer"), s(&v, "issuer")),
            Detail::link("Discovery", s(&v, "metadata_uri"), s(&v, "metadata_uri")),
            Detail::link("JWKS", s(&v, "jwks_uri"), s(&v, "jwks_uri")),
            Detail::text("Introspection endpoint", format!("{}/introspect", s(&v, "issuer"))),
        ],
    });
    sections.push(Section::Actions(vec![
        Action::link("Scopes", format!("{}/scopes", base(id))),
        Action::link("Claims", format!("{}/claims", base(id))),
        Action::link("Clients", format!("{}/clients", base(id))),
        Action::link("Try it", format!("{}/try", base(id))),
    ]));
    let key_rows = items(&keys)
        .iter()
        .map(|k| Row {
            cells: vec![
                Cell::text(s(k, "id")),
                Cell::text(s(k, "algorithm")),
                Cell::text(s(k, "status")),
                Cell::text(s(k, "created_at")),
            ],
            actions: Vec::new(),
        })
        .collect();
    sections.push(Section::Table(Table {
        id: "keys".into(),
        heading: "Signing keys".into(),
        columns: vec!["Key id".into(), "Algorithm".into(), "Status".into(), "Created".into()],
        rows: key_rows,
        empty: "No keys.".into(),
        search: None,
        pager: None,
    }));
    sections.push(Section::Actions(vec![Action::post("Rotate signing key", format!("{}/rotate", base(id)))]));
    let edit = edit.unwrap_or_else(|| {
        let mut fields = server_fields();
        for f in &mut fields {
            f.value = s(&v, &f.name);
        }
        Form::new("edit-auth-server", "Edit", base(id), "Save changes", fields)
    });
    sections.push(Section::Form(edit));
    sections.push(Section::Actions(vec![Action::danger(
        "Delete auth server",
        format!("{}/delete", base(id)),
        format!("Delete {name} with its scopes, claims and clients? Their tokens stop working."),
    )]));
    Ok(page(&signed.current, "identity", name, vec![home()], sections).into_response())
}

async fn server(State(console): State<Console>, signed: Signed, Path(id): Path<String>) -> Result {
    server_page(&console, &signed, &id, None, None).await
}

async fn edit_server(State(console): State<Console>, Path(id): Path<String>, posted: Posted) -> Result {
    let body = body_of(&posted, SERVER_BODY);
    match call(&console, &posted.current, posted.peer, Method::PATCH, &api(&id), Some(&body)).await? {
        Answer::Ok(..) => Ok(see_other(&base(&id))),
        Answer::Refused(_, errors) => {
            let form = Form::new("edit-auth-server", "Edit", base(&id), "Save changes", server_fields())
                .with_submission(&posted.pairs, &errors);
            server_page(&console, &posted.signed(), &id, Some(form), None).await
        }
    }
}

async fn delete_server(State(console): State<Console>, Path(id): Path<String>, posted: Posted) -> Result {
    let path = format!("{}?force=true", api(&id));
    match call(&console, &posted.current, posted.peer, Method::DELETE, &path, None).await? {
        Answer::Ok(..) => Ok(see_other("/console/auth-servers")),
        Answer::Refused(_, e) => refused(&console, &posted, &id, e).await,
    }
}

async fn refused(console: &Console, posted: &Posted, id: &str, errors: FieldErrors) -> Result {
    server_page(console, &posted.signed(), id, None, Some(refusal(errors))).await
}

async fn rotate(State(console): State<Console>, Path(id): Path<String>, posted: Posted) -> Result {
    let path = format!("{}/keys/rotate", api(&id));
    match call(&console, &posted.current, posted.peer, Method::POST, &path, Some(&json!({}))).await? {
        Answer::Ok(..) => {
            let notice = Section::Notice { kind: "ok", text: "A new signing key signs tokens from now on; the previous one stays published until its tokens expire.".into() };
            server_page(&console, &posted.signed(), &id, None, Some(notice)).await
        }
        Answer::Refused(_, e) => refused(&console, &posted, &id, e).await,
    }
}

// ---- scopes ----

const SCOPE_BODY: &[(&str, J)] = &[
    ("name", J::Str),
    ("description", J::Str),
    ("default", J::Bool),
    ("include_in_metadata", J::Bool),
    ("enabled", J::Bool),
];

const CLAIM_BODY: &[(&str, J)] = &[
    ("name", J::Str),
    ("value", J::Str),
    ("include_in_token", J::Bool),
    ("include_in_all_scopes", J::Bool),
    ("include_in_scopes", J::List),
    ("enabled", J::Bool),
];

/// Editing a scope or a claim in place: its create form, filled from the API and sent back as a PATCH.
#[derive(Debug, Clone, Copy)]
enum Editable {
    Scope,
    Claim,
}

impl Editable {
    fn collection(self) -> &'static str {
        match self {
            Editable::Scope => "scopes",
            Editable::Claim => "claims",
        }
    }

    async fn form(self, console: &Console, signed: &Signed, id: &str, eid: &str) -> Result<Form> {
        let mut form = match self {
            Editable::Scope => scope_form(id),
            Editable::Claim => claim_form(id, scope_options(console, signed, id).await?),
        };
        form.id = format!("edit-{}", &self.collection()[..self.collection().len() - 1]);
        form.heading = "Edit".into();
        form.submit = "Save changes".into();
        form.action = format!("{}/{}/{}", base(id), self.collection(), seg(eid));
        Ok(form)
    }

    fn body(self) -> &'static [(&'static str, J)] {
        match self {
            Editable::Scope => SCOPE_BODY,
            Editable::Claim => CLAIM_BODY,
        }
    }
}

async fn edit_view(
    console: &Console,
    signed: &Signed,
    kind: Editable,
    id: &str,
    eid: &str,
    form: Option<Form>,
) -> Result {
    let path = format!("{}/{}/{}", api(id), kind.collection(), seg(eid));
    let v = fetch(console, signed, &path).await?;
    let form = match form {
        Some(f) => f,
        None => {
            let mut form = kind.form(console, signed, id, eid).await?;
            for field in &mut form.fields {
                field.value = match v.get(&field.name) {
                    Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","),
                    _ => s(&v, &field.name),
                };
            }
            form
        }
    };
    let server = fetch(console, signed, &api(id)).await?;
    let crumbs = vec![
        home(),
        Link::new(s(&server, "name"), base(id)),
        Link::new(kind.collection(), format!("{}/{}", base(id), kind.collection())),
    ];
    Ok(page(&signed.current, "identity", s(&v, "name"), crumbs, vec![Section::Form(form)]).into_response())
}

async fn edit_page(kind: Editable, console: Console, signed: Signed, (id, eid): (String, String)) -> Result {
    edit_view(&console, &signed, kind, &id, &eid, None).await
}

async fn save_edit(kind: Editable, console: Console, posted: Posted, (id, eid): (String, String)) -> Result {
    let body = body_of(&posted, kind.body());
    let path = format!("{}/{}/{}", api(&id), kind.collection(), seg(&eid));
    match call(&console, &posted.current, posted.peer, Method::PATCH, &path, Some(&body)).await? {
        Answer::Ok(..) => Ok(see_other(&format!("{}/{}", base(&id), kind.collection()))),
        Answer::Refused(_, errors) => {
            let signed = posted.signed();
            let form = kind.form(&console, &signed, &id, &eid).await?.with_submission(&posted.pairs, &errors);
            edit_view(&console, &signed, kind, &id, &eid, Some(form)).await
        }
    }
}

fn scope_form(id: &str) -> Form {
    Form::new(
        "new-scope",
        "Create a scope",
        format!("{}/scopes", base(id)),
        "Create scope",
        vec![
            Field::text("name", "Name").required().help("As clients request it in `scope`."),
            Field::text("description", "Description"),
            Field::boolean("default", "Default", false).help("Granted when a client asks for no scope."),
            Field::boolean("include_in_metadata", "Include in metadata", false)
                .help("Listed in the discovery document's scopes_supported."),
            Field::boolean("enabled", "Enabled", true),
        ],
    )
}

async fn scopes_page(console: &Console, signed: &Signed, id: &str, form: Form) -> Result {
    let server = fetch(console, signed, &api(id)).await?;
    let answer = fetch(console, signed, &format!("{}/scopes?page%5Bsize%5D=100", api(id))).await?;
    let rows = items(&answer)
        .iter()
        .map(|v| Row {
            cells: vec![
                Cell::link(s(v, "name"), format!("{}/scopes/{}", base(id), seg(&s(v, "id")))),
                Cell::text(s(v, "description")),
                Cell::text(s(v, "default")),
                Cell::text(s(v, "enabled")),
                Cell::text(s(v, "id")),
            ],
            actions: vec![Action::danger(
                "Delete",
                format!("{}/scopes/{}/delete", base(id), seg(&s(v, "id"))),
                format!("Delete the scope {}?", s(v, "name")),
            )],
        })
        .collect();
    let table = Table {
        id: "scopes".into(),
        heading: "Scopes".into(),
        columns: vec!["Name".into(), "Description".into(), "Default".into(), "Enabled".into(), "ID".into()],
        rows,
        empty: "No scopes yet.".into(),
        search: None,
        pager: None,
    };
    let crumbs = vec![home(), Link::new(s(&server, "name"), base(id))];
    Ok(page(&signed.current, "identity", "Scopes", crumbs, vec![Section::Table(table), Section::Form(form)])
        .into_response())
}

async fn scopes(State(console): State<Console>, signed: Signed, Path(id): Path<String>) -> Result {
    scopes_page(&console, &signed, &id, scope_form(&id)).await
}

async fn create_scope(State(console): State<Console>, Path(id): Path<String>, posted: Posted) -> Result {
    let body = body_of(&posted, SCOPE_BODY);
    match call(&console, &posted.current, posted.peer, Method::POST, &format!("{}/scopes", api(&id)), Some(&body))
        .await?
    {
        Answer::Ok(..) => Ok(see_other(&format!("{}/scopes", base(&id)))),
        Answer::Refused(_, errors) => {
            scopes_page(&console, &posted.signed(), &id, scope_form(&id).with_submission(&posted.pairs, &errors)).await
        }
    }
}

async fn delete_scope(
    State(console): State<Console>,
    Path((id, sid)): Path<(String, String)>,
    posted: Posted,
) -> Result {
    let path = format!("{}/scopes/{}?force=true", api(&id), seg(&sid));
    match call(&console, &posted.current, posted.peer, Method::DELETE, &path, None).await? {
        Answer::Ok(..) => Ok(see_other(&format!("{}/scopes", base(&id)))),
        Answer::Refused(_, e) => refused(&console, &posted, &id, e).await,
    }
}

/// The auth server's scopes as select options (id → name).
async fn scope_options(console: &Console, signed: &Signed, id: &str) -> Result<Vec<(String, String)>> {
    let answer = fetch(console, signed, &format!("{}/scopes?page%5Bsize%5D=100", api(id))).await?;
    Ok(items(&answer).iter().map(|v| (s(v, "id"), s(v, "name"))).collect())
}

/// The first page of clients as select options (id → name).
async fn client_options(console: &Console, signed: &Signed, id: &str) -> Result<Vec<(String, String)>> {
    let answer = fetch(console, signed, &format!("{}/clients?page%5Bsize%5D=100", api(id))).await?;
    Ok(items(&answer).iter().map(|v| (s(v, "id"), format!("{} ({})", s(v, "name"), s(v, "id")))).collect())
}

// ---- claims ----

fn claim_form(id: &str, scopes: Vec<(String, String)>) -> Form {
    Form::new(
        "new-claim",
        "Create a claim",
        format!("{}/claims", base(id)),
        "Create claim",
        vec![
            Field::text("name", "Name").required(),
            Field::text("value", "Value")
                .required()
                .help("A fixed value, or a template such as ${ .Client.Name } rendered per client."),
            Field::boolean("include_in_token", "Include in token", true),
            Field::boolean("include_in_all_scopes", "Include in all scopes", false),
            Field::text("include_in_scopes", "Include in scopes")
                .multi(scopes)
                .help("Add the claim when these scopes are granted."),
            Field::boolean("enabled", "Enabled", true),
        ],
    )
}

fn test_claim_form(id: &str, clients: Vec<(String, String)>) -> Form {
    Form::new(
        "test-claim",
        "Test a claim value",
        format!("{}/test-claim", base(id)),
        "Test claim",
        vec![
            Field::text("client", "Client").options(clients).help("The client whose context the template renders in."),
            Field::text("value", "Value").required().value("${ .Client.Name }"),
        ],
    )
}

async fn claims_page(
    console: &Console,
    signed: &Signed,
    id: &str,
    form: Option<Form>,
    test: Option<Form>,
    result: Option<Section>,
) -> Result {
    let server = fetch(console, signed, &api(id)).await?;
    let scopes = scope_options(console, signed, id).await?;
    let answer = fetch(console, signed, &format!("{}/claims?page%5Bsize%5D=100", api(id))).await?;
    let scope_name = |sid: &Value| {
        let sid = sid.as_str().unwrap_or("");
        scopes.iter().find(|(i, _)| i == sid).map_or_else(|| sid.to_owned(), |(_, n)| n.clone())
    };
    let rows = items(&answer)
        .iter()
        .map(|v| {
            let in_scopes = v
                .get("include_in_scopes")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(scope_name).collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            Row {
                cells: vec![
                    Cell::link(s(v, "name"), format!("{}/claims/{}", base(id), seg(&s(v, "id")))),
                    Cell::text(s(v, "value")),
                    Cell::text(s(v, "include_in_token")),
                    Cell::text(if s(v, "include_in_all_scopes") == "true" { "all".to_owned() } else { in_scopes }),
                    Cell::text(s(v, "enabled")),
                ],
                actions: vec![Action::danger(
                    "Delete",
                    format!("{}/claims/{}/delete", base(id), seg(&s(v, "id"))),
                    format!("Delete the claim {}?", s(v, "name")),
                )],
            }
        })
        .collect();
    let table = Table {
        id: "claims".into(),
        heading: "Claims".into(),
        columns: vec!["Name".into(), "Value".into(), "In token".into(), "Scopes".into(), "Enabled".into()],
        rows,
        empty: "No claims yet.".into(),
        search: None,
        pager: None,
    };
    let test = match test {
        Some(t) => t,
        None => test_claim_form(id, client_options(console, signed, id).await?),
    };
    let mut sections =
        vec![Section::Table(table), Section::Form(form.unwrap_or_else(|| claim_form(id, scopes.clone())))];
    sections.push(Section::Form(test));
    sections.extend(result);
    let crumbs = vec![home(), Link::new(s(&server, "name"), base(id))];
    Ok(page(&signed.current, "identity", "Claims", crumbs, sections).into_response())
}

async fn claims(State(console): State<Console>, signed: Signed, Path(id): Path<String>) -> Result {
    claims_page(&console, &signed, &id, None, None, None).await
}

async fn create_claim(State(console): State<Console>, Path(id): Path<String>, posted: Posted) -> Result {
    let body = body_of(&posted, CLAIM_BODY);
    match call(&console, &posted.current, posted.peer, Method::POST, &format!("{}/claims", api(&id)), Some(&body))
        .await?
    {
        Answer::Ok(..) => Ok(see_other(&format!("{}/claims", base(&id)))),
        Answer::Refused(_, errors) => {
            let signed = posted.signed();
            let scopes = scope_options(&console, &signed, &id).await?;
            let form = claim_form(&id, scopes).with_submission(&posted.pairs, &errors);
            claims_page(&console, &signed, &id, Some(form), None, None).await
        }
    }
}

async fn delete_claim(
    State(console): State<Console>,
    Path((id, cid)): Path<(String, String)>,
    posted: Posted,
) -> Result {
    let path = format!("{}/claims/{}", api(&id), seg(&cid));
    match call(&console, &posted.current, posted.peer, Method::DELETE, &path, None).await? {
        Answer::Ok(..) => Ok(see_other(&format!("{}/claims", base(&id)))),
        Answer::Refused(_, e) => refused(&console, &posted, &id, e).await,
    }
}

async fn test_claim(State(console): State<Console>, Path(id): Path<String>, posted: Posted) -> Result {
    let signed = posted.signed();
    let client = posted.get("client").to_owned();
    let body = json!({ "value": posted.get("value") });
    let path = format!("{}/clients/{}/test-claim", api(&id), seg(&client));
    let clients = client_options(&console, &signed, &id).await?;
    match call(&console, &posted.current, posted.peer, Method::POST, &path, Some(&body)).await? {
        Answer::Ok(v) => {
            let text = serde_json::to_string_pretty(v.get("value").unwrap_or(&Value::Null)).unwrap_or_default();
            let result = Section::Code { id: "test-claim-result".into(), heading: "Rendered value".into(), text };
            let form = test_claim_form(&id, clients).with_submission(&posted.pairs, &FieldErrors::default());
            claims_page(&console, &signed, &id, None, Some(form), Some(result)).await
        }
        Answer::Refused(_, errors) => {
            let form = test_claim_form(&id, clients).with_submission(&posted.pairs, &errors);
            claims_page(&console, &signed, &id, None, Some(form), None).await
        }
    }
}

// ---- clients ----

fn client_form(id: &str, scopes: Vec<(String, String)>) -> Form {
    Form::new(
        "new-client",
        "Create a client",
        format!("{}/clients", base(id)),
        "Create client",
        vec![
            Field::text("name", "Name").required(),
            Field::text("grant_types", "Grant types").multi(choices::<GrantType>()).value("client_credentials"),
            Field::boolean("allow_all_scopes", "Allow all scopes", false),
            Field::text("allow_scopes", "Allowed scopes").multi(scopes).help("The scopes this client may ask for."),
            Field::new("access_token_duration", "Access token lifetime (seconds)", Kind::Number).value("3600"),
            Field::new("id_token_duration", "ID token lifetime (seconds)", Kind::Number).value("3600"),
            Field::text("response_types", "Response types").multi(choices::<ResponseType>()).value("id_token,token"),
            Field::new("redirect_uris", "Redirect URIs", Kind::Textarea).help("One per line (implicit grant only)."),
        ],
    )
}

async fn clients_page(console: &Console, signed: &Signed, id: &str, params: &ListParams, form: Form) -> Result {
    let server = fetch(console, signed, &api(id)).await?;
    let answer = fetch(console, signed, &format!("{}/clients?{}", api(id), params.api_query(PAGE_SIZE))).await?;
    let rows = items(&answer)
        .iter()
        .map(|v| Row {
            cells: vec![
                Cell::link(s(v, "name"), format!("{}/clients/{}", base(id), seg(&s(v, "id")))),
                Cell::text(s(v, "id")),
                Cell::text(list(v, "grant_types")),
                Cell::text(s(v, "created_at")),
            ],
            actions: Vec::new(),
        })
        .collect();
    let total = answer.pointer("/meta/page/total").and_then(Value::as_u64).unwrap_or(0);
    let url = format!("{}/clients", base(id));
    let table = Table {
        id: "clients".into(),
        heading: "Clients".into(),
        columns: vec!["Name".into(), "Client ID".into(), "Grant types".into(), "Created".into()],
        rows,
        empty: "No clients yet.".into(),
        search: Some(Search { url: url.clone(), query: params.q.clone(), label: "Search by name".into() }),
        pager: Some(pager(&url, &params.q, params.page(), PAGE_SIZE, total)),
    };
    let crumbs = vec![home(), Link::new(s(&server, "name"), base(id))];
    Ok(page(&signed.current, "identity", "Clients", crumbs, vec![Section::Table(table), Section::Form(form)])
        .into_response())
}

async fn clients(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
    Query(params): Query<ListParams>,
) -> Result {
    let scopes = scope_options(&console, &signed, &id).await?;
    clients_page(&console, &signed, &id, &params, client_form(&id, scopes)).await
}

async fn create_client(State(console): State<Console>, Path(id): Path<String>, posted: Posted) -> Result {
    let spec = [
        ("name", J::Str),
        ("grant_types", J::List),
        ("allow_all_scopes", J::Bool),
        ("allow_scopes", J::List),
        ("access_token_duration", J::Int),
        ("id_token_duration", J::Int),
        ("response_types", J::List),
        ("redirect_uris", J::Lines),
    ];
    let body = body_of(&posted, &spec);
    let signed = posted.signed();
    match call(&console, &posted.current, posted.peer, Method::POST, &format!("{}/clients", api(&id)), Some(&body))
        .await?
    {
        Answer::Ok(v) => {
            let client_id = s(&v, "id");
            tracing::info!(auth_server = %id, client = %client_id, "console: client created");
            let sections = vec![
                Section::Notice { kind: "ok", text: format!("Client {} created.", s(&v, "name")) },
                Section::Secret {
                    id: "client-id".into(),
                    label: "Client ID".into(),
                    value: client_id.clone(),
                    note: "The client's OAuth client_id.".into(),
                },
                Section::Secret {
                    id: "client-secret".into(),
                    label: "Client secret".into(),
                    value: s(&v, "client_secret"),
                    note: "Copy it now: the secret is shown only once and cannot be retrieved again.".into(),
                },
                Section::Actions(vec![
                    Action::link("Open the client", format!("{}/clients/{}", base(&id), seg(&client_id))),
                    Action::link("Try it", format!("{}/try", base(&id))),
                ]),
            ];
            let crumbs = vec![
                home(),
                Link::new("Auth server", base(&id)),
                Link::new("Clients", format!("{}/clients", base(&id))),
            ];
            Ok(page(&signed.current, "identity", "Client created", crumbs, sections).into_response())
        }
        Answer::Refused(_, errors) => {
            let scopes = scope_options(&console, &signed, &id).await?;
            let form = client_form(&id, scopes).with_submission(&posted.pairs, &errors);
            clients_page(&console, &signed, &id, &ListParams::default(), form).await
        }
    }
}

async fn client(State(console): State<Console>, signed: Signed, Path((id, cid)): Path<(String, String)>) -> Result {
    client_page(&console, &signed, &id, &cid, Vec::new()).await
}

/// A client's page, with `top` (a new secret, a refusal) above its details.
async fn client_page(console: &Console, signed: &Signed, id: &str, cid: &str, top: Vec<Section>) -> Result {
    let (console, signed) = (console.clone(), Signed { current: signed.current.clone(), peer: signed.peer });
    let (id, cid) = (id.to_owned(), cid.to_owned());
    let server = fetch(&console, &signed, &api(&id)).await?;
    let path = format!("{}/clients/{}", api(&id), seg(&cid));
    let v = fetch(&console, &signed, &path).await?;
    let tokens = fetch(&console, &signed, &format!("{path}/tokens?page%5Bsize%5D=100")).await?;
    let secrets = fetch(&console, &signed, &format!("{path}/secrets?page%5Bsize%5D=100")).await?;
    let scopes = scope_options(&console, &signed, &id).await?;
    let allowed = v
        .get("allow_scopes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| {
                    let x = x.as_str().unwrap_or("");
                    scopes.iter().find(|(i, _)| i == x).map_or_else(|| x.to_owned(), |(_, n)| n.clone())
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let here = format!("{}/clients/{}", base(&id), seg(&cid));
    let rows = items(&tokens)
        .iter()
        .map(|t| Row {
            cells: vec![
                Cell::text(s(t, "id")),
                Cell::text(list(t, "granted_scope_names")),
                Cell::text(s(t, "created_at")),
                Cell::text(s(t, "expires_at")),
            ],
            actions: vec![Action::danger(
                "Revoke",
                format!("{here}/tokens/{}/revoke", seg(&s(t, "id"))),
                "Revoke this token? Introspection answers inactive from now on.",
            )],
        })
        .collect();
    let secret_rows = items(&secrets)
        .iter()
        .map(|x| {
            let url = format!("{here}/secrets/{}", seg(&s(x, "id")));
            let enabled = s(x, "enabled") == "true";
            let toggle = if enabled {
                Action::post("Disable", format!("{url}/disable"))
            } else {
                Action::post("Enable", format!("{url}/enable"))
            };
            Row {
                cells: vec![
                    Cell::text(s(x, "id")),
                    Cell::text(if enabled { "enabled" } else { "disabled" }),
                    Cell::text(s(x, "created_at")),
                ],
                actions: vec![
                    toggle,
                    Action::danger(
                        "Delete",
                        format!("{url}/delete"),
                        "Delete this secret? Anything using it stops working.",
                    ),
                ],
            }
        })
        .collect();
    let mut sections = top;
    sections.extend([
        Section::Details {
            heading: "Client".into(),
            rows: vec![
                Detail::text("Client ID", s(&v, "id")),
                Detail::text("Grant types", list(&v, "grant_types")),
                Detail::text("Response types", list(&v, "response_types")),
                Detail::text("Allow all scopes", s(&v, "allow_all_scopes")),
                Detail::text("Allowed scopes", allowed),
                Detail::text("Access token lifetime", format!("{} s", s(&v, "access_token_duration"))),
                Detail::text("Created", s(&v, "created_at")),
            ],
        },
        Section::Table(Table {
            id: "client-secrets".into(),
            heading: "Secrets".into(),
            columns: vec!["Secret id".into(), "Status".into(), "Created".into()],
            rows: secret_rows,
            empty: "No secrets.".into(),
            search: None,
            pager: None,
        }),
        Section::Text(
            "A secret is shown once, when it is made. To rotate: add a second secret, move its users to it, then \
             delete the old one (at most two are enabled at a time)."
                .into(),
        ),
        Section::Actions(vec![Action::post("Add a secret", format!("{here}/secrets"))]),
        Section::Table(Table {
            id: "client-tokens".into(),
            heading: "Tokens issued".into(),
            columns: vec!["Token id (jti)".into(), "Scopes".into(), "Issued".into(), "Expires".into()],
            rows,
            empty: "No live tokens.".into(),
            search: None,
            pager: None,
        }),
        Section::Actions(vec![
            Action::link("Try it", format!("{}/try", base(&id))),
            Action::danger("Delete client", format!("{here}/delete"), "Delete this client? Its tokens stop working."),
        ]),
    ]);
    let crumbs =
        vec![home(), Link::new(s(&server, "name"), base(&id)), Link::new("Clients", format!("{}/clients", base(&id)))];
    Ok(page(&signed.current, "identity", s(&v, "name"), crumbs, sections).into_response())
}

async fn add_secret(State(console): State<Console>, Path((id, cid)): Path<(String, String)>, posted: Posted) -> Result {
    let path = format!("{}/clients/{}/secrets", api(&id), seg(&cid));
    let top = match call(&console, &posted.current, posted.peer, Method::POST, &path, Some(&json!({}))).await? {
        Answer::Ok(v) => vec![Section::Secret {
            id: "new-client-secret".into(),
            label: "New client secret".into(),
            value: s(&v, "secret"),
            note: "Copy it now: it is shown only once. Both enabled secrets work until you disable or delete one."
                .into(),
        }],
        Answer::Refused(_, e) => vec![refusal(e)],
    };
    client_page(&console, &posted.signed(), &id, &cid, top).await
}

async fn change_secret(
    console: Console,
    posted: Posted,
    (id, cid, sid): (String, String, String),
    change: Option<bool>,
) -> Result {
    let path = format!("{}/clients/{}/secrets/{}", api(&id), seg(&cid), seg(&sid));
    let answer = match change {
        Some(enabled) => {
            call(&console, &posted.current, posted.peer, Method::PATCH, &path, Some(&json!({ "enabled": enabled })))
                .await?
        }
        None => call(&console, &posted.current, posted.peer, Method::DELETE, &path, None).await?,
    };
    match answer {
        Answer::Ok(..) => Ok(see_other(&format!("{}/clients/{}", base(&id), seg(&cid)))),
        Answer::Refused(_, e) => client_page(&console, &posted.signed(), &id, &cid, vec![refusal(e)]).await,
    }
}

/// An API refusal as a notice above the page.
fn refusal(errors: FieldErrors) -> Section {
    let text = errors
        .general
        .into_iter()
        .chain(errors.fields.into_iter().map(|(f, m)| format!("{f}: {m}")))
        .collect::<Vec<_>>()
        .join(" ");
    Section::Notice { kind: "error", text }
}

async fn delete_client(
    State(console): State<Console>,
    Path((id, cid)): Path<(String, String)>,
    posted: Posted,
) -> Result {
    let path = format!("{}/clients/{}", api(&id), seg(&cid));
    match call(&console, &posted.current, posted.peer, Method::DELETE, &path, None).await? {
        Answer::Ok(..) => Ok(see_other(&format!("{}/clients", base(&id)))),
        Answer::Refused(_, e) => refused(&console, &posted, &id, e).await,
    }
}

async fn revoke_token(
    State(console): State<Console>,
    Path((id, cid, tid)): Path<(String, String, String)>,
    posted: Posted,
) -> Result {
    let path = format!("{}/clients/{}/tokens/{}", api(&id), seg(&cid), seg(&tid));
    match call(&console, &posted.current, posted.peer, Method::DELETE, &path, None).await? {
        Answer::Ok(..) => Ok(see_other(&format!("{}/clients/{}", base(&id), seg(&cid)))),
        Answer::Refused(_, e) => refused(&console, &posted, &id, e).await,
    }
}

// ---- try it ----

fn try_form(id: &str, clients: Vec<(String, String)>) -> Form {
    Form::new(
        "try-it",
        "Get a token (client_credentials)",
        format!("{}/try", base(id)),
        "Get token",
        vec![
            Field::text("client_id", "Client").options(clients).required(),
            Field::new("client_secret", "Client secret", Kind::Password)
                .required()
                .help("Shown once when the client was created; it is used for this request only and not kept."),
            Field::text("scope", "Scope").help("Space-separated scope names, e.g. my-scope."),
        ],
    )
}

async fn try_view(console: &Console, signed: &Signed, id: &str, form: Option<Form>, results: Vec<Section>) -> Result {
    let server = fetch(console, signed, &api(id)).await?;
    let form = match form {
        Some(f) => f,
        None => try_form(id, client_options(console, signed, id).await?),
    };
    let mut sections = vec![
        Section::Text(format!(
            "Sends POST {}/oauth/token as the tutorial's curl does, then asks the introspection endpoint about the token.",
            s(&server, "issuer")
        )),
        Section::Form(form),
    ];
    sections.extend(results);
    let crumbs = vec![home(), Link::new(s(&server, "name"), base(id))];
    Ok(page(&signed.current, "identity", "Try it", crumbs, sections).into_response())
}

async fn try_page(State(console): State<Console>, signed: Signed, Path(id): Path<String>) -> Result {
    try_view(&console, &signed, &id, None, Vec::new()).await
}

async fn try_it(State(console): State<Console>, Path(id): Path<String>, posted: Posted) -> Result {
    let signed = posted.signed();
    let server = fetch(&console, &signed, &api(&id)).await?;
    let issuer = s(&server, "issuer");
    let clients = client_options(&console, &signed, &id).await?;
    // Only the selected client and the scope go back into the form; the secret is never echoed.
    let kept: Vec<(String, String)> = posted.pairs.iter().filter(|(k, _)| k != "client_secret").cloned().collect();
    let (client_id, secret, scope) = (posted.get("client_id"), posted.get("client_secret"), posted.get("scope").trim());
    let mut form_fields =
        vec![("grant_type", "client_credentials"), ("client_id", client_id), ("client_secret", secret)];
    if !scope.is_empty() {
        form_fields.push(("scope", scope));
    }
    let token =
        crate::oauth::post_form(&console.issuer, &format!("{issuer}/oauth/token"), None, &form_fields, posted.peer)
            .await;
    let (status, answer) = match token {
        Ok(t) => t,
        Err(e) => return Err(e),
    };
    let Some(access) = answer.get("access_token").and_then(Value::as_str) else {
        let message = format!("{}: {}", s(&answer, "error"), s(&answer, "error_description"));
        let errors = FieldErrors {
            general: vec![format!("The token endpoint answered {status}: {message}")],
            fields: Vec::new(),
        };
        return try_view(
            &console,
            &signed,
            &id,
            Some(try_form(&id, clients).with_submission(&kept, &errors)),
            Vec::new(),
        )
        .await;
    };
    let (header, claims) = crate::oauth::decode_jwt(access);
    let basic = crate::oauth::basic(client_id, secret);
    let (_, introspection) = crate::oauth::post_form(
        &console.issuer,
        &format!("{issuer}/introspect"),
        Some(&basic),
        &[("token", access)],
        posted.peer,
    )
    .await?;
    let results = vec![
        Section::Notice { kind: "ok", text: format!("The token endpoint answered {status}.") },
        Section::Secret {
            id: "access-token".into(),
            label: "Access token".into(),
            value: access.to_owned(),
            note: format!(
                "Valid for {} seconds. Send it as Authorization: Bearer … through the proxy.",
                s(&answer, "expires_in")
            ),
        },
        Section::Code { id: "token-header".into(), heading: "Header".into(), text: pretty(&header) },
        Section::Code { id: "token-claims".into(), heading: "Claims".into(), text: pretty(&claims) },
        Section::Code {
            id: "introspection".into(),
            heading: "Introspection answer".into(),
            text: pretty(&introspection),
        },
    ];
    try_view(
        &console,
        &signed,
        &id,
        Some(try_form(&id, clients).with_submission(&kept, &FieldErrors::default())),
        results,
    )
    .await
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}
