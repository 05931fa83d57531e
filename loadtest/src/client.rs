//! One subscriber: connect from its own source address, upgrade, read
//! `connected`, subscribe, wait for the ack, then read and audit deliveries
//! until the server closes it or the run aborts it.
//!
//! Runs as a tokio task, 100k of them on `--threads` workers. It owns its
//! socket, a 512-byte read buffer that grows only for large frames, and its
//! `SubscriberAudit`; setup holds a slot of the shared connect semaphore so at
//! most `--connect-concurrency` connections are opening at once.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use socket2::{Domain, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;

use crate::audit::{SentLog, SubscriberAudit};
use crate::scenario::{self, Delivery, KeySpace};
use crate::stats::{self, Progress};
use crate::ws::{self, FrameHead, MaskSource};

/// Initial read buffer per connection, in bytes: two or three deliveries.
const READ_BUFFER_BYTES: usize = 512;

/// What every subscriber shares.
pub struct ClientShared {
    /// Server address.
    pub server: SocketAddr,
    /// `Host` header value.
    pub host: String,
    /// Request path.
    pub path: String,
    /// Optional `Origin` header.
    pub origin: Option<String>,
    /// Key names.
    pub space: KeySpace,
    /// What the producer sent, for the audit.
    pub log: Arc<SentLog>,
    /// Connection counters.
    pub progress: Arc<Progress>,
    /// Time allowed from TCP connect to the subscribe ack.
    pub connect_timeout: Duration,
    /// Bounds connections in setup at once.
    pub setup_slots: Arc<Semaphore>,
}

/// One subscriber's plan.
pub struct SubscriberPlan {
    /// Index, 0..N.
    pub id: u32,
    /// Address the socket binds before connecting.
    pub source_ip: Ipv4Addr,
    /// Keys to subscribe to, sorted and distinct.
    pub keys: Vec<u32>,
}

/// A subscriber's audit, shared with `run`, which reads it after stopping
/// the task. Locked once per read batch, by its task only, so never contended.
pub type AuditSlot = Arc<Mutex<SubscriberAudit>>;

/// How a subscriber task ended by itself. A subscriber still reading when
/// the run stops is aborted instead (no shared stop signal to poll on every
/// wake-up); its audit is in its `AuditSlot`.
pub enum Outcome {
    /// Never got its ack.
    Failed(String),
    /// The server closed it after the ack, with this code (1006: no close
    /// frame, or a read error).
    Closed(u16),
}

/// Runs one subscriber until the server closes it or `run` aborts the task.
pub async fn run_subscriber(shared: Arc<ClientShared>, plan: SubscriberPlan, audit: AuditSlot) -> Outcome {
    let permit = shared.setup_slots.clone().acquire_owned().await;
    // Boxed so its (large, short-lived) state is not part of the task for
    // the whole run: the task stays a few hundred bytes per connection.
    let setup = tokio::time::timeout(shared.connect_timeout, Box::pin(setup(&shared, &plan)));
    let mut conn = match setup.await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return fail(&shared, format!("{e:#}")),
        Err(_) => {
            let t = shared.connect_timeout;
            return fail(&shared, format!("no subscribe ack within {t:?}"));
        }
    };
    drop(permit);
    shared.progress.mark_acked();
    drop(plan);
    let code = loop {
        match conn.drain_frames(&shared, &audit) {
            Ok(Some(code)) => break code,
            Ok(None) => {}
            Err(_) => break 1006,
        }
        match conn.fill().await {
            Ok(0) | Err(_) => break 1006,
            Ok(_) => {}
        }
    };
    shared
        .progress
        .closed_by_server
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // RFC 6455 5.5.1: answer a close with a close; 7.4.1: 1005 and 1006
    // never go on the wire.
    conn.send_close_best_effort(if matches!(code, 1005 | 1006) { 1000 } else { code });
    Outcome::Closed(code)
}

fn fail(shared: &ClientShared, reason: String) -> Outcome {
    shared
        .progress
        .failed
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Outcome::Failed(reason)
}

