//! The async client: reads through an async netlink connection, writes in bulk.
//!
//! Every write is a request the kernel answers. Waiting for each answer before sending the next
//! request costs a round trip per rule (what `ipvsadm -R` does, opening a socket and resolving the
//! family per rule on top). [`Client::execute`] instead packs requests into datagrams of up to a
//! page ([`BATCH_LEN`] requests at most). The kernel handles a datagram sent to a generic-netlink
//! family inside the `sendmsg` call itself, message after message, and queues an error message
//! for each one that fails. So only the last request of a batch asks for an ack (`NLM_F_ACK`):
//! when that ack has been read, every answer of the batch has been; a request without an error
//! answer succeeded. Errors carry the sequence number of their request, which maps them back.
//! Batches go one at a time, one datagram each, never several in flight: when `sendmsg` returns
//! the kernel has handled the batch and queued its answers, which must all fit the socket's
//! receive buffer (the kernel drops what does not fit), so the batch size comes from the buffer
//! size actually granted.
//!
//! Reads (gets and dumps) go through an async netlink-proto connection whose task runs on the
//! caller's tokio runtime; each waits for its answer at most the client's timeout.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::StreamExt;
use netlink_packet_core::ParseableParametrized;
use netlink_packet_core::{
    Emitable, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP,
    NLM_F_REQUEST,
};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::{GenlHeader, GenlMessage};
use netlink_proto::sys::{protocols::NETLINK_GENERIC, AsyncSocket, SocketAddr};
use netlink_proto::{Connection, ConnectionHandle};
use netlink_sys::Socket;
use tracing::{debug, warn};

use crate::dump::{destinations_of_dump, Dump};
use crate::message::destination::dest_key_attrs;
use crate::message::{
    CmdAttr, IpvsCmd, IpvsMessage, RawGenlFrame, IPVS_GENL_NAME, IPVS_GENL_VERSION,
};
use crate::{DaemonState, Destination, Error, Info, Service, ServiceKey, SyncDaemon, Timeouts};

/// `sizeof(struct nlmsghdr)`.
const NETLINK_HEADER_LEN: usize = 16;
/// `GENL_HDRLEN`.
const GENL_HEADER_LEN: usize = 4;

/// `GENL_ID_CTRL`: the fixed id of the generic-netlink controller family.
const GENL_ID_CTRL: u16 = 16;

/// Receive buffer asked for. The kernel caps it at `net.core.rmem_max` (and doubles it).
const RECEIVE_BUFFER: i32 = 8 * 1024 * 1024;

/// Bytes of receive buffer one queued error answer takes in the kernel's accounting
/// (`skb->truesize` of a small message is under 1 KiB on 64-bit kernels; this leaves room).
const ANSWER_TRUESIZE: usize = 1280;

/// Largest datagram of requests. The kernel copies a datagram up to `NLMSG_GOODSIZE` (a page less
/// the skb overhead) into an ordinary skb and a larger one into vmalloc'ed memory, which costs a
/// page-table update and a TLB flush to free: staying under a page keeps batches cheap.
const DATAGRAM_LEN: usize = 3584;

/// Most requests packed into one datagram by [`Client::execute`]; fewer when the receive buffer
/// could not hold an error answer for each, or when they would not fit in a page.
pub const BATCH_LEN: usize = 256;

/// How many requests [`Client::execute`] encodes before it sends them: enough to fill many
/// datagrams of [`BATCH_LEN`], few enough that their encoded forms stay a few MiB.
pub const EXECUTE_CHUNK: usize = 4096;

/// How long a read (get or dump) waits for its answer by default before it is failed rather than
/// left hanging (an answer dropped by the kernel for lack of buffer space never comes). See
/// [`ClientBuilder::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A write the kernel acks, for [`Client::execute`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// Add a service (`IPVS_CMD_NEW_SERVICE`).
    AddService(Service),
    /// Change a service's settings (`IPVS_CMD_SET_SERVICE`).
    UpdateService(Service),
    /// Delete a service and its destinations (`IPVS_CMD_DEL_SERVICE`).
    DeleteService(ServiceKey),
    /// Add a destination to a service (`IPVS_CMD_NEW_DEST`).
    AddDestination(ServiceKey, Destination),
    /// Change a destination's settings (`IPVS_CMD_SET_DEST`).
    UpdateDestination(ServiceKey, Destination),
    /// Delete a destination (`IPVS_CMD_DEL_DEST`).
    DeleteDestination(ServiceKey, Destination),
    /// Zero the counters of one service, or of all (`IPVS_CMD_ZERO`).
    Zero(Option<ServiceKey>),
    /// Delete every service (`IPVS_CMD_FLUSH`).
    Flush,
    /// Set connection timeouts (`IPVS_CMD_SET_CONFIG`).
    SetTimeouts(Timeouts),
    /// Start a sync daemon (`IPVS_CMD_NEW_DAEMON`).
    AddDaemon(SyncDaemon),
    /// Stop a sync daemon (`IPVS_CMD_DEL_DAEMON`).
    DeleteDaemon(DaemonState),
}

