//! Admin authentication: a session behind a cookie (SPEC §2, §3.4).
//!
//! Runs on the shard that accepted the connection, before the upgrade is
//! answered, and again every `--session-recheck-interval` for every admin
//! connection of the shard in one round trip. A session is valid when the
//! store holds, under its id, a JSON object with a string `user_id` and
//! `"role": "admin"`.
//!
//! Sessions live behind the [`SessionStore`] seam: Redis in production
//! ([`redis::RedisClient`], key `session:<id>`), [`MemorySessionStore`] in
//! unit tests. A store is owned by one shard (`!Send`, `Rc`-friendly).

mod memory;
pub mod redis;

use std::future::Future;
use std::pin::Pin;

use simd_json::prelude::*;

pub use self::memory::MemorySessionStore;

/// What a store's calls return: a future on the calling shard.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + 'a>>;

/// Where admin sessions are kept.
pub trait SessionStore {
    /// The stored value of session `session_id`; `Ok(None)` when there is
    /// none.
    fn session<'a>(&'a self, session_id: &'a str) -> StoreFuture<'a, Option<Vec<u8>>>;

    /// The stored values of several sessions in one round trip, in order; a
    /// key that holds no session value reads as `None`.
    fn sessions<'a>(&'a self, session_ids: &'a [&'a str]) -> StoreFuture<'a, Vec<Option<Vec<u8>>>>;

    /// `Ok` when the store answers (`/readyz`).
    fn ping(&self) -> StoreFuture<'_, ()>;
}

/// Why a store call gave no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store answered: the key holds something that is not a session
    /// value (e.g. Redis `WRONGTYPE`).
    #[error("the session key holds no session value")]
    NotASession,
    /// The store could not answer (unreachable, timed out).
    #[error("{0}")]
    Unavailable(String),
}

/// A valid admin session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The cookie's session id.
    pub session_id: Box<str>,
    /// The session's user.
    pub user_id: String,
}

/// Why an admin upgrade is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `--redis-url`: admin connections cannot be checked (503).
    #[error("admin sessions are not configured (start fanout with --redis-url)")]
    NotConfigured,
    /// No `session_id` cookie (401).
    #[error("missing session_id cookie")]
    MissingCookie,
    /// No such session (401).
    #[error("unknown session")]
    UnknownSession,
    /// The stored session is not the JSON of SPEC §2 (401).
    #[error("malformed session")]
    Malformed,
    /// A valid session whose role is not admin (401).
    #[error("session role is not admin")]
    NotAdmin,
    /// The store did not answer in time (503).
    #[error("session store unavailable: {0}")]
    Unavailable(String),
}

/// The `session_id` value of a `Cookie` header.
pub fn session_cookie(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == "session_id")
        .map(|(_, value)| value.trim().trim_matches('"'))
        .filter(|value| !value.is_empty())
}

/// Checks a stored session value: JSON with a string `user_id` and role admin.
pub fn parse_session(session_id: &str, stored: &[u8]) -> Result<Session, AuthError> {
    let mut bytes = stored.to_vec();
    let value = simd_json::to_borrowed_value(&mut bytes).map_err(|_| AuthError::Malformed)?;
    let object = value.as_object().ok_or(AuthError::Malformed)?;
    let user_id = object
        .get("user_id")
        .and_then(|v| v.as_str())
        .ok_or(AuthError::Malformed)?;
    match object.get("role").map(|v| v.as_str()) {
        Some(Some("admin")) => Ok(Session {
            session_id: Box::from(session_id),
            user_id: user_id.to_string(),
        }),
        Some(Some(_)) => Err(AuthError::NotAdmin),
        _ => Err(AuthError::Malformed),
    }
}

