//! The master key and what is derived from it.
//!
//! One 32-byte key protects everything at rest. HKDF derives a separate key per purpose (a label each), so a key
//! used for one job never doubles for another: HMAC keys for client secrets and personal access tokens, an
//! AES-256-GCM key for signing keys and secret plugin fields, and a key-check value stored in the database so a
//! node started with the wrong key refuses to run instead of failing every login.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use aws_lc_rs::{aead, hkdf, hmac};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use zeroize::Zeroizing;

use gatehouse_model::{SecretHash, SecretString};
use gatehouse_store::{StorageUrl, Store, StoreError};

use crate::config::Config;

const KEY_LEN: usize = 32;
/// Where a database keeps the check value of its master key.
pub const KEY_CHECK_META: &str = "master_key_check";
const KEY_FILE: &str = "master.key";
const SEALED_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the master key must be 32 bytes as base64 or hex")]
    Malformed,
    #[error("cannot read the master key file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot create the master key file {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error(
        "PostgreSQL needs an explicit master key: set GATEHOUSE_MASTER_KEY or master_key_file (every node the same)"
    )]
    MissingForPostgres,
    #[error(
        "this master key is not the one the database was set up with; start with the original key \
         (GATEHOUSE_MASTER_KEY or master_key_file)"
    )]
    Mismatch,
    #[error(
        "the database was set up with a master key, but the key file {path} is missing; restore it from your \
         backup (or give the key as GATEHOUSE_MASTER_KEY). A new key would not open the existing data, so none \
         was created"
    )]
    KeyFileMissing { path: PathBuf },
    #[error(
        "the database {database} is empty (0 bytes), but the master key {key} beside it belongs to an existing \
         installation: the database file was truncated or replaced. Restore it from a backup; to start afresh, \
         move both files away"
    )]
    EmptiedDatabase { database: PathBuf, key: PathBuf },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
#[error("decryption failed: the data was altered or sealed with another key")]
pub struct DecryptError;

pub struct MasterKey(Zeroizing<[u8; KEY_LEN]>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

impl MasterKey {
    pub fn generate() -> Self {
        Self(Zeroizing::new(crate::random::bytes::<KEY_LEN>()))
    }

    /// Accepts standard or URL-safe base64 (padded or not) or 64 hex digits; surrounding whitespace is ignored.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let decoded = if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..KEY_LEN).map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()).collect::<Option<Vec<u8>>>()
        } else {
            [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD].iter().find_map(|e| e.decode(text).ok())
        };
        let bytes = Zeroizing::new(decoded.ok_or(KeyError::Malformed)?);
        let array: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| KeyError::Malformed)?;
        Ok(Self(Zeroizing::new(array)))
    }

    pub fn to_text(&self) -> SecretString {
        SecretString::new(STANDARD.encode(*self.0))
    }

    pub fn derive(&self) -> DerivedKeys {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"gatehouse master key v1").extract(&*self.0);
        let hmac_key = |label: &[u8]| {
            let info = [label];
            hmac::Key::from(prk.expand(&info, hmac::HMAC_SHA256).unwrap_or_else(|_| unreachable!("32-byte output")))
        };
        let info = [b"gatehouse/v1/encryption".as_slice()];
        let aead_okm = prk.expand(&info, &aead::AES_256_GCM).unwrap_or_else(|_| unreachable!("32-byte output"));
        DerivedKeys {
            client_secret: hmac_key(b"gatehouse/v1/client-secret-hmac"),
            pat: hmac_key(b"gatehouse/v1/pat-hmac"),
            key_check: hmac_key(b"gatehouse/v1/key-check"),
            key_auth: hmac_key(b"gatehouse/v1/key-auth-hmac"),
            console_session: hmac_key(b"gatehouse/v1/console-session-hmac"),
            encryption: aead::LessSafeKey::new(aead::UnboundKey::from(aead_okm)),
        }
    }
}

/// The working keys. Cheap to share behind an `Arc`.
pub struct DerivedKeys {
    client_secret: hmac::Key,
    pat: hmac::Key,
    key_check: hmac::Key,
    /// `key-auth`'s API keys: the store's index and the proxy's lookups use this keyed hash, never the key.
    key_auth: hmac::Key,
    /// The web console's session cookies carry their session id with this key's tag, so a cookie minted under
    /// another master key (another installation) is refused before any session lookup.
    console_session: hmac::Key,
    encryption: aead::LessSafeKey,
}