impl Request {
    /// The message that carries the request.
    pub fn to_message(&self) -> IpvsMessage {
        let svc = |key: &ServiceKey| CmdAttr::Service(key.into());
        match self {
            Request::AddService(s) => {
                IpvsMessage::new(IpvsCmd::NewService, vec![CmdAttr::Service(s.into())])
            }
            Request::UpdateService(s) => {
                IpvsMessage::new(IpvsCmd::SetService, vec![CmdAttr::Service(s.into())])
            }
            Request::DeleteService(k) => IpvsMessage::new(IpvsCmd::DelService, vec![svc(k)]),
            Request::AddDestination(k, d) => {
                IpvsMessage::new(IpvsCmd::NewDest, vec![svc(k), CmdAttr::Dest(d.into())])
            }
            Request::UpdateDestination(k, d) => {
                IpvsMessage::new(IpvsCmd::SetDest, vec![svc(k), CmdAttr::Dest(d.into())])
            }
            Request::DeleteDestination(k, d) => IpvsMessage::new(
                IpvsCmd::DelDest,
                vec![svc(k), CmdAttr::Dest(dest_key_attrs(d))],
            ),
            Request::Zero(k) => IpvsMessage::new(IpvsCmd::Zero, k.iter().map(svc).collect()),
            Request::Flush => IpvsMessage::new(IpvsCmd::Flush, vec![]),
            Request::SetTimeouts(t) => IpvsMessage::new(IpvsCmd::SetConfig, t.into()),
            Request::AddDaemon(d) => {
                IpvsMessage::new(IpvsCmd::NewDaemon, vec![CmdAttr::Daemon(d.into())])
            }
            Request::DeleteDaemon(s) => {
                IpvsMessage::new(IpvsCmd::DelDaemon, vec![CmdAttr::Daemon((*s).into())])
            }
        }
    }
}

/// Longest scheduler, persistence-engine and interface name the kernel takes, without the
/// terminating NUL (`IP_VS_SCHEDNAME_MAXLEN`, `IP_VS_PENAME_MAXLEN`, `IP_VS_IFNAME_MAXLEN`: 16).
pub const NAME_MAX_LEN: usize = 15;

impl Request {
    /// Checks the request against the kernel's limits that the wire format cannot express: a
    /// name longer than the kernel takes is [`Error::NameTooLong`] (the kernel would refuse it,
    /// and one longer than a netlink attribute can hold could not even be encoded).
    pub fn check(&self) -> Result<(), Error> {
        let names: Vec<(&'static str, &str)> = match self {
            Request::AddService(s) | Request::UpdateService(s) => {
                let mut names = vec![("scheduler", s.scheduler.as_str())];
                if let Some(pe) = &s.persistence_engine {
                    names.push(("persistence engine", pe.as_str()));
                }
                names
            }
            Request::AddDaemon(d) => vec![("interface", d.interface.as_str())],
            _ => Vec::new(),
        };
        for (what, name) in names {
            if name.len() > NAME_MAX_LEN {
                return Err(Error::NameTooLong {
                    command: self.command().name(),
                    what,
                    len: name.len(),
                    max: NAME_MAX_LEN,
                });
            }
        }
        Ok(())
    }

    /// The service the request is about: the one it adds, changes or deletes, whose
    /// destinations it adds, changes or deletes, or whose counters it zeroes. `None` for the
    /// requests about no single service (zeroing every counter, flushing, timeouts, sync
    /// daemons).
    pub fn service_key(&self) -> Option<ServiceKey> {
        match self {
            Request::AddService(s) | Request::UpdateService(s) => Some(s.key),
            Request::DeleteService(k)
            | Request::AddDestination(k, _)
            | Request::UpdateDestination(k, _)
            | Request::DeleteDestination(k, _) => Some(*k),
            Request::Zero(k) => *k,
            Request::Flush
            | Request::SetTimeouts(_)
            | Request::AddDaemon(_)
            | Request::DeleteDaemon(_) => None,
        }
    }

    /// The command that carries the request.
    pub fn command(&self) -> IpvsCmd {
        match self {
            Request::AddService(_) => IpvsCmd::NewService,
            Request::UpdateService(_) => IpvsCmd::SetService,
            Request::DeleteService(_) => IpvsCmd::DelService,
            Request::AddDestination(..) => IpvsCmd::NewDest,
            Request::UpdateDestination(..) => IpvsCmd::SetDest,
            Request::DeleteDestination(..) => IpvsCmd::DelDest,
            Request::Zero(_) => IpvsCmd::Zero,
            Request::Flush => IpvsCmd::Flush,
            Request::SetTimeouts(_) => IpvsCmd::SetConfig,
            Request::AddDaemon(_) => IpvsCmd::NewDaemon,
            Request::DeleteDaemon(_) => IpvsCmd::DelDaemon,
        }
    }
}

/// Maps a kernel errno answering `cmd` to an [`Error`]. `code` is the negative errno of the
/// netlink error message.
pub fn kernel_error(cmd: IpvsCmd, code: i32) -> Error {
    let command = cmd.name();
    let errno = errno_of(code);
    match errno {
        libc_errno::EPERM => Error::NotPermitted { command },
        libc_errno::EEXIST => Error::AlreadyExists { command },
        // Creating or editing a service answers ENOENT when its scheduler or persistence
        // engine is not found: the request is wrong, not the service missing.
        libc_errno::ENOENT if matches!(cmd, IpvsCmd::NewService | IpvsCmd::SetService) => {
            Error::InvalidArgument { command }
        }
        libc_errno::ESRCH | libc_errno::ENOENT => Error::NotFound { command },
        libc_errno::EINVAL => Error::InvalidArgument { command },
        _ => Error::Kernel {
            command,
            source: io::Error::from_raw_os_error(errno),
        },
    }
}

/// The errno of a netlink error code (the negative errno). A code no kernel sends, such as
/// `i32::MIN`, has no positive counterpart: it reads as `i32::MAX` rather than overflowing.
fn errno_of(code: i32) -> i32 {
    code.checked_abs().unwrap_or(i32::MAX)
}

/// The errno values the client names (Linux numbering, the same on every architecture).
mod libc_errno {
    pub const EPERM: i32 = 1;
    pub const ENOENT: i32 = 2;
    pub const ESRCH: i32 = 3;
    pub const EEXIST: i32 = 17;
    pub const EINVAL: i32 = 22;
}

