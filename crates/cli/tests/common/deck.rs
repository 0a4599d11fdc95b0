//! decK as a user runs it (the binary, as `gatehouse gateway …` and `gatehouse file …`), in a directory of its own,
//! against a node's Admin API or in Konnect mode; and readers of its console output.

use gatehouse_store::testing::TempDir;
use gatehouse_testkit::{TestNode, run_with_input};

use super::bin;

/// Where decK commands run: a directory for files, and how to reach the node.
pub struct Deck {
    pub dir: TempDir,
    pub env: Vec<(&'static str, String)>,
}

impl Deck {
    /// Against the node's Kong Admin API.
    pub fn admin(node: &TestNode) -> Deck {
        Deck { dir: TempDir::new("deck"), env: vec![("DECK_KONG_ADDR", node.node.admin_url())] }
    }

    /// Konnect mode against the node's platform API and its served control plane.
    pub fn konnect(node: &TestNode) -> Deck {
        Deck {
            dir: TempDir::new("deck"),
            env: vec![
                ("DECK_KONNECT_ADDR", node.platform.clone()),
                ("DECK_KONNECT_TOKEN", node.token.clone()),
                ("DECK_KONNECT_CONTROL_PLANE_NAME", node.node.control_plane.name.clone()),
            ],
        }
    }

    pub fn write(&self, name: &str, text: &str) -> String {
        std::fs::write(self.dir.path().join(name), text).unwrap();
        name.to_owned()
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap()
    }

    /// `gatehouse gateway ARGS` (or `gatehouse file …` when `args` starts with `file`).
    pub async fn run(&self, args: &[&str]) -> (i32, String, String) {
        self.run_input(args, None).await
    }

    pub async fn run_input(&self, args: &[&str], input: Option<&str>) -> (i32, String, String) {
        let mut all = vec!["gateway"];
        if args.first() == Some(&"file") {
            all.clear();
        }
        all.extend_from_slice(args);
        run_with_input(&bin(), &all, &self.env, self.dir.path(), input).await
    }

    /// Runs and expects success; returns stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args).await;
        assert_eq!(code, 0, "{args:?} failed\nstdout:\n{out}\nstderr:\n{err}");
        out
    }
}

/// The console lines before the summary.
pub fn lines(out: &str) -> Vec<&str> {
    out.lines().take_while(|l| *l != "Summary:").filter(|l| !l.starts_with([' ', '-', '+'])).collect()
}

pub fn summary(out: &str) -> (usize, usize, usize) {
    let count = |what: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(what))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {what} in\n{out}"))
    };
    (count("Created:"), count("Updated:"), count("Deleted:"))
}