impl fmt::Debug for DerivedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DerivedKeys([redacted])")
    }
}

fn tag(key: &hmac::Key, data: &[u8]) -> SecretHash {
    let t = hmac::sign(key, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(t.as_ref());
    SecretHash(out)
}

impl DerivedKeys {
    /// Client secrets are server-generated and high-entropy, so a keyed hash is as strong as a slow KDF against
    /// guessing and costs a fraction of a microsecond on the token endpoint instead of milliseconds.
    pub fn hash_client_secret(&self, secret: &str) -> SecretHash {
        tag(&self.client_secret, secret.as_bytes())
    }

    pub fn hash_pat(&self, token: &str) -> SecretHash {
        tag(&self.pat, token.as_bytes())
    }

    /// An API key's keyed hash, hex: the column the store finds and keeps keys unique by. The proxy computes the
    /// same with [`Self::key_auth_hmac`].
    pub fn hash_api_key(&self, key: &str) -> String {
        tag(&self.key_auth, key.as_bytes()).to_hex()
    }

    /// The HMAC key of [`Self::hash_api_key`], for the proxy, which is handed this key and not the master key.
    pub fn key_auth_hmac(&self) -> hmac::Key {
        self.key_auth.clone()
    }

    /// The tag a console session cookie carries for its session id.
    pub fn console_session_tag(&self, session_id: &[u8]) -> [u8; 32] {
        tag(&self.console_session, session_id).0
    }

    /// Whether `tag` is this key's tag of `session_id`, compared in constant time.
    pub fn verify_console_session(&self, session_id: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&self.console_session, session_id, tag).is_ok()
    }

    /// The value stored in the database to recognise this key.
    pub fn key_check_value(&self) -> String {
        tag(&self.key_check, b"gatehouse key check").to_hex()
    }

    /// Seals `plaintext`; `context` (e.g. `signing-key:<kid>`) is authenticated, so a sealed value copied to
    /// another row does not open there.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Vec<u8> {
        let nonce = crate::random::bytes::<NONCE_LEN>();
        let mut in_out = plaintext.to_vec();
        // Sealing only fails for inputs beyond 64 GiB.
        self.encryption
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(context.as_bytes()),
                &mut in_out,
            )
            .unwrap_or_else(|_| unreachable!("AES-GCM input within limits"));
        let mut out = Vec::with_capacity(1 + NONCE_LEN + in_out.len());
        out.push(SEALED_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&in_out);
        out
    }

    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        let (version, rest) = sealed.split_first().ok_or(DecryptError)?;
        if *version != SEALED_VERSION || rest.len() < NONCE_LEN {
            return Err(DecryptError);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| DecryptError)?;
        let mut buf = Zeroizing::new(ciphertext.to_vec());
        let len = self
            .encryption
            .open_in_place(nonce, aead::Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| DecryptError)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

/// Where the master key comes from.
#[derive(Debug)]
pub enum KeySource {
    /// Given in the configuration, or read from a key file.
    Found(MasterKey),
    /// None yet: with SQLite, `<data_dir>/master.key` is created once the database shows it never had a key
    /// ([`settle`]).
    ToCreate(PathBuf),
}

/// Finds the master key: `master_key`, else `master_key_file`, else (SQLite only) `<data_dir>/master.key`. Nothing
/// is created here except the data dir (0700), so a missing key never leaves a half-initialised database.
pub fn locate(config: &Config, storage: &StorageUrl) -> Result<KeySource, KeyError> {
    if let StorageUrl::Sqlite(database) = storage {
        refuse_emptied_database(database, config)?;
    }
    if let Some(text) = &config.master_key {
        return MasterKey::parse(text.expose()).map(KeySource::Found);
    }
    if let Some(path) = &config.master_key_file {
        return read_key_file(path).map(KeySource::Found);
    }
    match storage {
        StorageUrl::Postgres(_) => Err(KeyError::MissingForPostgres),
        StorageUrl::Sqlite(_) => {
            gatehouse_store::files::private_dir(&config.data_dir)?;
            let path = config.data_dir.join(KEY_FILE);
            if path.exists() { read_key_file(&path).map(KeySource::Found) } else { Ok(KeySource::ToCreate(path)) }
        }
    }
}