/// Appends one request (nlmsghdr, genlmsghdr, attributes) to `out`, emitted in place rather than
/// through a `NetlinkMessage` that would need its own copy of the attributes.
pub(crate) fn encode_request(
    out: &mut Vec<u8>,
    family_id: u16,
    sequence: u32,
    flags: u16,
    message: &IpvsMessage,
) {
    let len = NETLINK_HEADER_LEN + GENL_HEADER_LEN + message.buffer_len();
    let mut header = NetlinkHeader::default();
    header.length = len as u32;
    header.message_type = family_id;
    header.flags = flags;
    header.sequence_number = sequence;
    let start = out.len();
    out.resize(start + len, 0);
    let buf = &mut out[start..];
    header.emit(&mut buf[..NETLINK_HEADER_LEN]);
    GenlHeader {
        cmd: message.cmd.into(),
        version: IPVS_GENL_VERSION,
    }
    .emit(&mut buf[NETLINK_HEADER_LEN..NETLINK_HEADER_LEN + GENL_HEADER_LEN]);
    message.emit(&mut buf[NETLINK_HEADER_LEN + GENL_HEADER_LEN..]);
}

/// How many of `messages` go into the next datagram: at most `batch_len`, at least one, and no
/// more than fit in [`DATAGRAM_LEN`] bytes.
fn batch_end(messages: &[IpvsMessage], batch_len: usize) -> usize {
    let mut bytes = 0;
    for (i, m) in messages.iter().take(batch_len).enumerate() {
        bytes += NETLINK_HEADER_LEN + GENL_HEADER_LEN + m.buffer_len();
        if bytes > DATAGRAM_LEN {
            return i.max(1);
        }
    }
    messages.len().min(batch_len)
}

struct Inner {
    /// Reads (gets and dumps) and family resolution.
    handle: ConnectionHandle<RawGenlFrame>,
    family_id: u16,
    /// Held for the length of a dump: the kernel runs one dump at a time per netlink socket and
    /// answers a second one with EBUSY.
    dumping: tokio::sync::Mutex<()>,
    /// Writes: a non-blocking socket driven from tokio's blocking thread pool, one batch (one
    /// datagram) at a time. Its answers are queued by the time `sendmsg` returns, so reading
    /// them never waits.
    writer: Mutex<Writer>,
    /// How long a read waits for its answer.
    timeout: Duration,
}

/// The socket of [`Client::execute`] and what it needs between batches.
struct Writer {
    socket: Socket,
    /// Sequence number of the next request.
    sequence: u32,
    /// Requests per datagram.
    batch_len: usize,
    /// Reused send and receive buffers.
    out: Vec<u8>,
    answers: Vec<u8>,
}

impl Writer {
    fn open() -> Result<Writer, Error> {
        let socket = Socket::new(NETLINK_GENERIC)?;
        if let Err(e) = socket.set_rx_buf_sz(RECEIVE_BUFFER) {
            warn!(error = %e, "could not enlarge the netlink receive buffer");
        }
        // Error answers then echo only the failed request's header, not the whole request.
        if let Err(e) = socket.set_cap_ack(true) {
            debug!(error = %e, "NETLINK_CAP_ACK not available");
        }
        socket.set_non_blocking(true)?;
        let receive_buffer = socket.get_rx_buf_sz()?;
        let batch_len = (receive_buffer / 2 / ANSWER_TRUESIZE).clamp(1, BATCH_LEN);
        Ok(Writer {
            socket,
            sequence: 1,
            batch_len,
            out: Vec::with_capacity(64 * 1024),
            answers: Vec::with_capacity(64 * 1024),
        })
    }

    /// Sends `messages` in batches and returns one result per message.
    fn write_all(&mut self, family_id: u16, messages: &[IpvsMessage]) -> Vec<Result<(), Error>> {
        let started = Instant::now();
        let mut in_kernel = Duration::ZERO;
        let mut results = Vec::with_capacity(messages.len());
        let mut start = 0;
        while start < messages.len() {
            let end = start + batch_end(&messages[start..], self.batch_len);
            results.extend(self.write_batch(family_id, &messages[start..end], &mut in_kernel));
            start = end;
        }
        // The kernel does the work of a batch inside sendmsg: the split says whether a bulk
        // write is bound by the kernel or by this side.
        debug!(
            requests = messages.len(),
            batch_len = self.batch_len,
            failed = results.iter().filter(|r| r.is_err()).count(),
            total_us = started.elapsed().as_micros() as u64,
            in_kernel_us = in_kernel.as_micros() as u64,
            "bulk write"
        );
        results
    }

