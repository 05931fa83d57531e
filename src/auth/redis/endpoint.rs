//! The Redis URL, parsed once into where to connect and how to log in, and
//! the dialing of it.
//!
//! `RedisClient::new` parses it before any I/O; `connection` reads it at each
//! (re)connect to dial the host and queue `AUTH`/`SELECT`. Plain data, shared
//! with `Rc` on the client's shard.
//!
//! Invariant: a parsed `Endpoint` has a non-empty host, a non-zero port and
//! no user name without a password; no error message contains the password.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use glommio::net::TcpStream;

use super::RedisError;

/// Port used when the URL names none.
const DEFAULT_PORT: u16 = 6379;

/// Where to connect and how to log in, parsed once from the URL.
pub(super) struct Endpoint {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) db: u32,
}

impl Endpoint {
    /// Parses `redis://[[user]:password@]host[:port][/db]`. User and password
    /// may be percent-encoded. Error messages never contain the password.
    pub(super) fn parse(url: &str) -> Result<Self, RedisError> {
        let bad = |reason: String| RedisError::BadUrl(reason);
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| bad("scheme must be redis:// (TLS and unix sockets are not supported)".into()))?;
        if rest.contains(['?', '#']) {
            return Err(bad("query parameters and fragments are not supported".into()));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(userinfo) => {
                let (user, password) = userinfo
                    .split_once(':')
                    .ok_or_else(|| bad("credentials must be written [user]:password@".into()))?;
                (non_empty(percent_decode(user)?), non_empty(percent_decode(password)?))
            }
        };
        if username.is_some() && password.is_none() {
            return Err(bad("a user name needs a password".into()));
        }
        let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
            // IPv6 literal: [::1]:6379
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| bad(format!("unclosed '[' in host {hostport:?}")))?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| bad(format!("unexpected {after:?} after IPv6 host")))?,
                ),
            };
            (host, port)
        } else {
            match hostport.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("missing host".into()));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port != 0 => port,
                _ => return Err(bad(format!("bad port {port:?}"))),
            },
        };
        let db = match path {
            "" => 0,
            db => db
                .parse::<u32>()
                .map_err(|_| bad(format!("bad database number {db:?}")))?,
        };
        Ok(Endpoint {
            host: host.to_owned(),
            port,
            username,
            password,
            db,
        })
    }

    /// Dials the host: every address it resolves to, in order, until one
    /// answers.
    pub(super) async fn connect(&self) -> io::Result<TcpStream> {
        let mut last_err = io::Error::new(io::ErrorKind::NotFound, "host resolved to no address");
        for addr in resolve(&self.host, self.port).await? {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    // Commands and replies are small; do not let Nagle hold them.
                    stream.set_nodelay(true).map_err(io::Error::from)?;
                    return Ok(stream);
                }
                Err(err) => last_err = err.into(),
            }
        }
        Err(last_err)
    }
}

/// The addresses of `host`, looked up again at each connect (so a Redis
/// that moves to a new address is found). `getaddrinfo` blocks, for seconds
/// when DNS is slow, and would stall every connection of the shard: it runs
/// on the executor's blocking thread, and the shard awaits it like any I/O
/// (the caller's timeout still bounds it). An IP literal needs no lookup.
async fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let host = host.to_owned();
    glommio::executor()
        .spawn_blocking(move || (host.as_str(), port).to_socket_addrs().map(Iterator::collect))
        .await
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Decodes `%XX` escapes (RFC 3986 2.1) in the userinfo part of the URL.
fn percent_decode(s: &str) -> Result<String, RedisError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| RedisError::BadUrl("bad percent escape in credentials".into()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| RedisError::BadUrl("credentials are not UTF-8 after percent-decoding".into()))
}
