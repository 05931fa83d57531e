//! Accept, read the HTTP request, answer it or upgrade it (SPEC §2).
//!
//! Runs on every shard over its own SO_REUSEPORT listener. Checks run in the
//! order SPEC §2 gives: path and method, Origin (403), connection limit
//! (503), admin session (401, or 503 when Redis cannot answer). Only a
//! request that passes all of them gets `101`; nothing is upgraded and then
//! closed. The request head is bounded in size (431) and time.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use glommio::net::{TcpListener, TcpStream};

use super::{ConnId, Role, Shard, task};
use crate::auth::{self, AuthError};
use crate::protocol::Reply;
use crate::protocol::frame;
use crate::protocol::http::{self, Head, Request};

/// Accepts connections until the task is dropped (shutdown).
pub async fn run(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                shard.metrics.accepted.inc();
                glommio::spawn_local(handshake(shard.clone(), stream)).detach();
            }
            Err(err) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(shard = shard.id.0, error = %err, "accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Answers one request; an upgraded connection continues on the shard's
/// I/O task, so none of the handshake's state (head buffer, parsed headers)
/// stays allocated for the connection's lifetime.
async fn handshake(shard: Rc<Shard>, stream: TcpStream) {
    if let Some((id, leftover)) = upgrade(&shard, stream).await {
        task::serve(&shard, id, leftover);
    }
}

/// An upgraded connection (its socket now in the shard): its slot, and the
/// bytes read past the head.
type Upgraded = (ConnId, Vec<u8>);

/// What reading the request head came to.
enum Read {
    Head(Request, Vec<u8>),
    TooLarge,
    Malformed,
    Closed,
}

/// Reads and routes the request; `Some` when it was upgraded and registered.
async fn upgrade(shard: &Rc<Shard>, mut stream: TcpStream) -> Option<Upgraded> {
    let _ = stream.set_nodelay(true);
    let deadline = shard.config.handshake_timeout;
    let head = read_head(&mut stream, shard.config.max_header_bytes)
        .or(async {
            glommio::timer::sleep(deadline).await;
            Read::Closed
        })
        .await;
    let (request, leftover) = match head {
        Read::Head(request, leftover) => (request, leftover),
        Read::TooLarge => return answer(shard, stream, 431, "request header fields too large\n").await,
        Read::Malformed => return answer(shard, stream, 400, "malformed HTTP request\n").await,
        Read::Closed => return None,
    };
    if request.method != "GET" {
        return answer(shard, stream, 405, "only GET is served\n").await;
    }
    let path = request.path.split('?').next().unwrap_or("");
    let role = match path {
        "/healthz" => return healthz(shard, stream).await,
        "/readyz" => return ready(shard, stream).await,
        "/metrics" => {
            let body = shard.shared.registry.render();
            respond_with(shard, stream, 200, "text/plain; version=0.0.4", &body).await;
            return None;
        }
        "/ws/availability" => Role::Public,
        "/ws" => Role::Admin,
        _ => return answer(shard, stream, 404, "not found\n").await,
    };
    let key = match (&request.key, request.upgrade_websocket && request.connection_upgrade) {
        (Some(key), true) if request.version.as_deref() == Some("13") => key.clone(),
        _ => return answer(shard, stream, 400, "expected a WebSocket upgrade (version 13)\n").await,
    };
    if !origin_allowed(shard, request.origin.as_deref()) {
        return answer(shard, stream, 403, "origin not allowed\n").await;
    }
    let shared = &shard.shared;
    if shared.shutting_down.load(Ordering::Relaxed) {
        return answer(shard, stream, 503, "shutting down\n").await;
    }
    if shared.connection_count.fetch_add(1, Ordering::Relaxed) >= shard.config.max_connections {
        shared.connection_count.fetch_sub(1, Ordering::Relaxed);
        return answer(shard, stream, 503, "connection limit reached\n").await;
    }
    let session = match role {
        Role::Public => None,
        Role::Admin => match auth::authenticate(shard.sessions.as_deref(), request.cookie.as_deref()).await {
            Ok(session) => Some(session),
            Err(err) => {
                shared.connection_count.fetch_sub(1, Ordering::Relaxed);
                let status = match err {
                    AuthError::Unavailable(_) | AuthError::NotConfigured => 503,
                    _ => 401,
                };
                tracing::info!(shard = shard.id.0, status, reason = %err, "admin upgrade refused");
                return answer(shard, stream, status, &format!("{err}\n")).await;
            }
        },
    };
    // Shutdown may have begun while Redis answered, and this shard's 1001s
    // may be out already. The flag is set before any shard closes its
    // clients, and nothing awaits between this check and `register`: a
    // connection registered here is still closed with the others.
    if shared.shutting_down.load(Ordering::Relaxed) {
        shared.connection_count.fetch_sub(1, Ordering::Relaxed);
        return answer(shard, stream, 503, "shutting down\n").await;
    }

    let serial = shard.take_serial();
    let client_id = format!("{}-{serial}", shard.id.0);
    let mut greeting = BytesMut::with_capacity(256);
    greeting.put_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    greeting.put_slice(tungstenite::handshake::derive_accept_key(key.as_bytes()).as_bytes());
    greeting.put_slice(b"\r\n\r\n");
    let connected = Reply::Connected {
        client_id: &client_id,
        admin: role == Role::Admin,
    }
    .encode();
    // `fanout-echo` greets with nothing: Autobahn expects only its echoes.
    #[cfg(feature = "conformance")]
    let greets = !shard.config.conformance_echo;
    #[cfg(not(feature = "conformance"))]
    let greets = true;
    if greets {
        greeting.put_slice(&frame::text(&connected));
    }
    let session_id = session.map(|s| s.session_id);
    let id = shard.register(serial, role, stream, session_id, greeting.freeze())?;
    Some((id, leftover))
}

async fn read_head(stream: &mut TcpStream, max_bytes: usize) -> Read {
    let mut buf = Vec::with_capacity(1024);
    let mut filled = 0;
    loop {
        if buf.len() < filled + 1024 {
            buf.resize(filled + 1024, 0);
        }
        let n = match stream.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return Read::Closed,
            Ok(n) => n,
        };
        let first_read = filled == 0;
        filled += n;
        // A head ends with an empty line. Parse the first read (garbage gets
        // its 400 at once) and any read that may complete the head, not every
        // dribbled byte: the work stays linear in the head's size.
        let fresh = &buf[(filled - n).saturating_sub(3)..filled];
        let may_end = fresh.windows(2).any(|w| w == b"\n\n") || fresh.windows(3).any(|w| w == b"\n\r\n");
        if !first_read && !may_end {
            if filled > max_bytes {
                return Read::TooLarge;
            }
            continue;
        }
        match http::parse_head(&buf[..filled], max_bytes) {
            Head::Complete(request, len) => return Read::Head(request, buf[len..filled].to_vec()),
            Head::Partial => {}
            Head::TooLarge => return Read::TooLarge,
            Head::Malformed => return Read::Malformed,
        }
    }
}

