//! The workload of the pods in kernel tests and the demo: it answers with its name, so a client
//! can tell which backend IPVS chose.
//!
//! ```text
//! pod_server --name NAME [--tcp PORT...] [--udp PORT...]
//! pod_server --client-tcp ADDR:PORT | --client-udp ADDR:PORT [--peer]
//! ```
//!
//! Server: listens on 0.0.0.0 and :: on every port. TCP: on connect it writes `NAME\n`, then
//! answers each line received with `NAME: <line>\n`, so a test can hold a connection open (to see
//! IPVS keep it on one backend) and keep talking. UDP: answers each datagram with `NAME\n`. It
//! prints `ready` on standard output once every socket is bound, so whoever starts it knows when
//! connections can succeed. The line (TCP) or datagram (UDP) `?peer` is answered instead with
//! `NAME PEER_IP\n`: the address the connection or datagram came from, as the pod saw it (without
//! the port; an IPv4 client of a `::` socket is printed as IPv4, not as `::ffff:a.b.c.d`).
//!
//! Client: connects (TCP) or sends one datagram (UDP), prints the first line of the answer and
//! exits; this is how tests talk from another network namespace (via `ip netns exec`). The UDP
//! client takes answers only from ADDR:PORT (its socket is connected), as a real client would; an
//! ICMP error from there ends it at once. With `--peer` it asks `?peer` and prints `NAME PEER_IP`
//! (over TCP after the greeting, on the same connection).
//!
//! Threads and std only: it has to start fast in a slow VM and be trivially correct.
//!
//! `pod_server --client-udp-loop ADDR:PORT` is a long-lived UDP client (a resolver, a metrics
//! agent): one socket, so one source port, for the whole run; a datagram to ADDR:PORT every
//! 100 ms; for each, one line on standard output: the answer (a pod's name), `-` when none came
//! within the 100 ms, `!` after an ICMP error. It runs until killed or its output is closed.

#![forbid(unsafe_code)]

use std::io::{self, BufRead, BufReader, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket,
};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

const USAGE: &str = "usage: pod_server --name NAME [--tcp PORT...] [--udp PORT...]\n       \
                     pod_server --client-tcp ADDR:PORT | --client-udp ADDR:PORT [--peer]";

/// What a client sends to learn the address the server saw it come from.
const PEER_QUESTION: &str = "?peer";

/// How long a client waits for an answer before it gives up.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

enum Mode {
    Serve {
        name: String,
        tcp_ports: Vec<u16>,
        udp_ports: Vec<u16>,
    },
    ClientTcp {
        addr: String,
        peer: bool,
    },
    ClientUdp {
        addr: String,
        peer: bool,
    },
}

fn parse_args(args: &[String]) -> Result<Mode, String> {
    let mut name = None;
    let mut tcp_ports = Vec::new();
    let mut udp_ports = Vec::new();
    let mut client = None;
    let mut peer = false;
    let mut list: Option<bool> = None; // Some(true): TCP ports follow; Some(false): UDP ports.
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--name" => {
                name = Some(args.next().ok_or("--name needs a value")?.clone());
                list = None;
            }
            "--tcp" => list = Some(true),
            "--udp" => list = Some(false),
            "--client-tcp" | "--client-udp" => {
                let addr = args.next().ok_or(format!("{arg} needs ADDR:PORT"))?.clone();
                client = Some((arg == "--client-tcp", addr));
                list = None;
            }
            "--peer" => {
                peer = true;
                list = None;
            }
            port => {
                let Some(is_tcp) = list else {
                    return Err(format!("unexpected argument {port:?}"));
                };
                let port: u16 = port
                    .parse()
                    .map_err(|e| format!("invalid port {port:?}: {e}"))?;
                if is_tcp {
                    tcp_ports.push(port);
                } else {
                    udp_ports.push(port);
                }
            }
        }
    }
    if let Some((tcp, addr)) = client {
        return Ok(if tcp {
            Mode::ClientTcp { addr, peer }
        } else {
            Mode::ClientUdp { addr, peer }
        });
    }
    if peer {
        return Err("--peer is a client flag".to_owned());
    }
    let name = name.ok_or("--name is required")?;
    if tcp_ports.is_empty() && udp_ports.is_empty() {
        return Err("give at least one --tcp or --udp port".to_owned());
    }
    Ok(Mode::Serve {
        name,
        tcp_ports,
        udp_ports,
    })
}