/// The key to run with. A key file is created only for a database that never had a key: one that has a key-check
/// value needs its own key back, and a fresh key would only make every later start fail too.
pub async fn settle(source: KeySource, store: &dyn Store) -> Result<MasterKey, KeyError> {
    match source {
        KeySource::Found(key) => Ok(key),
        KeySource::ToCreate(path) => {
            if store.get_meta(KEY_CHECK_META).await?.is_some() {
                return Err(KeyError::KeyFileMissing { path });
            }
            create_key_file(&path)
        }
    }
}

/// A 0-byte SQLite database would silently start as a fresh install; with a master key file about (the one the
/// node would use, or one beside the database) it is lost data.
fn refuse_emptied_database(database: &Path, config: &Config) -> Result<(), KeyError> {
    let empty = std::fs::metadata(database).is_ok_and(|m| m.is_file() && m.len() == 0);
    if !empty {
        return Ok(());
    }
    let keys = [
        config.master_key_file.clone(),
        Some(config.data_dir.join(KEY_FILE)),
        database.parent().map(|dir| dir.join(KEY_FILE)),
    ];
    match keys.into_iter().flatten().find(|key| key.exists()) {
        Some(key) => Err(KeyError::EmptiedDatabase { database: database.to_owned(), key }),
        None => Ok(()),
    }
}

fn read_key_file(path: &Path) -> Result<MasterKey, KeyError> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|source| KeyError::Read { path: path.to_owned(), source })?,
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), "the master key file is readable by other users; chmod 600 it");
        }
    }
    MasterKey::parse(&text)
}

fn create_key_file(path: &Path) -> Result<MasterKey, KeyError> {
    let create_error = |source| KeyError::Create { path: path.to_owned(), source };
    let key = MasterKey::generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(create_error)?;
    file.write_all(format!("{}\n", key.to_text().expose()).as_bytes()).map_err(create_error)?;
    file.sync_all().map_err(create_error)?;
    tracing::info!(path = %path.display(), "created a new master key; back it up with the database");
    Ok(key)
}

/// Whether a node has set this database up (it holds a key-check value): commands that manage an existing node
/// refuse a database that is not.
pub async fn is_set_up(store: &dyn Store) -> Result<bool, StoreError> {
    Ok(store.get_meta(KEY_CHECK_META).await?.is_some())
}

/// Whether `keys` come from the key a database holding `stored` (its check value) was set up with, e.g. before a
/// backup is restored.
pub fn opens(keys: &DerivedKeys, stored: &str) -> bool {
    let ours = keys.key_check_value();
    aws_lc_rs::constant_time::verify_slices_are_equal(stored.as_bytes(), ours.as_bytes()).is_ok()
}