/// SPEC §2: no list accepts every origin; no Origin header (a non-browser
/// client) passes unless `--require-origin`.
fn origin_allowed(shard: &Shard, origin: Option<&str>) -> bool {
    let config = &shard.config;
    match origin {
        None => !config.require_origin,
        Some(_) if config.allowed_origins.is_empty() => true,
        Some(origin) => {
            let origin = origin.trim_end_matches('/');
            config
                .allowed_origins
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(origin))
        }
    }
}

/// `/healthz`: 200 while every shard runs (SPEC §2); a process with a dead
/// shard is on its way out and must not look alive to a supervisor.
async fn healthz(shard: &Rc<Shard>, stream: TcpStream) -> Option<Upgraded> {
    if shard.shared.readiness.is_healthy() {
        answer(shard, stream, 200, "ok\n").await
    } else {
        answer(shard, stream, 503, "not serving: a shard stopped\n").await
    }
}

/// `/readyz` (SPEC §2, §10): 503 with the reason while draining or while a
/// Kafka partition has no resolved start offset; then Redis must answer.
async fn ready(shard: &Rc<Shard>, stream: TcpStream) -> Option<Upgraded> {
    if let Err(reason) = shard.shared.readiness.check() {
        return answer(shard, stream, 503, &format!("{reason}\n")).await;
    }
    match &shard.sessions {
        Some(store) => match store.ping().await {
            Ok(()) => answer(shard, stream, 200, "ready\n").await,
            Err(err) => answer(shard, stream, 503, &format!("redis not answering: {err}\n")).await,
        },
        None => answer(shard, stream, 200, "ready\n").await,
    }
}

/// Answers without upgrading: the request ends here.
async fn answer(shard: &Rc<Shard>, stream: TcpStream, status: u16, body: &str) -> Option<Upgraded> {
    respond(shard, stream, status, body).await;
    None
}

async fn respond(shard: &Rc<Shard>, stream: TcpStream, status: u16, body: &str) {
    respond_with(shard, stream, status, "text/plain; charset=utf-8", body).await;
}

async fn respond_with(shard: &Rc<Shard>, mut stream: TcpStream, status: u16, content_type: &str, body: &str) {
    if status >= 400 {
        shard.metrics.reject(status);
    }
    let response = http::response(status, content_type, body);
    let write = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown(std::net::Shutdown::Write).await?;
        // Read what the client still sends so closing does not reset the
        // connection before it has read the response.
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    let started = Instant::now();
    let _ = write
        .or(async {
            glommio::timer::sleep(Duration::from_secs(1).saturating_sub(started.elapsed())).await;
            Ok(())
        })
        .await;
}
