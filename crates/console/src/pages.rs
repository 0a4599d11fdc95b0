//! Sign-in, sign-out, the overview and the console's 404.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use crate::session::SignInError;
use crate::view::{Action, Field, Form, Kind, Page, Section};
use crate::{Console, ConsoleError, Posted, Result, Signed, page, same_origin};

fn sign_in_form(token_error: Option<String>) -> Form {
    let mut token = Field::new("token", "Personal access token", Kind::Password).required().help(
        "A token starting gpat_: the quickstart prints one as KONNECT_TOKEN; `gatehouse token create` makes more.",
    );
    token.error = token_error;
    Form::new("signin", "Sign in", "/console/sign-in", "Sign in", vec![token])
}

fn sign_in_view(form: Form, status: StatusCode) -> Response {
    let page = Page {
        title: "Sign in to Gatehouse".into(),
        crumbs: Vec::new(),
        user: None,
        csrf: String::new(),
        area: "",
        sections: vec![
            Section::Text(
                "The console does what your personal access token may do through the platform API, nothing more. \
                 Your session ends after 30 minutes without activity, when you sign out, or when the token is \
                 revoked."
                    .into(),
            ),
            Section::Form(form),
        ],
    };
    (status, page).into_response()
}

pub(crate) async fn sign_in_page(State(console): State<Console>, request: Request) -> Result {
    if console.sessions.current(request.headers()).await?.is_some() {
        return Ok(Redirect::to("/console").into_response());
    }
    Ok(sign_in_view(sign_in_form(None), StatusCode::OK))
}

pub(crate) async fn sign_in(State(console): State<Console>, request: Request) -> Result {
    same_origin(request.headers(), request.uri())?;
    let body = axum::body::to_bytes(request.into_body(), 16 * 1024)
        .await
        .map_err(|_| ConsoleError::Failed(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.".into()))?;
    let token =
        form_urlencoded::parse(&body).find(|(k, _)| k == "token").map(|(_, v)| v.into_owned()).unwrap_or_default();
    match console.sessions.sign_in(&token).await {
        Ok(cookie) => {
            let set = console.sessions.set_cookie(&cookie);
            Ok(([(header::SET_COOKIE, set)], Redirect::to("/console")).into_response())
        }
        Err(SignInError::BadToken) => {
            tracing::info!("console: sign-in refused");
            Ok(sign_in_view(sign_in_form(Some(SignInError::BadToken.to_string())), StatusCode::UNAUTHORIZED))
        }
        Err(SignInError::Store(e)) => Err(e.into()),
    }
}

pub(crate) async fn sign_out(State(console): State<Console>, posted: Posted) -> Response {
    console.sessions.sign_out(&posted.current);
    ([(header::SET_COOKIE, console.sessions.clear_cookie())], Redirect::to("/console/sign-in")).into_response()
}

pub(crate) async fn overview(State(console): State<Console>, signed: Signed) -> Result {
    let _ = &console;
    let sections = vec![
        Section::Text(
            "Kong Identity's tutorial, step by step: generate an access token, create an auth server with a scope, \
             a claim and a client, put the oauth2-introspection plugin on a control plane, then get a token and \
             call the service through the proxy."
                .into(),
        ),
        Section::Actions(vec![
            Action::link("Personal access tokens", "/console/tokens"),
            Action::link("Auth servers", "/console/auth-servers"),
            Action::link("Control planes", "/console/control-planes"),
        ]),
        Section::Details {
            heading: "This node".into(),
            rows: vec![
                crate::view::Detail::text("Proxy", console.proxy_url.clone()),
                crate::view::Detail::text("Platform API", "/v1 (Kong Identity), /v2 (control planes)"),
            ],
        },
    ];
    Ok(page(&signed.current, "overview", "Overview", Vec::new(), sections).into_response())
}

pub(crate) async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, crate::bare_page("Not found", "There is no console page here.", "warn")).into_response()
}
