//! The async client: one generic-netlink socket, many requests in flight.
//!
//! Every write is a request the kernel answers with an ack. Rather than waiting for each ack
//! before sending the next request (what `ipvsadm -R` does, opening a socket per rule on top),
//! [`Client::execute`] packs requests into datagrams of [`BATCH_LEN`] messages — the kernel
//! processes every message of a datagram in turn and acks each — and keeps several datagrams in
//! flight. The acks of one datagram arrive in the order of its messages, which maps each ack back
//! to its request. The number of unread acks is bounded by the socket's receive buffer: the
//! kernel drops an ack that does not fit, and the request it answers would never finish.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use netlink_packet_core::ParseableParametrized;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::GenlMessage;
use netlink_proto::sys::{protocols::NETLINK_GENERIC, AsyncSocket, SocketAddr};
use netlink_proto::ConnectionHandle;
use tracing::{debug, warn};

use crate::message::convert::{
    daemon_attrs, daemon_from_attrs, daemon_state_attrs, dest_attrs, dest_from_attrs,
    dest_key_attrs, info_from_attrs, service_attrs, service_from_attrs, service_key_attrs,
    timeouts_attrs, timeouts_from_attrs,
};
use crate::message::{CmdAttr, IpvsCmd, IpvsMessage, RawGenlFrame, IPVS_GENL_NAME};
use crate::{DaemonState, Destination, Error, Info, Service, ServiceKey, SyncDaemon, Timeouts};

/// `GENL_ID_CTRL`: the fixed id of the generic-netlink controller family.
const GENL_ID_CTRL: u16 = 16;

/// Receive buffer asked for. The kernel caps it at `net.core.rmem_max` (and doubles it).
const RECEIVE_BUFFER: i32 = 8 * 1024 * 1024;

/// Bytes of receive buffer one queued ack takes in the kernel's accounting (`skb->truesize` of a
/// small message is under 1 KiB on 64-bit kernels; this leaves room).
const ACK_TRUESIZE: usize = 1280;

/// Messages packed into one datagram by [`Client::execute`].
pub const BATCH_LEN: usize = 64;

/// How long a request may wait for its answer before it is failed rather than left hanging (an
/// answer dropped by the kernel for lack of buffer space never comes).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// A write the kernel acks, for [`Client::execute`].
#[derive(Debug, Clone, PartialEq, Eq)]
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
        let svc = |key: &ServiceKey| CmdAttr::Service(service_key_attrs(key));
        match self {
            Request::AddService(s) => IpvsMessage::new(
                IpvsCmd::NewService,
                vec![CmdAttr::Service(service_attrs(s))],
            ),
            Request::UpdateService(s) => IpvsMessage::new(
                IpvsCmd::SetService,
                vec![CmdAttr::Service(service_attrs(s))],
            ),
            Request::DeleteService(k) => IpvsMessage::new(IpvsCmd::DelService, vec![svc(k)]),
            Request::AddDestination(k, d) => {
                IpvsMessage::new(IpvsCmd::NewDest, vec![svc(k), CmdAttr::Dest(dest_attrs(d))])
            }
            Request::UpdateDestination(k, d) => {
                IpvsMessage::new(IpvsCmd::SetDest, vec![svc(k), CmdAttr::Dest(dest_attrs(d))])
            }
            Request::DeleteDestination(k, d) => IpvsMessage::new(
                IpvsCmd::DelDest,
                vec![svc(k), CmdAttr::Dest(dest_key_attrs(d))],
            ),
            Request::Zero(k) => IpvsMessage::new(IpvsCmd::Zero, k.iter().map(svc).collect()),
            Request::Flush => IpvsMessage::new(IpvsCmd::Flush, vec![]),
            Request::SetTimeouts(t) => IpvsMessage::new(IpvsCmd::SetConfig, timeouts_attrs(t)),
            Request::AddDaemon(d) => {
                IpvsMessage::new(IpvsCmd::NewDaemon, vec![CmdAttr::Daemon(daemon_attrs(d))])
            }
            Request::DeleteDaemon(s) => IpvsMessage::new(
                IpvsCmd::DelDaemon,
                vec![CmdAttr::Daemon(daemon_state_attrs(*s))],
            ),
        }
    }
}