/// Binds on :: and 0.0.0.0. On Linux a :: socket also takes IPv4 unless `bindv6only` is set, and
/// then the 0.0.0.0 bind fails with "address in use": that is the IPv4 side already covered. A
/// kernel without IPv6 fails the :: bind; then IPv4 alone is served.
fn bind_both<S>(port: u16, bind: impl Fn(SocketAddr) -> io::Result<S>) -> Result<Vec<S>, String> {
    let mut sockets = Vec::new();
    let v6 = bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)));
    let v6_failed = v6.is_err();
    if let Ok(socket) = v6 {
        sockets.push(socket);
    }
    match bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))) {
        Ok(socket) => sockets.push(socket),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse && !v6_failed => {}
        Err(e) => return Err(format!("cannot bind 0.0.0.0:{port}: {e}")),
    }
    Ok(sockets)
}

/// The peer's address as the pod saw it: IPv4 for an IPv4 client of a `::` socket.
fn peer_ip(peer: SocketAddr) -> IpAddr {
    peer.ip().to_canonical()
}

fn serve_tcp_connection(name: &str, stream: TcpStream) -> io::Result<()> {
    let peer = peer_ip(stream.peer_addr()?);
    let mut writer = stream.try_clone()?;
    writer.write_all(format!("{name}\n").as_bytes())?;
    for line in BufReader::new(stream).lines() {
        let line = line?;
        let answer = if line == PEER_QUESTION {
            format!("{name} {peer}\n")
        } else {
            format!("{name}: {line}\n")
        };
        writer.write_all(answer.as_bytes())?;
    }
    Ok(())
}

fn serve(name: String, tcp_ports: Vec<u16>, udp_ports: Vec<u16>) -> Result<(), String> {
    let mut threads = Vec::new();
    for port in tcp_ports {
        for listener in bind_both(port, TcpListener::bind)? {
            let name = name.clone();
            threads.push(thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let name = name.clone();
                    // A client that goes away mid-conversation is normal; nothing to report.
                    thread::spawn(move || serve_tcp_connection(&name, stream));
                }
            }));
        }
    }
    for port in udp_ports {
        for socket in bind_both(port, UdpSocket::bind)? {
            let name = name.clone();
            threads.push(thread::spawn(move || {
                let mut buffer = [0u8; 2048];
                while let Ok((len, peer)) = socket.recv_from(&mut buffer) {
                    let question = String::from_utf8_lossy(&buffer[..len]);
                    let answer = if question.trim_end() == PEER_QUESTION {
                        format!("{name} {}\n", peer_ip(peer))
                    } else {
                        format!("{name}\n")
                    };
                    let _ = socket.send_to(answer.as_bytes(), peer);
                }
            }));
        }
    }
    println!("ready");
    io::stdout()
        .flush()
        .map_err(|e| format!("cannot write to stdout: {e}"))?;
    for thread in threads {
        let _ = thread.join();
    }
    Ok(())
}

fn resolve(addr: &str) -> Result<SocketAddr, String> {
    addr.to_socket_addrs()
        .map_err(|e| format!("invalid address {addr:?}: {e}"))?
        .next()
        .ok_or(format!("{addr:?} resolves to no address"))
}

/// Reads one line; a connection closed before a whole line came is an error.
fn read_answer(reader: &mut impl BufRead, target: SocketAddr) -> Result<String, String> {
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| format!("no answer from {target}: {e}"))?;
    if !line.ends_with('\n') {
        return Err(format!("{target} closed the connection without answering"));
    }
    Ok(line)
}

