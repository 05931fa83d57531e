//! The HTTP/1.1 request head, as far as fanout reads one (SPEC §2): method,
//! path, the WebSocket upgrade headers, Origin and Cookie.
//!
//! [`parse_head`] is pure: bytes in, a verdict out, no I/O, so it can be
//! fuzzed apart from the runtime. The shard's listener reads into a buffer
//! and calls it after each read; the head is bounded in bytes
//! (`--max-header-bytes`, 431) and in header count ([`MAX_HEADERS`]).

/// Headers read from one request; more is answered with 431.
pub const MAX_HEADERS: usize = 48;

/// A parsed request head: what routing needs, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, ...
    pub method: String,
    /// Request target, query included.
    pub path: String,
    /// `Upgrade: websocket` is present.
    pub upgrade_websocket: bool,
    /// `Connection` lists `upgrade`.
    pub connection_upgrade: bool,
    /// `Sec-WebSocket-Key`.
    pub key: Option<String>,
    /// `Sec-WebSocket-Version`.
    pub version: Option<String>,
    /// `Origin`.
    pub origin: Option<String>,
    /// Every `Cookie` header, joined with `; `.
    pub cookie: Option<String>,
}

/// What the bytes read so far amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// A whole head of `len` bytes; bytes after it belong to the connection.
    Complete(Request, usize),
    /// Not whole yet: read more.
    Partial,
    /// Over `max_bytes` or [`MAX_HEADERS`] (431).
    TooLarge,
    /// Not HTTP/1.x (400).
    Malformed,
}

/// Parses the request head at the start of `buf`, at most `max_bytes` long.
pub fn parse_head(buf: &[u8], max_bytes: usize) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= max_bytes => Head::Complete(to_request(&parsed), len),
        Ok(httparse::Status::Complete(_)) => Head::TooLarge,
        Ok(httparse::Status::Partial) if buf.len() > max_bytes => Head::TooLarge,
        Ok(httparse::Status::Partial) => Head::Partial,
        Err(httparse::Error::TooManyHeaders) => Head::TooLarge,
        Err(_) => Head::Malformed,
    }
}

fn to_request(parsed: &httparse::Request<'_, '_>) -> Request {
    let header = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(|v| v.trim().to_string())
    };
    let has_token = |name: &str, token: &str| {
        parsed
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .any(|h| {
                std::str::from_utf8(h.value).is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            })
    };
    // Several Cookie headers may be sent; join them as one list.
    let cookies: Vec<&str> = parsed
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
        .collect();
    Request {
        method: parsed.method.unwrap_or("").to_string(),
        path: parsed.path.unwrap_or("").to_string(),
        upgrade_websocket: has_token("upgrade", "websocket"),
        connection_upgrade: has_token("connection", "upgrade"),
        key: header("sec-websocket-key"),
        version: header("sec-websocket-version"),
        origin: header("origin"),
        cookie: (!cookies.is_empty()).then(|| cookies.join("; ")),
    }
}

/// A complete response that closes the connection.
pub fn response(status: u16, content_type: &str, body: &str) -> String {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let allow = if status == 405 { "Allow: GET\r\n" } else { "" };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &[u8] = b"GET /ws?x=1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nCookie: a=1\r\ncookie: session_id=s\r\n\r\nrest";

    #[test]
    fn an_upgrade_request_is_read_whole() {
        let Head::Complete(request, len) = parse_head(UPGRADE, 8192) else {
            panic!("complete head expected");
        };
        assert_eq!(&UPGRADE[len..], b"rest");
        assert_eq!(request.path, "/ws?x=1");
        assert!(request.upgrade_websocket && request.connection_upgrade);
        assert_eq!(request.version.as_deref(), Some("13"));
        assert_eq!(request.cookie.as_deref(), Some("a=1; session_id=s"));
    }

    #[test]
    fn partial_oversized_and_malformed_heads() {
        assert_eq!(parse_head(&UPGRADE[..20], 8192), Head::Partial);
        assert_eq!(parse_head(UPGRADE, 64), Head::TooLarge);
        assert_eq!(parse_head(b"\x00\x01 nonsense\r\n\r\n", 8192), Head::Malformed);
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(MAX_HEADERS + 1));
        assert_eq!(parse_head(many.as_bytes(), 8192), Head::TooLarge);
    }

    proptest::proptest! {
        #[test]
        fn parse_head_never_panics(bytes: Vec<u8>, max in 0usize..10_000) {
            let _ = parse_head(&bytes, max);
        }
    }
}
