//! Schema migrations, append-only per dialect, embedded in the binary and run at start.
//!
//! A migration is never edited once merged: add the next version to both lists. The migration tests apply the
//! versions up to an older one, insert that version's rows, then migrate to the latest and read them back.

use std::borrow::Cow;

use sqlx::SqlStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

const SQLITE: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/sqlite/0001_initial.sql")),
    (2, "issued tokens", include_str!("../migrations/sqlite/0002_issued_tokens.sql")),
    (3, "gateway", include_str!("../migrations/sqlite/0003_gateway.sql")),
    (4, "rate limiting", include_str!("../migrations/sqlite/0004_rate_limiting.sql")),
    (5, "certificates", include_str!("../migrations/sqlite/0005_certificates.sql")),
    (6, "upstreams", include_str!("../migrations/sqlite/0006_upstreams.sql")),
    (7, "cluster", include_str!("../migrations/sqlite/0007_cluster.sql")),
];
const POSTGRES: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/postgres/0001_initial.sql")),
    (2, "issued tokens", include_str!("../migrations/postgres/0002_issued_tokens.sql")),
    (3, "gateway", include_str!("../migrations/postgres/0003_gateway.sql")),
    (4, "rate limiting", include_str!("../migrations/postgres/0004_rate_limiting.sql")),
    (5, "certificates", include_str!("../migrations/postgres/0005_certificates.sql")),
    (6, "upstreams", include_str!("../migrations/postgres/0006_upstreams.sql")),
    (7, "cluster", include_str!("../migrations/postgres/0007_cluster.sql")),
];

fn migrator(list: &'static [(i64, &'static str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        list.iter()
            .map(|(version, name, sql)| {
                Migration::new(*version, Cow::Borrowed(*name), MigrationType::Simple, SqlStr::from_static(sql), false)
            })
            .collect(),
    )
}

pub fn sqlite() -> Migrator {
    migrator(SQLITE)
}

pub fn postgres() -> Migrator {
    migrator(POSTGRES)
}

/// The newest schema version this build knows.
pub fn latest_version() -> i64 {
    SQLITE.last().map_or(0, |m| m.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_dialects_have_the_same_versions() {
        let v = |l: &[(i64, &str, &str)]| l.iter().map(|m| (m.0, m.1.to_owned())).collect::<Vec<_>>();
        assert_eq!(v(SQLITE), v(POSTGRES));
        assert!(SQLITE.windows(2).all(|w| w[0].0 + 1 == w[1].0), "versions are consecutive");
    }
}