/// Authenticates an admin upgrade from its `Cookie` header.
pub async fn authenticate(store: Option<&dyn SessionStore>, cookie: Option<&str>) -> Result<Session, AuthError> {
    let store = store.ok_or(AuthError::NotConfigured)?;
    let session_id = cookie.and_then(session_cookie).ok_or(AuthError::MissingCookie)?;
    match store.session(session_id).await {
        Ok(Some(stored)) => parse_session(session_id, &stored),
        Ok(None) => Err(AuthError::UnknownSession),
        // The store answered: a key of another type holds no session (401,
        // as the re-check, which reads it as absent, closes it with 4001).
        Err(StoreError::NotASession) => Err(AuthError::Malformed),
        Err(StoreError::Unavailable(err)) => Err(AuthError::Unavailable(err)),
    }
}

/// Re-checks sessions in one round trip: `true` for each still valid.
/// `Err` when the store cannot answer; callers then keep connections open
/// (SPEC §3.4: only a definite answer closes).
pub async fn recheck(store: &dyn SessionStore, session_ids: &[&str]) -> Result<Vec<bool>, StoreError> {
    let values = store.sessions(session_ids).await?;
    Ok(session_ids
        .iter()
        .zip(values)
        .map(|(id, value)| value.is_some_and(|stored| parse_session(id, &stored).is_ok()))
        .collect())
}

#[cfg(test)]
mod tests {
    use futures_lite::future::block_on;

    use super::*;

    const ADMIN: &[u8] = br#"{"user_id":"u1","role":"admin"}"#;

    #[test]
    fn cookie_is_found_among_others() {
        assert_eq!(session_cookie("theme=dark; session_id=abc; x=1"), Some("abc"));
        assert_eq!(session_cookie("session_id="), None);
        assert_eq!(session_cookie("other=1"), None);
        assert_eq!(session_cookie("my_session_id=zzz"), None);
    }

    #[test]
    fn sessions_are_classified() {
        assert_eq!(
            parse_session("abc", ADMIN),
            Ok(Session {
                session_id: "abc".into(),
                user_id: "u1".into()
            })
        );
        assert_eq!(
            parse_session("abc", br#"{"user_id":"u1","role":"student"}"#),
            Err(AuthError::NotAdmin)
        );
        assert_eq!(parse_session("abc", br#"{"role":"admin"}"#), Err(AuthError::Malformed));
        assert_eq!(parse_session("abc", br#"{"user_id":"u1"}"#), Err(AuthError::Malformed));
        assert_eq!(parse_session("abc", b"not json"), Err(AuthError::Malformed));
        assert_eq!(parse_session("abc", b"[]"), Err(AuthError::Malformed));
    }

    #[test]
    fn authentication_maps_each_store_answer_to_its_status() {
        let store = MemorySessionStore::default();
        store.insert("abc", ADMIN);
        store.insert("stu", br#"{"user_id":"u2","role":"student"}"#);
        let auth = |cookie: Option<&str>| block_on(authenticate(Some(&store), cookie));
        assert_eq!(auth(Some("session_id=abc")).map(|s| s.user_id), Ok("u1".into()));
        assert_eq!(auth(None), Err(AuthError::MissingCookie));
        assert_eq!(auth(Some("session_id=nope")), Err(AuthError::UnknownSession));
        assert_eq!(auth(Some("session_id=stu")), Err(AuthError::NotAdmin));
        store.set_available(false);
        assert!(matches!(auth(Some("session_id=abc")), Err(AuthError::Unavailable(_))));
        assert_eq!(
            block_on(authenticate(None, Some("session_id=abc"))),
            Err(AuthError::NotConfigured)
        );
    }

    #[test]
    fn recheck_revokes_deleted_demoted_and_malformed_sessions_only() {
        let store = MemorySessionStore::default();
        for id in ["keep", "gone", "demoted", "broken"] {
            store.insert(id, ADMIN);
        }
        store.remove("gone");
        store.insert("demoted", br#"{"user_id":"u1","role":"student"}"#);
        store.insert("broken", b"{");
        let ids = ["keep", "gone", "demoted", "broken"];
        assert_eq!(block_on(recheck(&store, &ids)), Ok(vec![true, false, false, false]));
        // A store that cannot answer revokes nothing.
        store.set_available(false);
        assert!(matches!(
            block_on(recheck(&store, &ids)),
            Err(StoreError::Unavailable(_))
        ));
    }
}