    fn write_batch(
        &mut self,
        family_id: u16,
        batch: &[IpvsMessage],
        in_kernel: &mut Duration,
    ) -> Vec<Result<(), Error>> {
        let first = self.sequence;
        self.sequence = self.sequence.wrapping_add(batch.len() as u32);
        self.out.clear();
        for (i, message) in batch.iter().enumerate() {
            let flags = if i + 1 == batch.len() {
                NLM_F_REQUEST | NLM_F_ACK
            } else {
                NLM_F_REQUEST
            };
            encode_request(
                &mut self.out,
                family_id,
                first.wrapping_add(i as u32),
                flags,
                message,
            );
        }
        let mut results: Vec<Option<Result<(), Error>>> = (0..batch.len()).map(|_| None).collect();
        let unsent =
            |batch: &[IpvsMessage], why: &dyn Fn() -> io::Error| -> Vec<Result<(), Error>> {
                batch
                    .iter()
                    .map(|m| {
                        Err(Error::Send {
                            command: m.cmd.name(),
                            source: why(),
                        })
                    })
                    .collect()
            };
        let sending = Instant::now();
        let sent = self.socket.send_to(&self.out, &SocketAddr::new(0, 0), 0);
        *in_kernel += sending.elapsed();
        match sent {
            Ok(n) if n == self.out.len() => {}
            Ok(n) => {
                let total = self.out.len();
                return unsent(batch, &|| {
                    io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("sent {n} of {total} bytes"),
                    )
                });
            }
            Err(e) => {
                let (kind, text) = (e.kind(), e.to_string());
                let errno = e.raw_os_error();
                return unsent(batch, &|| match errno {
                    Some(errno) => io::Error::from_raw_os_error(errno),
                    None => io::Error::new(kind, text.clone()),
                });
            }
        }
        // The kernel handled the whole datagram inside send_to: its answers are queued.
        let mut acked = false;
        while !acked {
            self.answers.clear();
            match self.socket.recv(&mut self.answers, 0) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    warn!(error = %e, "reading IPVS answers failed");
                    break;
                }
            }
            let mut offset = 0;
            while offset < self.answers.len() {
                let Ok(buf) = NetlinkBuffer::new_checked(&self.answers[offset..]) else {
                    break;
                };
                let len = buf.length() as usize;
                let seq = buf.sequence_number();
                let index = seq.wrapping_sub(first) as usize;
                if let Ok(msg) =
                    NetlinkMessage::<RawGenlFrame>::deserialize(&self.answers[offset..offset + len])
                {
                    if let (NetlinkPayload::Error(e), Some(slot)) =
                        (&msg.payload, results.get_mut(index))
                    {
                        *slot = Some(match e.code {
                            None => Ok(()),
                            Some(code) => Err(kernel_error(batch[index].cmd, code.get())),
                        });
                        if index + 1 == batch.len() {
                            acked = true;
                        }
                    }
                }
                offset += len.max(16).div_ceil(4) * 4;
            }
        }
        if !acked {
            // Some answer was lost: what failed cannot be told from what succeeded.
            return results
                .into_iter()
                .zip(batch)
                .map(|(r, m)| {
                    r.unwrap_or_else(|| {
                        Err(Error::AnswerLost {
                            command: m.cmd.name(),
                        })
                    })
                })
                .collect();
        }
        results.into_iter().map(|r| r.unwrap_or(Ok(()))).collect()
    }
}

/// A connection to the kernel's IPVS family. Cloning shares the connection; every method takes
/// `&self` and may be called from many tasks at once.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("family_id", &self.inner.family_id)
            .finish()
    }
}

/// What one request got back.
struct Answer {
    /// Replies (for gets and dumps), each parsed on its own: `Err` says why one did not parse.
    replies: Vec<Result<IpvsMessage, String>>,
}

impl Answer {
    /// The replies, or a decode error naming the first that did not parse.
    fn strict(self, cmd: IpvsCmd) -> Result<Vec<IpvsMessage>, Error> {
        self.replies
            .into_iter()
            .map(|r| {
                r.map_err(|reason| Error::Decode {
                    command: cmd.name(),
                    reason,
                })
            })
            .collect()
    }
}

/// The sockets of a client, opened in the namespace the client is for.
struct Sockets {
    connection: Connection<RawGenlFrame>,
    handle: ConnectionHandle<RawGenlFrame>,
    writer: Writer,
}

impl Sockets {
    /// Opens both sockets in the calling thread's network namespace. The connection's socket is
    /// registered with the tokio runtime entered by the calling thread.
    fn open() -> Result<Sockets, Error> {
        let (mut connection, handle, _unsolicited) =
            netlink_proto::new_connection::<RawGenlFrame>(NETLINK_GENERIC)?;
        // Acks and ends of dumps are how a request's result is known: have them forwarded
        // rather than swallowed, so a stream that ends without one means a lost answer.
        connection.set_forward_ack(true);
        connection.set_forward_done(true);
        let socket = connection.socket_mut().socket_mut();
        if let Err(e) = socket.set_rx_buf_sz(RECEIVE_BUFFER) {
            warn!(error = %e, "could not enlarge the netlink receive buffer");
        }
        let writer = Writer::open()?;
        Ok(Sockets {
            connection,
            handle,
            writer,
        })
    }

    /// Opens both sockets in the network namespace of `path` (`/proc/PID/ns/net`, or a file
    /// `ip netns add` bind-mounted under `/run/netns`): on a thread of its own that enters the
    /// namespace, opens them and ends, since a socket stays in the namespace it was created in.
    /// Neither the calling thread nor tokio's threads change namespace.
    async fn open_in(path: PathBuf) -> Result<Sockets, Error> {
        let runtime = tokio::runtime::Handle::current();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread_path = path.clone();
        std::thread::Builder::new()
            .name("ipvs-netns".to_string())
            .spawn(move || {
                let path = thread_path;
                let namespace_error = |source: io::Error| Error::Namespace {
                    path: path.clone(),
                    source,
                };
                let opened = std::fs::File::open(&path)
                    .map_err(namespace_error)
                    .and_then(|ns| {
                        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                            .map_err(|e| namespace_error(io::Error::from(e)))
                    })
                    .and_then(|()| {
                        let _entered = runtime.enter();
                        Sockets::open()
                    });
                // The receiver only goes away with the caller's future: nothing to tell then.
                let _ = tx.send(opened);
            })?;
        rx.await.map_err(|_| Error::Namespace {
            path,
            source: io::Error::other("the thread opening the sockets ended without an answer"),
        })?
    }
}

/// How to connect: the request timeout and the network namespace. Made by [`Client::builder`].
///
/// ```no_run
/// use std::time::Duration;
///
/// # async fn run() -> Result<(), ipvs::Error> {
/// // The IPVS table of the network namespace `ip netns add blue` made.
/// let client = ipvs::Client::builder()
///     .network_namespace("/run/netns/blue")
///     .timeout(Duration::from_secs(5))
///     .connect()
///     .await?;
/// # let _ = client; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    timeout: Duration,
    namespace: Option<PathBuf>,
}

impl Default for ClientBuilder {
    fn default() -> ClientBuilder {
        ClientBuilder {
            timeout: DEFAULT_TIMEOUT,
            namespace: None,
        }
    }
}

