//! `gatehouse quickstart`: everything on one machine with embedded storage, and the `export` lines that point the
//! tutorial's commands at it.

use std::io::Write;

use gatehouse_runtime::auth::{PatError, issue_pat};

use crate::node::RunningNode;

pub const QUICKSTART_TOKEN_NAME: &str = "quickstart";
/// The control plane the quickstart serves, as Konnect's quickstart names it.
pub const QUICKSTART_CONTROL_PLANE: &str = "quickstart";
pub const READY_LINE: &str = "Gatehouse Ready";

/// Replaces the previous quickstart token (so the printed exports always work) and prints the exports.
pub async fn announce(node: &RunningNode, out: &mut impl Write) -> Result<(), PatError> {
    let issued = issue_pat(&node.services, QUICKSTART_TOKEN_NAME, None, true).await?;
    let platform = node.platform_url();
    let _ = writeln!(out, "export KONNECT_TOKEN='{}'", issued.token.expose());
    let _ = writeln!(out, "export DECK_KONNECT_TOKEN=$KONNECT_TOKEN");
    let _ = writeln!(out, "export DECK_KONNECT_CONTROL_PLANE_NAME={}", node.control_plane.name);
    let _ = writeln!(out, "export DECK_KONNECT_ADDR={platform}");
    let _ = writeln!(out, "export KONNECT_CONTROL_PLANE_URL={platform}");
    let _ = writeln!(out, "export KONNECT_PROXY_URL='{}'", node.proxy_url());
    let _ = writeln!(out, "export STATUS_URL={}", node.status_url());
    if let Some(echo) = node.echo_url() {
        let _ = writeln!(out, "export ECHO_URL={echo}");
    }
    // The tutorial runs decK as `deck`: the binary behaves as decK under that name.
    let exe = std::env::current_exe().map_or_else(|_| "gatehouse".to_owned(), |p| p.display().to_string());
    let _ = writeln!(out, "# The tutorial's `deck` commands: put decK on the PATH with");
    let _ = writeln!(out, "#   mkdir -p ~/.local/bin && ln -sf '{exe}' ~/.local/bin/deck");
    let _ = writeln!(out, "{READY_LINE}");
    let _ = out.flush();
    Ok(())
}