/// Connect, upgrade, `connected`, subscribe, `subscribed`.
async fn setup(shared: &ClientShared, plan: &SubscriberPlan) -> anyhow::Result<Conn> {
    let stream = connect_from(plan.source_ip, shared.server)
        .await
        .with_context(|| format!("connecting from {} to {}", plan.source_ip, shared.server))?;
    let mut conn = Conn::new(stream, plan.id as u64);
    let upgrade = ws::Upgrade::new(&shared.host, &shared.path, shared.origin.as_deref());
    conn.stream
        .write_all(upgrade.request.as_bytes())
        .await
        .context("sending the upgrade request")?;
    let head_len = loop {
        if let Some(n) = ws::head_len(&conn.buf[..conn.end]) {
            break n;
        }
        if conn.fill().await.context("reading the upgrade response")? == 0 {
            bail!("server closed the connection during the upgrade");
        }
    };
    upgrade.check_response(&conn.buf[..head_len])?;
    conn.start = head_len;
    shared.progress.mark_connected();
    let hello = conn.next_text().await.context("waiting for connected")?;
    match scenario::message_type(&hello)? {
        "connected" => {}
        other => bail!("expected a connected message, got type {other:?}"),
    }
    let subscribe = scenario::subscribe_message(&shared.space, &plan.keys);
    conn.send_text(subscribe.as_bytes())
        .await
        .context("sending subscribe")?;
    let ack = conn.next_text().await.context("waiting for subscribed")?;
    match scenario::message_type(&ack)? {
        "subscribed" => Ok(conn),
        _ => bail!("subscribe refused: {}", String::from_utf8_lossy(&ack)),
    }
}

/// Opens a TCP connection from `source` (any port) to `server`.
async fn connect_from(source: Ipv4Addr, server: SocketAddr) -> anyhow::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).context("socket()")?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    let one: libc::c_int = 1;
    // SAFETY: valid fd and a c_int option value of the right size. Lets the
    // kernel pick the port at connect time, unique per 4-tuple, instead of at
    // bind time, unique per address.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    socket
        .bind(&SocketAddr::V4(SocketAddrV4::new(source, 0)).into())
        .context("bind()")?;
    let socket = TcpSocket::from_std_stream(std::net::TcpStream::from(socket));
    socket.connect(server).await.map_err(|e| {
        let hint = if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
            " (out of ports for this source address: lower --conns-per-source-ip)"
        } else {
            ""
        };
        anyhow::anyhow!("{e}{hint}")
    })
}

/// A subscriber's socket and read buffer (`buf[start..end]` unread).
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    masks: MaskSource,
    /// Text payload being reassembled from fragments (rare).
    fragments: Vec<u8>,
}

/// A complete frame just consumed from the buffer.
enum Frame {
    /// Text message; payload at `buf[start..end]`, or `fragments` if
    /// `assembled`.
    Text { start: usize, end: usize, assembled: bool },
    /// Anything else we need not answer.
    Ignored,
    /// Ping: answer with its payload.
    Ping(Vec<u8>),
    /// Close with this code.
    Close(u16),
}

impl Conn {
    fn new(stream: TcpStream, seed: u64) -> Self {
        Conn {
            stream,
            buf: vec![0; READ_BUFFER_BYTES],
            start: 0,
            end: 0,
            masks: MaskSource::new(seed ^ stats::unix_nanos()),
            fragments: Vec::new(),
        }
    }