/// Records the key-check value on first start and refuses a different key afterwards.
pub async fn verify(store: &dyn Store, keys: &DerivedKeys) -> Result<(), KeyError> {
    let stored = store.init_meta(KEY_CHECK_META, &keys.key_check_value()).await?;
    if opens(keys, &stored) { Ok(()) } else { Err(KeyError::Mismatch) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_base64_and_hex() {
        let k = MasterKey::generate();
        let text = k.to_text();
        let again = MasterKey::parse(text.expose()).unwrap();
        assert_eq!(*k.0, *again.0);
        let hex: String = k.0.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(*MasterKey::parse(&hex).unwrap().0, *k.0);
        assert!(MasterKey::parse("short").is_err());
        assert!(MasterKey::parse(&STANDARD.encode([0u8; 31])).is_err());
        assert_eq!(format!("{k:?}"), "MasterKey([redacted])");
    }

    #[test]
    fn derived_keys_are_separate_and_deterministic() {
        let k = MasterKey::parse(&"11".repeat(32)).unwrap();
        let a = k.derive();
        let b = k.derive();
        assert_eq!(a.hash_client_secret("s"), b.hash_client_secret("s"));
        assert_ne!(a.hash_client_secret("s"), a.hash_pat("s"), "one label per purpose");
        assert_eq!(a.key_check_value(), b.key_check_value());
        let other = MasterKey::parse(&"22".repeat(32)).unwrap().derive();
        assert_ne!(a.key_check_value(), other.key_check_value());
    }

    #[test]
    fn seal_and_open() {
        let keys = MasterKey::generate().derive();
        let sealed = keys.seal("signing-key:1", b"private");
        assert_eq!(&*keys.open("signing-key:1", &sealed).unwrap(), b"private");
        assert!(keys.open("signing-key:2", &sealed).is_err(), "bound to its context");
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(keys.open("signing-key:1", &tampered).is_err());
        assert!(MasterKey::generate().derive().open("signing-key:1", &sealed).is_err());
        assert!(keys.open("x", &[]).is_err());
        assert_ne!(keys.seal("c", b"same"), keys.seal("c", b"same"), "fresh nonce each time");
    }

    /// What a node does at start: find the key, open storage, create the key file if due, check the key.
    async fn start(config: &Config) -> Result<MasterKey, KeyError> {
        let storage = config.storage_url().unwrap();
        let source = locate(config, &storage)?;
        let store = gatehouse_store::open(&storage).await?;
        let key = settle(source, store.as_ref()).await?;
        verify(store.as_ref(), &key.derive()).await?;
        Ok(key)
    }

    #[tokio::test]
    async fn key_file_is_created_private_and_reused() {
        let dir = gatehouse_store::testing::TempDir::new("mk");
        let config = Config { data_dir: dir.path().join("data"), ..Config::default() };
        let first = start(&config).await.unwrap();
        let second = start(&config).await.unwrap();
        assert_eq!(*first.0, *second.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(config.data_dir.join("master.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let pg = StorageUrl::parse("postgres://localhost/x").unwrap();
        assert!(matches!(locate(&config, &pg), Err(KeyError::MissingForPostgres)));
    }

    #[tokio::test]
    async fn a_deleted_key_file_is_not_replaced_by_a_new_key() {
        let dir = gatehouse_store::testing::TempDir::new("mk");
        let config = Config { data_dir: dir.path().to_owned(), ..Config::default() };
        let original = start(&config).await.unwrap();
        let key_file = dir.path().join("master.key");
        std::fs::remove_file(&key_file).unwrap();
        for _ in 0..2 {
            let err = start(&config).await.unwrap_err();
            assert!(matches!(&err, KeyError::KeyFileMissing { path } if *path == key_file), "{err}");
            assert!(!key_file.exists(), "no new key was written");
        }
        std::fs::write(&key_file, format!("{}\n", original.to_text().expose())).unwrap();
        assert_eq!(*start(&config).await.unwrap().0, *original.0, "the restored key works");
    }

    #[tokio::test]
    async fn an_emptied_database_beside_its_key_is_refused() {
        let dir = gatehouse_store::testing::TempDir::new("mk");
        let config = Config { data_dir: dir.path().to_owned(), ..Config::default() };
        // What a truncated database (a botched copy, a full disk during a restore) looks like.
        let database = dir.path().join("gatehouse.db");
        std::fs::write(dir.path().join("master.key"), MasterKey::generate().to_text().expose()).unwrap();
        std::fs::write(&database, b"").unwrap();
        let err = start(&config).await.unwrap_err();
        assert!(matches!(err, KeyError::EmptiedDatabase { .. }), "{err}");
        assert_eq!(std::fs::metadata(&database).unwrap().len(), 0, "left as found");
        // An explicit key does not make it any less of an accident.
        let explicit = Config { master_key: Some(MasterKey::generate().to_text()), ..config.clone() };
        assert!(matches!(start(&explicit).await.unwrap_err(), KeyError::EmptiedDatabase { .. }));
        // The database elsewhere than the data dir: the data dir's key still marks it as lost data.
        let elsewhere = gatehouse_store::testing::TempDir::new("mk-db");
        let moved = elsewhere.path().join("gatehouse.db");
        std::fs::write(&moved, b"").unwrap();
        let split = Config {
            storage: crate::config::StorageConfig {
                url: Some(format!("sqlite://{}", moved.display())),
                ..Default::default()
            },
            ..config.clone()
        };
        assert!(matches!(start(&split).await.unwrap_err(), KeyError::EmptiedDatabase { .. }));
        // Without a key about, an empty file is a fresh database.
        std::fs::remove_file(dir.path().join("master.key")).unwrap();
        start(&config).await.unwrap();
    }
}