impl ClientBuilder {
    /// How long a read (get or dump) waits for its answer before failing with
    /// [`Error::TimedOut`]; [`DEFAULT_TIMEOUT`] unless set. Writes need no timeout: the kernel
    /// has answered a batch by the time it is sent.
    pub fn timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.timeout = timeout;
        self
    }

    /// Talks to the IPVS table of another network namespace (IPVS keeps one per namespace): the
    /// namespace file at `path`, such as `/proc/PID/ns/net` or `/run/netns/NAME`. Entering it
    /// needs CAP_SYS_ADMIN; a failure to is [`Error::Namespace`]. Unless set, the client uses the
    /// namespace of the thread that connects.
    pub fn network_namespace(mut self, path: impl Into<PathBuf>) -> ClientBuilder {
        self.namespace = Some(path.into());
        self
    }

    /// Opens the sockets, spawns the connection task and resolves the IPVS family; see
    /// [`Client::connect`], which is this with the defaults.
    pub async fn connect(self) -> Result<Client, Error> {
        let Sockets {
            connection,
            handle,
            writer,
        } = match self.namespace {
            Some(path) => Sockets::open_in(path).await?,
            None => Sockets::open()?,
        };
        tokio::spawn(connection);
        let family_id = resolve_family(&handle, self.timeout).await?;
        debug!(family_id, batch_len = writer.batch_len, "connected to IPVS");
        Ok(Client {
            inner: Arc::new(Inner {
                handle,
                family_id,
                writer: Mutex::new(writer),
                dumping: tokio::sync::Mutex::new(()),
                timeout: self.timeout,
            }),
        })
    }
}

impl Client {
    /// Opens a generic-netlink socket in the current network namespace, spawns its connection
    /// task and resolves the IPVS family, waiting at most [`DEFAULT_TIMEOUT`] for any read.
    /// [`Client::builder`] sets another timeout or namespace.
    ///
    /// Needs a tokio runtime with its IO and time drivers (`#[tokio::main]`, or a runtime built
    /// with `enable_all`): the connection task is spawned on the current runtime, so calling this
    /// outside one panics, and the client's reads run as long as that runtime does. Writes run
    /// on the runtime's blocking thread pool.
    ///
    /// Fails with [`Error::IpvsUnavailable`] when the kernel has no IPVS family (module not
    /// loaded, or IPVS not built).
    pub async fn connect() -> Result<Client, Error> {
        Client::builder().connect().await
    }

    /// Options for connecting: the request timeout and the network namespace.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The generic-netlink id the kernel gave the IPVS family.
    pub fn family_id(&self) -> u16 {
        self.inner.family_id
    }

