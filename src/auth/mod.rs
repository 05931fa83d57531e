//! Admin authentication: a Redis session behind a cookie (SPEC §2, §3.4).
//!
//! Runs on the shard that accepted the connection, before the upgrade is
//! answered, and again every `--session-recheck-interval` for every admin
//! connection of the shard in one `MGET`. A session is valid when
//! `GET session:<id>` holds a JSON object with a string `user_id` and
//! `"role": "admin"`.

pub mod redis;

use simd_json::prelude::*;

use self::redis::{RedisClient, RedisError};

/// A valid admin session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The cookie's session id (the Redis key is `session:<id>`).
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
    /// Redis did not answer in time (503).
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

/// The Redis key of a session id.
pub fn session_key(session_id: &str) -> String {
    format!("session:{session_id}")
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
pub async fn authenticate(redis: Option<&RedisClient>, cookie: Option<&str>) -> Result<Session, AuthError> {
    let redis = redis.ok_or(AuthError::NotConfigured)?;
    let session_id = cookie.and_then(session_cookie).ok_or(AuthError::MissingCookie)?;
    match redis.get(&session_key(session_id)).await {
        Ok(Some(stored)) => parse_session(session_id, &stored),
        Ok(None) => Err(AuthError::UnknownSession),
        // Redis answered: a key of another type holds no session (401, as
        // the re-check's MGET, which reads it as nil, closes it with 4001).
        Err(err) if err.is_wrong_type() => Err(AuthError::Malformed),
        Err(err) => Err(AuthError::Unavailable(err.to_string())),
    }
}

/// Re-checks sessions in one round trip: `true` for each still valid.
/// `Err` when Redis cannot answer; callers then keep connections open.
pub async fn recheck(redis: &RedisClient, session_ids: &[&str]) -> Result<Vec<bool>, RedisError> {
    let keys: Vec<String> = session_ids.iter().map(|id| session_key(id)).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let values = redis.mget(&keys).await?;
    Ok(session_ids
        .iter()
        .zip(values)
        .map(|(id, value)| value.is_some_and(|stored| parse_session(id, &stored).is_ok()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

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
            parse_session("abc", br#"{"user_id":"u1","role":"admin"}"#),
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
}
