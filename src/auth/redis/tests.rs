//! Client tests against a real `redis-server` on a free loopback port, plus
//! URL parsing and RESP reading without a server.

use std::future::Future;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use ::redis::Value;
use futures_lite::future;
use glommio::LocalExecutorBuilder;
use glommio::timer::Timer;

use super::connection::{Failure, ReplyReader};
use super::endpoint::Endpoint;
use super::{RedisClient, RedisError};

const TIMEOUT: Duration = Duration::from_millis(500);

/// A `redis-server` on a free loopback port, killed on drop.
struct RedisServer {
    child: Option<Child>,
    port: u16,
    extra_args: Vec<String>,
}

impl RedisServer {
    fn start(extra_args: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = RedisServer {
            child: None,
            port,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        server.restart();
        server
    }

    /// Starts (again) on the same port; waits until it answers PING.
    fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let mut buf = [0u8; 64];
                if s.write_all(b"PING\r\n").is_ok() && s.read(&mut buf).unwrap_or(0) > 0 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill").args([sig, &pid]).status().unwrap().success());
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn run<G, F>(fut_gen: G)
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = ()> + 'static,
{
    LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .spawn(fut_gen)
        .unwrap()
        .join()
        .unwrap();
}

async fn set(client: &RedisClient, key: &str, value: &[u8]) {
    let reply = client.query(::redis::cmd("SET").arg(key).arg(value)).await.unwrap();
    assert_eq!(reply, Value::Okay);
}

#[test]
fn get_of_missing_key_is_none() {
    run(|| async {
        let server = RedisServer::start(&[]);
        let client = RedisClient::new(&server.url(), TIMEOUT).unwrap();
        assert_eq!(client.get("session:nope").await.unwrap(), None);
    });
}

#[test]
fn get_returns_value_of_set_key_including_binary_and_large() {
    run(|| async {
        let server = RedisServer::start(&[]);
        let client = RedisClient::new(&server.url(), TIMEOUT).unwrap();
        let session = br#"{"user_id":"u1","role":"admin"}"#;
        set(&client, "session:abc", session).await;
        assert_eq!(client.get("session:abc").await.unwrap().as_deref(), Some(&session[..]));

        let binary = b"a\r\n$3\r\n\0\xff";
        set(&client, "bin", binary).await;
        assert_eq!(client.get("bin").await.unwrap().as_deref(), Some(&binary[..]));

        // 1 MiB: the reply spans many socket reads.
        let large: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        set(&client, "large", &large).await;
        assert_eq!(client.get("large").await.unwrap(), Some(large));
    });
}

#[test]
fn a_host_name_is_resolved_and_connected() {
    // `localhost` goes through the blocking resolver, off the shard thread.
    run(|| async {
        let server = RedisServer::start(&[]);
        let url = format!("redis://localhost:{}", server.port);
        let client = RedisClient::new(&url, TIMEOUT).unwrap();
        set(&client, "named", b"yes").await;
        assert_eq!(client.get("named").await.unwrap().as_deref(), Some(&b"yes"[..]));
    });
}

#[test]
fn mget_returns_values_and_none_in_key_order() {
    run(|| async {
        let server = RedisServer::start(&[]);
        let client = RedisClient::new(&server.url(), TIMEOUT).unwrap();
        set(&client, "a", b"1").await;
        set(&client, "c", b"3").await;
        let got = client.mget(&["a", "b", "c", "d"]).await.unwrap();
        assert_eq!(got, vec![Some(b"1".to_vec()), None, Some(b"3".to_vec()), None]);
        assert_eq!(client.mget(&[]).await.unwrap(), Vec::<Option<Vec<u8>>>::new());
    });
}

#[test]
fn ping_answers_and_wrong_type_is_server_error() {
    run(|| async {
        let server = RedisServer::start(&[]);
        let client = RedisClient::new(&server.url(), TIMEOUT).unwrap();
        client.ping().await.unwrap();
        client.query(::redis::cmd("LPUSH").arg("list").arg("x")).await.unwrap();
        let err = client.get("list").await.unwrap_err();
        assert!(
            matches!(&err, RedisError::Server(msg) if msg.contains("WRONGTYPE")),
            "{err}"
        );
        // An error reply leaves the connection usable.
        client.ping().await.unwrap();
    });
}

#[test]
fn concurrent_gets_from_50_tasks_each_get_their_own_value() {
    run(|| async {
        let server = RedisServer::start(&[]);
        let client = Rc::new(RedisClient::new(&server.url(), Duration::from_secs(5)).unwrap());
        for i in 0..50 {
            set(&client, &format!("k{i}"), format!("v{i}").as_bytes()).await;
        }
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let client = Rc::clone(&client);
                glommio::spawn_local(async move {
                    let key = format!("k{i}");
                    let want = format!("v{i}").into_bytes();
                    for round in 0..100 {
                        if (i + round) % 7 == 0 {
                            let got = client.mget(&[&key, "missing"]).await.unwrap();
                            assert_eq!(got, vec![Some(want.clone()), None]);
                        } else {
                            assert_eq!(client.get(&key).await.unwrap(), Some(want.clone()));
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await;
        }
        // All 50 tasks shared one pipelined connection.
        let reply = client.query(::redis::cmd("CLIENT").arg("LIST")).await.unwrap();
        let Value::BulkString(list) = reply else {
            panic!("CLIENT LIST: {reply:?}")
        };
        assert_eq!(String::from_utf8(list).unwrap().lines().count(), 1);
    });
}

#[test]
fn cancelled_caller_does_not_shift_replies() {
    run(|| async {
        let server = RedisServer::start(&[]);
        let client = RedisClient::new(&server.url(), TIMEOUT).unwrap();
        set(&client, "x", b"x").await;
        set(&client, "y", b"y").await;
        // Poll a GET once (queued), then drop it before its reply.
        let mut first = Box::pin(client.get("x"));
        assert!(future::poll_once(&mut first).await.is_none());
        drop(first);
        assert_eq!(client.get("y").await.unwrap(), Some(b"y".to_vec()));
    });
}

#[test]
fn stopped_server_fails_within_timeout_and_restart_recovers() {
    run(|| async {
        let mut server = RedisServer::start(&[]);
        let client = RedisClient::new(&server.url(), TIMEOUT).unwrap();
        client.ping().await.unwrap();

        server.stop();
        let started = Instant::now();
        let err = client.get("k").await.unwrap_err();
        assert!(err.is_unavailable(), "{err}");
        assert!(started.elapsed() < TIMEOUT + Duration::from_millis(250));
        // Still down: every call fails, none hangs.
        let err = client.get("k").await.unwrap_err();
        assert!(matches!(err, RedisError::Unreachable(_)), "{err}");

        server.restart();
        set(&client, "k", b"back").await;
        assert_eq!(client.get("k").await.unwrap(), Some(b"back".to_vec()));
    });
}

#[test]
fn frozen_server_times_out_and_resumed_server_recovers() {
    run(|| async {
        let server = RedisServer::start(&[]);
        let client = RedisClient::new(&server.url(), TIMEOUT).unwrap();
        client.ping().await.unwrap();

        server.signal("-STOP");
        let started = Instant::now();
        let err = client.get("k").await.unwrap_err();
        let elapsed = started.elapsed();
        assert!(matches!(err, RedisError::Timeout), "{err}");
        assert!(
            elapsed >= TIMEOUT && elapsed < TIMEOUT + Duration::from_millis(250),
            "{elapsed:?}"
        );

        server.signal("-CONT");
        assert_eq!(client.get("k").await.unwrap(), None);
    });
}

#[test]
fn connection_killed_by_server_is_replaced_without_error() {
    run(|| async {
        let server = RedisServer::start(&[]);
        let client = RedisClient::new(&server.url(), TIMEOUT).unwrap();
        client.ping().await.unwrap();
        let mut admin = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        admin
            .write_all(
                &::redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("TYPE")
                    .arg("normal")
                    .get_packed_command(),
            )
            .unwrap();
        let mut buf = [0u8; 64];
        assert!(admin.read(&mut buf).unwrap() > 0);
        // Let the driver see the EOF.
        Timer::new(Duration::from_millis(50)).await;
        assert_eq!(client.get("k").await.unwrap(), None);
    });
}

#[test]
fn nothing_listening_is_unreachable_quickly() {
    run(|| async {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = RedisClient::new(&format!("redis://127.0.0.1:{port}"), TIMEOUT).unwrap();
        let started = Instant::now();
        let err = client.ping().await.unwrap_err();
        assert!(matches!(err, RedisError::Unreachable(_)), "{err}");
        assert!(started.elapsed() < TIMEOUT);
    });
}

#[test]
fn password_and_db_from_url_are_used() {
    run(|| async {
        let server = RedisServer::start(&["--requirepass", "s3cr@t/pw"]);
        let port = server.port;
        let db2 = RedisClient::new(&format!("redis://:s3cr%40t%2Fpw@127.0.0.1:{port}/2"), TIMEOUT).unwrap();
        let db0 = RedisClient::new(&format!("redis://default:s3cr%40t%2Fpw@127.0.0.1:{port}"), TIMEOUT).unwrap();
        set(&db2, "only-in-2", b"yes").await;
        assert_eq!(db2.get("only-in-2").await.unwrap(), Some(b"yes".to_vec()));
        assert_eq!(db0.get("only-in-2").await.unwrap(), None);

        let wrong = RedisClient::new(&format!("redis://:nope@127.0.0.1:{port}"), TIMEOUT).unwrap();
        let err = wrong.get("k").await.unwrap_err();
        assert!(
            matches!(&err, RedisError::Server(msg) if msg.starts_with("AUTH failed")),
            "{err}"
        );
        let none = RedisClient::new(&server.url(), TIMEOUT).unwrap();
        let err = none.get("k").await.unwrap_err();
        assert!(
            matches!(&err, RedisError::Server(msg) if msg.contains("NOAUTH")),
            "{err}"
        );
    });
}

#[test]
fn url_forms_parse() {
    let e = Endpoint::parse("redis://127.0.0.1").unwrap();
    assert_eq!((e.host.as_str(), e.port, e.db), ("127.0.0.1", 6379, 0));
    assert!(e.password.is_none() && e.username.is_none());
    let e = Endpoint::parse("redis://:pw@redis.local:7000/3").unwrap();
    assert_eq!((e.host.as_str(), e.port, e.db), ("redis.local", 7000, 3));
    assert_eq!(e.password.as_deref(), Some("pw"));
    let e = Endpoint::parse("redis://app:p%3Aw%40@[::1]:6380/").unwrap();
    assert_eq!((e.host.as_str(), e.port, e.db), ("::1", 6380, 0));
    assert_eq!(
        (e.username.as_deref(), e.password.as_deref()),
        (Some("app"), Some("p:w@"))
    );
}

#[test]
fn bad_urls_are_rejected_without_echoing_the_password() {
    for url in [
        "http://localhost",
        "rediss://localhost",
        "redis://",
        "redis://:hunter2@host:99999",
        "redis://:hunter2@host:0",
        "redis://:hunter2@host/x",
        "redis://hunter2@host",
        "redis://:hunter2@host?timeout=1",
        "redis://:hunt%zzer2@host",
        "redis://:hunter2@[::1",
    ] {
        let err = RedisClient::new(url, TIMEOUT).unwrap_err();
        assert!(matches!(err, RedisError::BadUrl(_)), "{url}: {err}");
        assert!(!err.to_string().contains("hunt"), "{url}: {err}");
    }
    let client = RedisClient::new("redis://:hunter2@host", TIMEOUT).unwrap();
    assert!(!format!("{client:?}").contains("hunter2"));
}

#[test]
fn reply_reader_handles_split_and_batched_replies() {
    let stream: &[u8] = b"$5\r\nhello\r\n*2\r\n$1\r\na\r\n$-1\r\n+PONG\r\n-ERR nope\r\n:7\r\n";
    let want = [
        Value::BulkString(b"hello".to_vec()),
        Value::Array(vec![Value::BulkString(b"a".to_vec()), Value::Nil]),
        Value::SimpleString("PONG".into()),
    ];
    for chunk in [1, 2, 3, 5, 7, stream.len()] {
        let mut reader = ReplyReader::default();
        let mut got = Vec::new();
        for part in stream.chunks(chunk) {
            reader
                .feed(part, |v| {
                    got.push(v);
                    Ok(())
                })
                .unwrap();
        }
        assert_eq!(got.len(), 5, "chunk {chunk}");
        assert_eq!(got[..3], want[..], "chunk {chunk}");
        assert!(matches!(got[3], Value::ServerError(_)), "chunk {chunk}");
        assert_eq!(got[4], Value::Int(7), "chunk {chunk}");
    }
}

#[test]
fn reply_reader_rejects_garbage() {
    let mut reader = ReplyReader::default();
    let result = reader.feed(b"?what\r\n", |_| Ok(()));
    assert!(matches!(result, Err(Failure::Protocol(_))));
}