    fn frame(&self, message: IpvsMessage, flags: u16) -> NetlinkMessage<RawGenlFrame> {
        let genl = GenlMessage::from_payload(message);
        let frame = RawGenlFrame::from_genl(self.inner.family_id, &genl);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(frame));
        msg.finalize();
        msg
    }

    /// Sends one request and gathers its replies until the ack or the end of the dump.
    async fn request(&self, message: IpvsMessage, dump: bool) -> Result<Answer, Error> {
        let mut replies = Vec::new();
        self.request_each(message, dump, |reply| replies.push(reply))
            .await?;
        Ok(Answer { replies })
    }

    /// Sends one request and hands each reply to `each` as it arrives (see [`Client::request`]).
    async fn request_each(
        &self,
        message: IpvsMessage,
        dump: bool,
        mut each: impl FnMut(Result<IpvsMessage, String>),
    ) -> Result<(), Error> {
        let cmd = message.cmd;
        let _one_dump = if dump {
            Some(self.inner.dumping.lock().await)
        } else {
            None
        };
        let flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { NLM_F_ACK };
        let msg = self.frame(message, flags);
        let mut stream = self
            .inner
            .handle
            .request(msg, SocketAddr::new(0, 0))
            .map_err(|e| closed(cmd, e))?;
        let mut failure = None;
        let mut finished = false;
        let gather = async {
            while let Some(reply) = stream.next().await {
                match reply.payload {
                    NetlinkPayload::InnerMessage(frame) => match frame.to_ipvs() {
                        Ok(genl) => each(Ok(genl.payload)),
                        // One message of a dump that does not parse is that entry's problem,
                        // not the whole answer's: the caller decides.
                        Err(e) => each(Err(e.to_string())),
                    },
                    NetlinkPayload::Error(e) => {
                        if let Some(code) = e.code {
                            failure.get_or_insert(kernel_error(cmd, code.get()));
                        }
                        finished = true;
                    }
                    NetlinkPayload::Done(_) => finished = true,
                    _ => {}
                }
            }
        };
        if tokio::time::timeout(self.inner.timeout, gather)
            .await
            .is_err()
        {
            return Err(Error::TimedOut {
                command: cmd.name(),
                seconds: self.inner.timeout.as_secs(),
            });
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if !finished {
            return Err(Error::ConnectionClosed {
                command: cmd.name(),
            });
        }
        Ok(())
    }

    /// Sends requests in datagrams of up to [`BATCH_LEN`] and returns one result per request, in
    /// the order given. A failed request does not stop the others: the kernel handles every
    /// message of a datagram on its own.
    ///
    /// Requests may be given by reference. They are encoded and sent [`EXECUTE_CHUNK`] at a
    /// time, so that a first sync of hundreds of thousands of requests never holds all their
    /// encoded forms at once. Calls from several tasks are serialised chunk by chunk: one call's
    /// requests go in the order given, but another call's may come between two of its chunks.
    pub async fn execute<R, I>(&self, requests: I) -> Vec<Result<(), Error>>
    where
        R: std::borrow::Borrow<Request> + Send,
        I: IntoIterator<Item = R>,
        I::IntoIter: Send,
    {
        // A request that cannot be encoded fails on its own; the others are sent.
        let mut results: Vec<Option<Result<(), Error>>> = Vec::new();
        let mut messages = Vec::new();
        let mut waiting: Vec<usize> = Vec::new();
        for request in requests {
            let request = request.borrow();
            match request.check() {
                Ok(()) => {
                    messages.push(request.to_message());
                    waiting.push(results.len());
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
            if messages.len() == EXECUTE_CHUNK {
                let written = self.write_messages(std::mem::take(&mut messages)).await;
                for (i, result) in waiting.drain(..).zip(written) {
                    results[i] = Some(result);
                }
            }
        }
        let written = self.write_messages(messages).await;
        for (i, result) in waiting.drain(..).zip(written) {
            results[i] = Some(result);
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(Error::AnswerLost {
                        command: IpvsCmd::Other(0).name(),
                    })
                })
            })
            .collect()
    }

    /// Sends encoded requests on the writer socket, from the blocking thread pool.
    async fn write_messages(&self, messages: Vec<IpvsMessage>) -> Vec<Result<(), Error>> {
        if messages.is_empty() {
            return Vec::new();
        }
        let inner = Arc::clone(&self.inner);
        let cmds: Vec<IpvsCmd> = messages.iter().map(|m| m.cmd).collect();
        let written = tokio::task::spawn_blocking(move || {
            let mut writer = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            writer.write_all(inner.family_id, &messages)
        })
        .await;
        match written {
            Ok(results) => results,
            Err(e) => cmds
                .into_iter()
                .map(|cmd| {
                    Err(Error::WriterFailed {
                        command: cmd.name(),
                        reason: e.to_string(),
                    })
                })
                .collect(),
        }
    }

    async fn write(&self, request: Request) -> Result<(), Error> {
        let command = request.command().name();
        self.execute([request])
            .await
            .pop()
            .unwrap_or(Err(Error::AnswerLost { command }))
    }

    /// Every service (one dump). Fails on the first entry it cannot read (see
    /// [`Client::service_dump`] to read around it).
    pub async fn services(&self) -> Result<Vec<Service>, Error> {
        let answer = self
            .request(IpvsMessage::new(IpvsCmd::GetService, vec![]), true)
            .await?;
        answer
            .strict(IpvsCmd::GetService)?
            .iter()
            .map(|m| service_of(IpvsCmd::GetService, m))
            .collect()
    }

    /// Every service (one dump), each entry read on its own: those this crate cannot read (a
    /// value it has no name for, another program's doing) are listed apart rather than failing
    /// the read.
    pub async fn service_dump(&self) -> Result<Dump<Service>, Error> {
        let mut dump = Dump::default();
        self.request_each(
            IpvsMessage::new(IpvsCmd::GetService, vec![]),
            true,
            |reply| dump.add_service_reply(&reply),
        )
        .await?;
        Ok(dump)
    }

    /// The destinations of a service (one dump), each entry read on its own (see
    /// [`Client::service_dump`]).
    pub async fn destination_dump(&self, key: &ServiceKey) -> Result<Dump<Destination>, Error> {
        let answer = self
            .request(
                IpvsMessage::new(IpvsCmd::GetDest, vec![CmdAttr::Service(key.into())]),
                true,
            )
            .await?;
        Ok(destinations_of_dump(key, &answer.replies))
    }

    /// One service. [`Error::NotFound`] when it does not exist.
    pub async fn service(&self, key: &ServiceKey) -> Result<Service, Error> {
        let answer = self
            .request(
                IpvsMessage::new(IpvsCmd::GetService, vec![CmdAttr::Service(key.into())]),
                false,
            )
            .await?;
        let replies = answer.strict(IpvsCmd::GetService)?;
        let reply = replies.first().ok_or(Error::NotFound {
            command: IpvsCmd::GetService.name(),
        })?;
        service_of(IpvsCmd::GetService, reply)
    }

    /// Adds a service. [`Error::AlreadyExists`] when its key is taken.
    pub async fn add_service(&self, service: &Service) -> Result<(), Error> {
        self.write(Request::AddService(service.clone())).await
    }

    /// Changes a service's scheduler, flags, timeout, netmask and PE.
    pub async fn update_service(&self, service: &Service) -> Result<(), Error> {
        self.write(Request::UpdateService(service.clone())).await
    }

    /// Deletes a service and its destinations.
    pub async fn delete_service(&self, key: &ServiceKey) -> Result<(), Error> {
        self.write(Request::DeleteService(*key)).await
    }

    /// The destinations of a service (one dump).
    pub async fn destinations(&self, key: &ServiceKey) -> Result<Vec<Destination>, Error> {
        let cmd = IpvsCmd::GetDest;
        let answer = self
            .request(
                IpvsMessage::new(cmd, vec![CmdAttr::Service(key.into())]),
                true,
            )
            .await?;
        let family = key.family();
        let replies = answer.strict(cmd)?;
        let mut out = Vec::with_capacity(replies.len());
        for m in &replies {
            for a in &m.attrs {
                if let CmdAttr::Dest(attrs) = a {
                    out.push(
                        Destination::try_from((attrs.as_slice(), family))
                            .map_err(|e| decode(cmd, e))?,
                    );
                }
            }
        }
        Ok(out)
    }

    /// Adds a destination to a service.
    pub async fn add_destination(&self, key: &ServiceKey, dest: &Destination) -> Result<(), Error> {
        self.write(Request::AddDestination(*key, dest.clone()))
            .await
    }

    /// Changes a destination's forwarding, weight, thresholds and tunnel settings.
    pub async fn update_destination(
        &self,
        key: &ServiceKey,
        dest: &Destination,
    ) -> Result<(), Error> {
        self.write(Request::UpdateDestination(*key, dest.clone()))
            .await
    }

    /// Deletes a destination (by address and port).
    pub async fn delete_destination(
        &self,
        key: &ServiceKey,
        dest: &Destination,
    ) -> Result<(), Error> {
        self.write(Request::DeleteDestination(*key, dest.clone()))
            .await
    }

    /// The IPVS version and connection table size.
    pub async fn info(&self) -> Result<Info, Error> {
        let cmd = IpvsCmd::GetInfo;
        let reply = self.single_reply(cmd).await?;
        Info::try_from(reply.attrs.as_slice()).map_err(|e| decode(cmd, e))
    }

    /// The connection timeouts.
    pub async fn timeouts(&self) -> Result<Timeouts, Error> {
        let reply = self.single_reply(IpvsCmd::GetConfig).await?;
        Ok(Timeouts::from(reply.attrs.as_slice()))
    }

    /// Sends a get without attributes and returns its one reply.
    async fn single_reply(&self, cmd: IpvsCmd) -> Result<IpvsMessage, Error> {
        let replies = self
            .request(IpvsMessage::new(cmd, vec![]), false)
            .await?
            .strict(cmd)?;
        replies.into_iter().next().ok_or_else(|| Error::Decode {
            command: cmd.name(),
            reason: "acknowledged without a reply".to_string(),
        })
    }

    /// Sets the connection timeouts given; `None` or 0 leaves one as it is.
    pub async fn set_timeouts(&self, timeouts: &Timeouts) -> Result<(), Error> {
        self.write(Request::SetTimeouts(*timeouts)).await
    }

    /// Deletes every service.
    pub async fn flush(&self) -> Result<(), Error> {
        self.write(Request::Flush).await
    }

    /// Zeroes the counters of one service, or of all with `None`.
    pub async fn zero(&self, key: Option<&ServiceKey>) -> Result<(), Error> {
        self.write(Request::Zero(key.copied())).await
    }

    /// The running sync daemons.
    pub async fn daemons(&self) -> Result<Vec<SyncDaemon>, Error> {
        let cmd = IpvsCmd::GetDaemon;
        let replies = self
            .request(IpvsMessage::new(cmd, vec![]), true)
            .await?
            .strict(cmd)?;
        let mut out = Vec::new();
        for m in &replies {
            for a in &m.attrs {
                if let CmdAttr::Daemon(attrs) = a {
                    out.push(SyncDaemon::try_from(attrs.as_slice()).map_err(|e| decode(cmd, e))?);
                }
            }
        }
        Ok(out)
    }

    /// Starts a sync daemon.
    pub async fn add_daemon(&self, daemon: &SyncDaemon) -> Result<(), Error> {
        self.write(Request::AddDaemon(daemon.clone())).await
    }

    /// Stops the sync daemon of a role.
    pub async fn delete_daemon(&self, state: DaemonState) -> Result<(), Error> {
        self.write(Request::DeleteDaemon(state)).await
    }
}