    /// Reads more bytes, compacting or growing the buffer first if full.
    /// Cancel-safe: nothing is consumed before the read completes.
    async fn fill(&mut self) -> std::io::Result<usize> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
            } else {
                let len = (self.buf.len() * 2).min(ws::MAX_FRAME_BYTES + 14);
                self.buf.resize(len, 0);
            }
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// Consumes the next complete frame, if the buffer holds one.
    fn next_frame(&mut self) -> anyhow::Result<Option<Frame>> {
        let avail = &self.buf[self.start..self.end];
        let Some(FrameHead {
            fin,
            opcode,
            payload_start,
            payload_len,
        }) = ws::parse_head(avail)?
        else {
            return Ok(None);
        };
        if avail.len() < payload_start + payload_len {
            return Ok(None);
        }
        let (s, e) = (self.start + payload_start, self.start + payload_start + payload_len);
        self.start = e;
        let frame = match opcode {
            ws::OP_TEXT if fin => Frame::Text {
                start: s,
                end: e,
                assembled: false,
            },
            ws::OP_TEXT => {
                self.fragments.clear();
                self.fragments.extend_from_slice(&self.buf[s..e]);
                Frame::Ignored
            }
            ws::OP_CONTINUATION => {
                self.fragments.extend_from_slice(&self.buf[s..e]);
                if fin {
                    Frame::Text {
                        start: 0,
                        end: self.fragments.len(),
                        assembled: true,
                    }
                } else {
                    Frame::Ignored
                }
            }
            ws::OP_PING => Frame::Ping(self.buf[s..e].to_vec()),
            ws::OP_CLOSE => Frame::Close(ws::close_code(&self.buf[s..e])),
            ws::OP_PONG | ws::OP_BINARY => Frame::Ignored,
            other => bail!("unknown opcode {other:#x}"),
        };
        Ok(Some(frame))
    }

    fn payload(&self, start: usize, end: usize, assembled: bool) -> &[u8] {
        if assembled {
            &self.fragments[start..end]
        } else {
            &self.buf[start..end]
        }
    }

    /// Next text message during setup, answering pings on the way.
    async fn next_text(&mut self) -> anyhow::Result<Vec<u8>> {
        loop {
            match self.next_frame()? {
                Some(Frame::Text { start, end, assembled }) => return Ok(self.payload(start, end, assembled).to_vec()),
                Some(Frame::Ping(p)) => self.send(ws::OP_PONG, &p).await?,
                Some(Frame::Close(code)) => bail!("server closed with code {code}"),
                Some(Frame::Ignored) => {}
                None => {
                    if self.fill().await? == 0 {
                        bail!("server closed the connection");
                    }
                }
            }
        }
    }

    /// Audits every complete frame in the buffer. Returns the close code if
    /// the server closed.
    fn drain_frames(&mut self, shared: &ClientShared, audit: &AuditSlot) -> anyhow::Result<Option<u16>> {
        let now = stats::unix_nanos();
        let mut audit = audit.lock().expect("audit slot poisoned");
        let mut sent_at = [0u64; 32];
        let mut batch = 0;
        let mut other = 0;
        let mut result = None;
        while let Some(frame) = self.next_frame()? {
            match frame {
                Frame::Text { start, end, assembled } => {
                    match scenario::parse_delivery(self.payload(start, end, assembled)) {
                        Ok(Delivery::Availability {
                            course_id,
                            seq,
                            send_unix_nanos,
                        }) => {
                            audit.observe(&shared.log, shared.space.index(course_id), seq);
                            sent_at[batch] = send_unix_nanos;
                            batch += 1;
                            if batch == sent_at.len() {
                                stats::record_deliveries(now, &sent_at);
                                batch = 0;
                            }
                        }
                        Ok(Delivery::Other(_)) => other += 1,
                        Err(_) => audit.observe_malformed(),
                    }
                }
                Frame::Ping(p) => {
                    // Pongs are tiny; if the socket buffer is full we skip
                    // one and the next ping retries.
                    let mut out = Vec::with_capacity(p.len() + 8);
                    ws::encode_frame(&mut out, ws::OP_PONG, &p, self.masks.next_mask());
                    let _ = self.stream.try_write(&out);
                }
                Frame::Close(code) => {
                    result = Some(code);
                    break;
                }
                Frame::Ignored => {}
            }
        }
        stats::record_deliveries(now, &sent_at[..batch]);
        if other > 0 {
            stats::with_local(|s| s.other_messages += other);
        }
        Ok(result)
    }

    async fn send(&mut self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(payload.len() + 14);
        ws::encode_frame(&mut out, opcode, payload, self.masks.next_mask());
        self.stream.write_all(&out).await
    }

    async fn send_text(&mut self, text: &[u8]) -> std::io::Result<()> {
        self.send(ws::OP_TEXT, text).await
    }

    /// Queues a close frame without waiting; we drop the socket right after.
    fn send_close_best_effort(&mut self, code: u16) {
        let mut out = Vec::with_capacity(8);
        ws::encode_close(&mut out, code, self.masks.next_mask());
        let _ = self.stream.try_write(&out);
    }
}