fn client_tcp(addr: &str, peer: bool) -> Result<String, String> {
    let target = resolve(addr)?;
    let stream = TcpStream::connect_timeout(&target, CLIENT_TIMEOUT)
        .map_err(|e| format!("cannot connect to {target}: {e}"))?;
    stream
        .set_read_timeout(Some(CLIENT_TIMEOUT))
        .map_err(|e| format!("cannot set a timeout on the connection to {target}: {e}"))?;
    let mut writer = stream
        .try_clone()
        .map_err(|e| format!("cannot use the connection to {target}: {e}"))?;
    let mut reader = BufReader::new(stream);
    let greeting = read_answer(&mut reader, target)?;
    if !peer {
        return Ok(greeting);
    }
    writer
        .write_all(format!("{PEER_QUESTION}\n").as_bytes())
        .map_err(|e| format!("cannot send to {target}: {e}"))?;
    read_answer(&mut reader, target)
}

fn client_udp(addr: &str, peer: bool) -> Result<String, String> {
    let target = resolve(addr)?;
    let local = match target {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let socket = UdpSocket::bind(local).map_err(|e| format!("cannot bind {local}: {e}"))?;
    socket
        .set_read_timeout(Some(CLIENT_TIMEOUT))
        .map_err(|e| format!("cannot set a timeout on a UDP socket: {e}"))?;
    // Connected: the kernel drops datagrams from any other address (a reply that was not
    // translated back is no answer) and reports an ICMP error from the target as an error.
    socket
        .connect(target)
        .map_err(|e| format!("cannot connect a UDP socket to {target}: {e}"))?;
    let question = if peer {
        format!("{PEER_QUESTION}\n")
    } else {
        "hello\n".to_owned()
    };
    socket
        .send(question.as_bytes())
        .map_err(|e| format!("cannot send to {target}: {e}"))?;
    let mut buffer = [0u8; 2048];
    let len = socket
        .recv(&mut buffer)
        .map_err(|e| format!("no answer from {target}: {e}"))?;
    Ok(String::from_utf8_lossy(&buffer[..len]).into_owned())
}

/// `--client-udp-loop` (see the module's documentation).
fn client_udp_loop(addr: &str) -> Result<(), String> {
    const INTERVAL: Duration = Duration::from_millis(100);
    let target = resolve(addr)?;
    let local = match target {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let socket = UdpSocket::bind(local).map_err(|e| format!("cannot bind {local}: {e}"))?;
    // Connected: answers from any other address are not answers, ICMP errors are reported.
    socket
        .connect(target)
        .map_err(|e| format!("cannot connect a UDP socket to {target}: {e}"))?;
    let mut out = io::stdout().lock();
    let mut buffer = [0u8; 2048];
    let mut next = std::time::Instant::now();
    loop {
        next += INTERVAL;
        let wait = next.saturating_duration_since(std::time::Instant::now());
        let line = if socket.send(b"hello\n").is_err() {
            "!".to_owned()
        } else if wait.is_zero() {
            "-".to_owned()
        } else {
            socket
                .set_read_timeout(Some(wait))
                .map_err(|e| format!("cannot set a timeout on a UDP socket: {e}"))?;
            match socket.recv(&mut buffer) {
                Ok(len) => {
                    let answer = String::from_utf8_lossy(&buffer[..len]);
                    answer.lines().next().unwrap_or("").to_owned()
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    "-".to_owned()
                }
                Err(_) => "!".to_owned(),
            }
        };
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            return Ok(());
        }
        thread::sleep(next.saturating_duration_since(std::time::Instant::now()));
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, addr] = args.as_slice() {
        if mode == "--client-udp-loop" {
            return match client_udp_loop(addr) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("pod_server: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    }
    let result = match parse_args(&args) {
        Err(e) => {
            eprintln!("pod_server: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
        Ok(Mode::Serve {
            name,
            tcp_ports,
            udp_ports,
        }) => serve(name, tcp_ports, udp_ports),
        Ok(Mode::ClientTcp { addr, peer }) => client_tcp(&addr, peer).map(|line| print!("{line}")),
        Ok(Mode::ClientUdp { addr, peer }) => client_udp(&addr, peer).map(|line| print!("{line}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pod_server: {e}");
            ExitCode::FAILURE
        }
    }
}
