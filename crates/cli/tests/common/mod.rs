//! Running the real `gatehouse` binary against a test database.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use gatehouse_runtime::master_key::MasterKey;
use gatehouse_store::StorageUrl;
use gatehouse_store::testing::{TempDir, TestDatabase};
use gatehouse_testkit::{GatehouseProcess, run_to_end};

/// Every listener on an ephemeral port, so parallel tests never collide on the quickstart's fixed ports.
pub fn ephemeral_listeners() -> [(&'static str, String); 5] {
    [
        "GATEHOUSE_PLATFORM__LISTEN",
        "GATEHOUSE_ISSUER__LISTEN",
        "GATEHOUSE_PROXY__LISTEN",
        "GATEHOUSE_ADMIN__LISTEN",
        "GATEHOUSE_ECHO__LISTEN",
    ]
    .map(|var| (var, "127.0.0.1:0".to_owned()))
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gatehouse"))
}

/// The environment that points a `gatehouse` process at `db`, with every listener on port 0.
pub struct ProcessEnv {
    pub dir: TempDir,
    pub vars: Vec<(&'static str, String)>,
}

impl ProcessEnv {
    pub fn for_db(db: &TestDatabase) -> Self {
        let dir = TempDir::new("gatehouse-proc");
        let mut vars = vec![
            ("GATEHOUSE_DATA_DIR", dir.path().display().to_string()),
            ("GATEHOUSE_PLATFORM__LISTEN", "127.0.0.1:0".to_owned()),
            ("GATEHOUSE_ISSUER__LISTEN", "127.0.0.1:0".to_owned()),
            ("GATEHOUSE_PROXY__LISTEN", "127.0.0.1:0".to_owned()),
            ("GATEHOUSE_ADMIN__LISTEN", "127.0.0.1:0".to_owned()),
            ("GATEHOUSE_ECHO__LISTEN", "127.0.0.1:0".to_owned()),
        ];
        match &db.url {
            StorageUrl::Sqlite(path) => vars.push(("GATEHOUSE_STORAGE__URL", format!("sqlite://{}", path.display()))),
            StorageUrl::Postgres(s) => {
                vars.push(("GATEHOUSE_STORAGE__URL", s.url.clone()));
                vars.push(("GATEHOUSE_STORAGE__SCHEMA", s.schema.clone().unwrap_or_default()));
                vars.push(("GATEHOUSE_MASTER_KEY", MasterKey::generate().to_text().expose().to_owned()));
            }
        }
        Self { dir, vars }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.vars.push((key, value.into()));
        self
    }

    /// `gatehouse token create --name NAME`; returns the token.
    pub async fn create_token(&self, name: &str) -> String {
        let (code, stdout, stderr) =
            run_to_end(&bin(), &["token", "create", "--name", name], &self.vars, self.path()).await;
        assert_eq!(code, 0, "token create failed: {stderr}");
        stdout.lines().next().unwrap_or_default().to_owned()
    }

    /// `gatehouse serve --log-format json` plus `args`; returns the process and the platform URL.
    pub async fn serve(&self, args: &[&str]) -> (GatehouseProcess, String) {
        let mut all = vec!["serve", "--log-format", "json"];
        all.extend_from_slice(args);
        let mut p = GatehouseProcess::spawn(&bin(), &all, &self.vars, self.path());
        let addr = p.listener_address("platform").await;
        (p, format!("http://{addr}"))
    }
}