/// Maps a kernel errno answering `cmd` to an [`Error`]. `code` is the negative errno of the
/// netlink error message.
pub fn kernel_error(cmd: IpvsCmd, code: i32) -> Error {
    let command = cmd.name();
    let errno = code.checked_abs().unwrap_or(i32::MAX);
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

/// The errno values the client names (Linux numbering, the same on every architecture).
mod libc_errno {
    pub const EPERM: i32 = 1;
    pub const ENOENT: i32 = 2;
    pub const ESRCH: i32 = 3;
    pub const EEXIST: i32 = 17;
    pub const EINVAL: i32 = 22;
}

struct Inner {
    handle: ConnectionHandle<RawGenlFrame>,
    family_id: u16,
    /// Datagrams of [`BATCH_LEN`] messages kept in flight by `execute`.
    batches_in_flight: usize,
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
            .field("batches_in_flight", &self.inner.batches_in_flight)
            .finish()
    }
}

/// What one request got back.
struct Answer {
    /// Decoded replies (for gets and dumps).
    replies: Vec<IpvsMessage>,
}

impl Client {
    /// Opens a generic-netlink socket, spawns its connection task on the current tokio runtime
    /// and resolves the IPVS family.
    ///
    /// Fails with [`Error::IpvsUnavailable`] when the kernel has no IPVS family (module not
    /// loaded, or IPVS not built).
    pub async fn connect() -> Result<Client, Error> {
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
        let receive_buffer = socket.get_rx_buf_sz().unwrap_or(212_992);
        // Half the buffer for acks in flight, the rest for dumps and slack.
        let batches_in_flight = (receive_buffer / 2 / ACK_TRUESIZE / BATCH_LEN).clamp(1, 64);
        tokio::spawn(connection);
        let family_id = resolve_family(&handle).await?;
        debug!(
            family_id,
            receive_buffer, batches_in_flight, "connected to IPVS"
        );
        Ok(Client {
            inner: Arc::new(Inner {
                handle,
                family_id,
                batches_in_flight,
            }),
        })
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
        let cmd = message.cmd;
        let flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { NLM_F_ACK };
        let msg = self.frame(message, flags);
        let mut stream = self
            .inner
            .handle
            .request(msg, SocketAddr::new(0, 0))
            .map_err(|e| closed(cmd, e))?;
        let mut replies = Vec::new();
        let mut failure = None;
        let mut finished = false;
        let gather = async {
            while let Some(reply) = stream.next().await {
                match reply.payload {
                    NetlinkPayload::InnerMessage(frame) => match frame.to_ipvs() {
                        Ok(genl) => replies.push(genl.payload),
                        Err(e) => {
                            failure.get_or_insert(Error::Decode {
                                command: cmd.name(),
                                reason: e.to_string(),
                            });
                        }
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
        if tokio::time::timeout(ANSWER_TIMEOUT, gather).await.is_err() {
            return Err(no_answer(cmd, "timed out"));
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if !finished {
            return Err(no_answer(cmd, "connection closed"));
        }
        Ok(Answer { replies })
    }

    /// Sends requests in datagrams of [`BATCH_LEN`], several datagrams in flight, and returns
    /// one result per request, in the order given. A failed request does not stop the others:
    /// the kernel handles every message of a datagram on its own.
    pub async fn execute(
        &self,
        requests: impl IntoIterator<Item = Request>,
    ) -> Vec<Result<(), Error>> {
        let messages: Vec<IpvsMessage> = requests.into_iter().map(|r| r.to_message()).collect();
        let batches: Vec<Vec<IpvsMessage>> =
            messages.chunks(BATCH_LEN).map(|c| c.to_vec()).collect();
        stream::iter(batches)
            .map(|batch| self.send_batch(batch))
            .buffered(self.inner.batches_in_flight)
            .flat_map(stream::iter)
            .collect()
            .await
    }

    async fn send_batch(&self, batch: Vec<IpvsMessage>) -> Vec<Result<(), Error>> {
        let cmds: Vec<IpvsCmd> = batch.iter().map(|m| m.cmd).collect();
        let frames: Vec<_> = batch
            .into_iter()
            .map(|m| self.frame(m, NLM_F_REQUEST | NLM_F_ACK))
            .collect();
        let mut results: Vec<Result<(), Error>> = Vec::with_capacity(cmds.len());
        let mut stream = match self
            .inner
            .handle
            .request_batch(frames, SocketAddr::new(0, 0))
        {
            Ok(s) => s,
            Err(e) => {
                return cmds
                    .iter()
                    .map(|cmd| Err(closed(*cmd, e.to_string())))
                    .collect()
            }
        };
        let gather = async {
            while let Some(reply) = stream.next().await {
                if let NetlinkPayload::Error(e) = reply.payload {
                    let Some(cmd) = cmds.get(results.len()) else {
                        warn!("more acks than requests in a batch");
                        break;
                    };
                    results.push(match e.code {
                        None => Ok(()),
                        Some(code) => Err(kernel_error(*cmd, code.get())),
                    });
                }
            }
        };
        let timed_out = tokio::time::timeout(ANSWER_TIMEOUT, gather).await.is_err();
        let why = if timed_out {
            "timed out"
        } else {
            "connection closed"
        };
        while results.len() < cmds.len() {
            results.push(Err(no_answer(cmds[results.len()], why)));
        }
        results
    }

    async fn write(&self, request: Request) -> Result<(), Error> {
        self.execute([request])
            .await
            .pop()
            .unwrap_or_else(|| Err(no_answer(IpvsCmd::Other(0), "no result")))
    }

    /// Every service (one dump).
    pub async fn services(&self) -> Result<Vec<Service>, Error> {
        let answer = self
            .request(IpvsMessage::new(IpvsCmd::GetService, vec![]), true)
            .await?;
        answer
            .replies
            .iter()
            .map(|m| service_of(IpvsCmd::GetService, m))
            .collect()
    }

    /// One service. [`Error::NotFound`] when it does not exist.
    pub async fn service(&self, key: &ServiceKey) -> Result<Service, Error> {
        let answer = self
            .request(
                IpvsMessage::new(
                    IpvsCmd::GetService,
                    vec![CmdAttr::Service(service_key_attrs(key))],
                ),
                false,
            )
            .await?;
        let reply = answer.replies.first().ok_or(Error::NotFound {
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
                IpvsMessage::new(cmd, vec![CmdAttr::Service(service_key_attrs(key))]),
                true,
            )
            .await?;
        let family = key.family();
        let mut out = Vec::with_capacity(answer.replies.len());
        for m in &answer.replies {
            for a in &m.attrs {
                if let CmdAttr::Dest(attrs) = a {
                    out.push(dest_from_attrs(attrs, family).map_err(|e| decode(cmd, e))?);
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
        let answer = self.request(IpvsMessage::new(cmd, vec![]), false).await?;
        let reply = answer
            .replies
            .first()
            .ok_or_else(|| no_answer(cmd, "no reply"))?;
        info_from_attrs(&reply.attrs).map_err(|e| decode(cmd, e))
    }

    /// The connection timeouts.
    pub async fn timeouts(&self) -> Result<Timeouts, Error> {
        let cmd = IpvsCmd::GetConfig;
        let answer = self.request(IpvsMessage::new(cmd, vec![]), false).await?;
        let reply = answer
            .replies
            .first()
            .ok_or_else(|| no_answer(cmd, "no reply"))?;
        Ok(timeouts_from_attrs(&reply.attrs))
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
        let answer = self.request(IpvsMessage::new(cmd, vec![]), true).await?;
        let mut out = Vec::new();
        for m in &answer.replies {
            for a in &m.attrs {
                if let CmdAttr::Daemon(attrs) = a {
                    out.push(daemon_from_attrs(attrs).map_err(|e| decode(cmd, e))?);
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
            return service_from_attrs(attrs).map_err(|e| decode(cmd, e));
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
    Error::Io(io::Error::new(
        io::ErrorKind::BrokenPipe,
        format!("{}: netlink connection closed: {e}", cmd.name()),
    ))
}

fn no_answer(cmd: IpvsCmd, why: &str) -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{}: no answer from the kernel: {why}", cmd.name()),
    ))
}

/// Asks the generic-netlink controller for the id of the IPVS family.
async fn resolve_family(handle: &ConnectionHandle<RawGenlFrame>) -> Result<u16, Error> {
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
                NetlinkPayload::Error(e) => match e.code.map(|c| c.get().abs()) {
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
    tokio::time::timeout(ANSWER_TIMEOUT, gather)
        .await
        .map_err(|_| {
            Error::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "CTRL_CMD_GETFAMILY: no answer",
            ))
        })??;
    family_id.ok_or(Error::IpvsUnavailable)
}