fn service_of(cmd: IpvsCmd, m: &IpvsMessage) -> Result<Service, Error> {
    for a in &m.attrs {
        if let CmdAttr::Service(attrs) = a {
            return Service::try_from(attrs.as_slice()).map_err(|e| decode(cmd, e));
        }
    }
    Err(Error::Decode {
        command: cmd.name(),
        reason: "reply without IPVS_CMD_ATTR_SERVICE".to_string(),
    })
}

fn decode(cmd: IpvsCmd, e: netlink_packet_core::DecodeError) -> Error {
    Error::Decode {
        command: cmd.name(),
        reason: e.to_string(),
    }
}

fn closed(cmd: IpvsCmd, e: impl std::fmt::Display) -> Error {
    debug!(command = cmd.name(), error = %e, "netlink connection gone");
    Error::ConnectionClosed {
        command: cmd.name(),
    }
}

/// Asks the generic-netlink controller for the id of the IPVS family.
async fn resolve_family(
    handle: &ConnectionHandle<RawGenlFrame>,
    timeout: Duration,
) -> Result<u16, Error> {
    let ctrl = GenlMessage::from_payload(GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName(IPVS_GENL_NAME.to_string())],
    });
    let frame = RawGenlFrame::from_genl(GENL_ID_CTRL, &ctrl);
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(frame));
    msg.finalize();
    let mut stream = handle
        .request(msg, SocketAddr::new(0, 0))
        .map_err(|e| Error::Io(io::Error::other(format!("CTRL_CMD_GETFAMILY: {e}"))))?;
    let mut family_id = None;
    let gather = async {
        while let Some(reply) = stream.next().await {
            match reply.payload {
                NetlinkPayload::InnerMessage(frame) => {
                    let parsed = GenlMessage::<GenlCtrl>::parse_with_param(
                        &frame.payload[..],
                        frame.message_type,
                    )
                    .map_err(|e| Error::Decode {
                        command: "CTRL_CMD_GETFAMILY",
                        reason: e.to_string(),
                    })?;
                    for nla in parsed.payload.nlas {
                        if let GenlCtrlAttrs::FamilyId(id) = nla {
                            family_id = Some(id);
                        }
                    }
                }
                NetlinkPayload::Error(e) => match e.code.map(|c| errno_of(c.get())) {
                    None => {}
                    Some(libc_errno::ENOENT) => return Err(Error::IpvsUnavailable),
                    Some(libc_errno::EPERM) => {
                        return Err(Error::NotPermitted {
                            command: "CTRL_CMD_GETFAMILY",
                        })
                    }
                    Some(errno) => {
                        return Err(Error::Kernel {
                            command: "CTRL_CMD_GETFAMILY",
                            source: io::Error::from_raw_os_error(errno),
                        })
                    }
                },
                _ => {}
            }
        }
        Ok(())
    };
    tokio::time::timeout(timeout, gather)
        .await
        .map_err(|_| Error::TimedOut {
            command: "CTRL_CMD_GETFAMILY",
            seconds: timeout.as_secs(),
        })??;
    family_id.ok_or(Error::IpvsUnavailable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Destination, Protocol, ServiceKey};

    fn add_dest(i: u8) -> IpvsMessage {
        let key = ServiceKey::Addr {
            address: [10, 96, 0, 1].into(),
            protocol: Protocol::Tcp,
            port: 80,
        };
        Request::AddDestination(key, Destination::new([10, 244, 0, i].into(), 8080)).to_message()
    }

    #[test]
    fn batches_stay_within_a_page_and_the_count_limit() {
        let messages: Vec<_> = (0..100).map(add_dest).collect();
        let one = NETLINK_HEADER_LEN + GENL_HEADER_LEN + messages[0].buffer_len();
        let fit = DATAGRAM_LEN / one;
        assert!(fit > 1 && fit < 100, "{one} bytes a message");
        assert_eq!(batch_end(&messages, BATCH_LEN), fit);
        assert_eq!(batch_end(&messages, 5), 5);
        assert_eq!(batch_end(&messages[..3], BATCH_LEN), 3);
        assert_eq!(batch_end(&messages[..0], BATCH_LEN), 0);
    }

    #[test]
    fn an_oversized_message_still_goes_alone() {
        let mut big = add_dest(1);
        big.attrs
            .push(CmdAttr::Other(netlink_packet_core::DefaultNla::new(
                99,
                vec![0; DATAGRAM_LEN],
            )));
        assert_eq!(batch_end(&[big.clone(), add_dest(2)], BATCH_LEN), 1);
    }

    #[test]
    fn an_over_long_name_is_an_error_not_a_panic() {
        // Before: encoding a scheduler name longer than a netlink attribute holds panicked in
        // netlink-packet-core. Now such a request fails on its own, before it is encoded.
        let key = ServiceKey::FwMark {
            mark: 1,
            family: crate::Family::Inet,
        };
        let huge = Request::AddService(crate::Service::new(key, "x".repeat(70_000)));
        assert!(matches!(
            huge.check(),
            Err(Error::NameTooLong {
                what: "scheduler",
                len: 70_000,
                max: 15,
                ..
            })
        ));
        let mut pe = crate::Service::new(key, "rr");
        pe.persistence_engine = Some("sip-but-far-too-long".into());
        assert!(matches!(
            Request::UpdateService(pe).check(),
            Err(Error::NameTooLong {
                what: "persistence engine",
                command: "IPVS_CMD_SET_SERVICE",
                ..
            })
        ));
        let daemon = crate::SyncDaemon {
            state: crate::DaemonState::Master,
            interface: "an-interface-name".into(),
            sync_id: 0,
            max_len: None,
            group: None,
            port: None,
            ttl: None,
        };
        assert!(matches!(
            Request::AddDaemon(daemon).check(),
            Err(Error::NameTooLong {
                what: "interface",
                ..
            })
        ));
        // The longest names the kernel takes pass.
        assert!(
            Request::AddService(crate::Service::new(key, "x".repeat(15)))
                .check()
                .is_ok()
        );
    }

    #[test]
    fn a_request_names_the_service_it_is_about() {
        let key = ServiceKey::Addr {
            address: [10, 96, 0, 1].into(),
            protocol: Protocol::Udp,
            port: 53,
        };
        let dest = Destination::new([10, 244, 0, 1].into(), 53);
        for request in [
            Request::AddService(crate::Service::new(key, "rr")),
            Request::UpdateService(crate::Service::new(key, "wrr")),
            Request::DeleteService(key),
            Request::AddDestination(key, dest.clone()),
            Request::UpdateDestination(key, dest.clone()),
            Request::DeleteDestination(key, dest),
            Request::Zero(Some(key)),
        ] {
            assert_eq!(request.service_key(), Some(key), "{request:?}");
        }
        for request in [
            Request::Zero(None),
            Request::Flush,
            Request::SetTimeouts(crate::Timeouts::default()),
            Request::DeleteDaemon(crate::DaemonState::Backup),
        ] {
            assert_eq!(request.service_key(), None, "{request:?}");
        }
    }

    #[test]
    fn an_error_code_without_a_positive_errno_does_not_overflow() {
        assert_eq!(errno_of(i32::MIN), i32::MAX);
        assert_eq!(errno_of(-22), 22);
        assert!(matches!(
            kernel_error(IpvsCmd::NewService, i32::MIN),
            Error::Kernel { .. }
        ));
    }

    #[test]
    fn lost_answers_send_failures_and_writer_failures_are_told_apart() {
        let errors = [
            Error::AnswerLost {
                command: "IPVS_CMD_NEW_DEST",
            },
            Error::Send {
                command: "IPVS_CMD_NEW_DEST",
                source: io::Error::from_raw_os_error(105),
            },
            Error::WriterFailed {
                command: "IPVS_CMD_NEW_DEST",
                reason: "task panicked".into(),
            },
            Error::TimedOut {
                command: "IPVS_CMD_GET_SERVICE",
                seconds: 60,
            },
        ];
        let texts: std::collections::BTreeSet<String> =
            errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(texts.len(), errors.len(), "{texts:#?}");
        assert!(texts.iter().filter(|t| t.contains("no answer")).count() <= 1);
    }

    #[test]
    fn a_datagram_the_kernel_cannot_take_is_a_send_failure() {
        // Netlink refuses a datagram larger than the socket's send buffer (EMSGSIZE) before the
        // kernel sees any of it: that is a send failure, not a lost answer or a timeout.
        let Ok(mut writer) = Writer::open() else {
            eprintln!("no generic netlink here; skipped");
            return;
        };
        let mut big = add_dest(1);
        for _ in 0..8 {
            big.attrs
                .push(CmdAttr::Other(netlink_packet_core::DefaultNla::new(
                    99,
                    vec![0; 60_000],
                )));
        }
        let results = writer.write_all(0xfffe, &[big]);
        assert!(
            matches!(
                results.as_slice(),
                [Err(Error::Send {
                    command: "IPVS_CMD_NEW_DEST",
                    ..
                })]
            ),
            "{results:?}"
        );
    }
}
